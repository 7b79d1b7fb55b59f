"""The held-out split: deterministic, order-free, disjoint from what training reads."""

import pytest

from mrt_jax import config_defaults
from mrt_jax.data import elimination, pipeline_from_config
from mrt_jax.data.sources import DataError, write_jsonl
from mrt_jax.data.split import heldout_fraction_of, split_records
from mrt_jax.evaluation.runner import eval_problems

RECORDS = [{"problem": f"What is {a} + {a}?", "answer": 2 * a} for a in range(400)]


def test_split_is_a_function_of_the_problems_alone():
  held = split_records(RECORDS, problem_field="problem", fraction=0.1, source="p.jsonl")
  assert len(held.train) + len(held.heldout) == len(RECORDS)
  assert 20 <= len(held.heldout) <= 60  # 40 expected; the hash is uniform
  # The same problems in another order, with a duplicate: the same held-out set.
  shuffled = RECORDS[::-1] + [RECORDS[0]]
  again = split_records(shuffled, problem_field="problem", fraction=0.1, source="p.jsonl")
  assert ({r["problem"] for r in again.heldout} == {r["problem"] for r in held.heldout})
  assert not {r["problem"] for r in again.heldout} & {r["problem"] for r in again.train}
  # Held-out records keep their fields, with their row as the id; training records are untouched.
  first = held.heldout[0]
  assert first == {**RECORDS[first["id"]], "id": first["id"]}
  assert all("id" not in r for r in held.train)
  assert "held-out split: " in held.description and "of 400 problems" in held.description
  assert heldout_fraction_of("x") == heldout_fraction_of("x") and 0 <= heldout_fraction_of("x") < 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_fraction_outside_0_1_is_an_error(fraction):
  with pytest.raises(ValueError, match=r"eval.holdout_fraction = .*; expected a fraction in \(0, 1\)"):
    split_records(RECORDS, problem_field="problem", fraction=fraction, source="p.jsonl")


def test_an_empty_side_names_the_field():
  with pytest.raises(DataError, match=r"p.jsonl: eval.holdout_fraction = 0.001 leaves no held-out"):
    split_records(RECORDS[:3], problem_field="problem", fraction=0.001, source="p.jsonl")


def test_training_and_evaluation_never_share_a_problem(tmp_path, tiny_tokenizer):
  """With no evaluation file, the config's training data and evaluation problems are disjoint,
  and together they are the whole file."""
  records = elimination.generate_problems(120, 5)
  path = write_jsonl(str(tmp_path / "train.jsonl"), records)
  config = config_defaults.rl(config_defaults.base("t", model_path="unused"), "mrt", 1.0)
  config.data.path = path
  config.data.max_prompt_len = 10_000
  config.train.global_batch_prompts = 2
  _, prompts = pipeline_from_config(config, tiny_tokenizer)
  problems, source = eval_problems(config)
  train_ids = {e["record"]["id"] for e in prompts.examples}
  eval_ids = {p["id"] for p in problems}
  assert problems and not train_ids & eval_ids
  assert train_ids | eval_ids == {r["id"] for r in records}
  assert not {e["problem"] for e in prompts.examples} & {p["problem"] for p in problems}
  assert source.startswith(f"{path} (held-out split: {len(problems)} of 120 problems")
  # An evaluation file of its own: training reads everything, evaluation reads that file.
  config.eval.data_path = path
  _, everything = pipeline_from_config(config, tiny_tokenizer)
  assert len(everything.examples) == 120 and eval_problems(config)[1] == path
