"""Prompt batches: rendering, too-long prompts, shuffling and epochs, shards, exact resume."""

import json

import numpy as np
import pytest

from data_fixtures import TASK_CONFIG
from mrt_jax import config_defaults
from mrt_jax.data import (DataError, batch_dataset, elimination, pipeline_from_config,
                          prompt_pipeline, render_prompts, write_jsonl)
from mrt_jax.models.tokenizer import THINK_OPEN, render_prompt

NUM = 23  # prime: batches never line up with epochs


@pytest.fixture(scope="module")
def records():
  rows = elimination.generate_problems(NUM, seed=0, config=TASK_CONFIG)
  # Rows 4 and 17 get a long problem, for the too-long tests.
  for i in (4, 17):
    rows[i] = dict(rows[i], problem=rows[i]["problem"] + " Think hard." * 10)
  return rows


@pytest.fixture(scope="module")
def prompts(records, tiny_tokenizer):
  return render_prompts(records, tiny_tokenizer, max_prompt_len=10_000)


def _indices(batches):
  return [[e["index"] for e in batch] for batch in batches]


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_rendering(records, prompts, tiny_tokenizer):
  assert prompts.num_records == NUM and prompts.num_too_long == 0
  example = prompts.examples[3]
  assert example["index"] == 3
  assert example["record"] == {**records[3], "id": records[3].get("id", 3)}  # what verifiers get
  assert example["answer"] == records[3]["answer"] and example["problem"] == records[3]["problem"]
  assert example["prompt_ids"].dtype == np.int32
  np.testing.assert_array_equal(example["prompt_ids"],
                                render_prompt(tiny_tokenizer, records[3]["problem"]))
  assert tiny_tokenizer.decode(example["prompt_ids"]).endswith(THINK_OPEN + "\n")


def test_prompt_template_and_numeric_answers(tiny_tokenizer):
  rows = [{"q": "What is 1+1?", "a": 2}]
  prompts = render_prompts(rows, tiny_tokenizer, max_prompt_len=500, problem_field="q",
                           answer_field="a", prompt_template="Solve {problem} Use \\boxed{}.")
  # The answer keeps the file's type (int), for training's verifier as for evaluation's.
  assert prompts.examples[0]["answer"] == 2 and prompts.examples[0]["record"]["answer"] == 2
  assert prompts.examples[0]["record"]["problem"] == "What is 1+1?"
  assert "Solve What is 1+1? Use \\boxed{}." in tiny_tokenizer.decode(
      prompts.examples[0]["prompt_ids"])


def test_too_long_prompts_are_skipped_and_counted(records, prompts, tiny_tokenizer):
  lengths = [len(e["prompt_ids"]) for e in prompts.examples]
  limit = max(lengths[i] for i in range(NUM) if i not in (4, 17))
  assert lengths[4] > limit and lengths[17] > limit
  kept = render_prompts(records, tiny_tokenizer, max_prompt_len=limit)
  assert kept.too_long == (4, 17) and kept.num_too_long == 2
  assert [e["index"] for e in kept.examples] == [i for i in range(NUM) if i not in (4, 17)]
  with pytest.raises(DataError, match=f"all {NUM} prompts are longer than max_prompt_len=5"):
    render_prompts(records, tiny_tokenizer, max_prompt_len=5, source="x.jsonl")


def test_problem_must_be_text(tiny_tokenizer):
  with pytest.raises(DataError, match="f.jsonl: record 0 field 'problem' is a int"):
    render_prompts([{"problem": 3, "answer": "3"}], tiny_tokenizer, max_prompt_len=99,
                   source="f.jsonl")


def test_epochs_are_reshuffled_permutations(prompts):
  ds = batch_dataset(prompts, batch_size=NUM, seed=5, num_epochs=3)
  epochs = _indices(list(ds))
  assert len(epochs) == 3
  assert all(sorted(e) == list(range(NUM)) for e in epochs)
  assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(NUM))
  ordered = _indices(list(batch_dataset(prompts, batch_size=NUM, seed=5, num_epochs=2,
                                        shuffle=False)))
  assert ordered == [list(range(NUM))] * 2


def test_shuffling_is_deterministic_and_seeded(prompts):
  a = _indices(_take(iter(batch_dataset(prompts, batch_size=4, seed=1)), 12))
  assert a == _indices(_take(iter(batch_dataset(prompts, batch_size=4, seed=1)), 12))
  assert a != _indices(_take(iter(batch_dataset(prompts, batch_size=4, seed=2)), 12))
  assert all(len(b) == 4 for b in a)
  # Finite epochs drop only the final remainder: 2 x 23 = 46 prompts -> 11 batches of 4.
  assert len(list(batch_dataset(prompts, batch_size=4, seed=1, num_epochs=2))) == 11


@pytest.mark.parametrize("num_epochs", [None, 3])
def test_exact_resume(prompts, num_epochs):
  ds = batch_dataset(prompts, batch_size=5, seed=7, num_epochs=num_epochs)
  uncut = _indices(_take(iter(ds), 12))
  it = iter(ds)
  first = _take(it, 4)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  _take(it, 3)  # the run goes on past the checkpoint, then dies
  resumed = iter(batch_dataset(prompts, batch_size=5, seed=7, num_epochs=num_epochs))
  resumed.set_state(state)
  assert _indices(first) + _indices(_take(resumed, 8)) == uncut


def test_shards_split_the_global_batch(prompts):
  whole = _indices(_take(iter(batch_dataset(prompts, batch_size=6, seed=3)), 5))
  shards = [_indices(_take(iter(batch_dataset(prompts, batch_size=6, seed=3, shard_index=s,
                                              shard_count=3)), 5)) for s in range(3)]
  assert [sum((s[b] for s in shards), []) for b in range(5)] == whole
  assert all(len(s[0]) == 2 for s in shards)


def test_batch_errors(prompts):
  with pytest.raises(ValueError, match="batch_size=6 must be >= 1 and divisible by shard_count=4"):
    batch_dataset(prompts, batch_size=6, seed=0, shard_count=4)
  with pytest.raises(ValueError, match="shard_index=2: expected 0 <= shard_index < 2"):
    batch_dataset(prompts, batch_size=6, seed=0, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="23 prompts x 1 epochs hold no full batch of 24"):
    batch_dataset(prompts, batch_size=24, seed=0, num_epochs=1)


def test_pipeline_from_file_and_config(tmp_path, records, prompts, tiny_tokenizer):
  rows = [{"question": r["problem"], "gold": r["answer"]} for r in records]
  path = write_jsonl(str(tmp_path / "train.jsonl"), rows)
  config = config_defaults.rl(config_defaults.base("t", model_path="unused"), "mrt", 1.0)
  config.data.path = path
  config.data.problem_field = "question"
  config.data.answer_field = "gold"
  config.eval.data_path = path  # an evaluation file of its own: training reads every record
  config.data.max_prompt_len = max(len(e["prompt_ids"]) for e in prompts.examples
                                   if e["index"] not in (4, 17))
  config.train.global_batch_prompts = 4
  ds, prompts = pipeline_from_config(config, tiny_tokenizer)
  assert prompts.too_long == (4, 17)
  direct, _ = prompt_pipeline(path, tiny_tokenizer, batch_size=4, seed=config.seed,
                              max_prompt_len=config.data.max_prompt_len, problem_field="question",
                              answer_field="gold")
  batch = next(iter(ds))
  assert _indices([batch]) == _indices([next(iter(direct))])
  assert all(e["answer"] == records[e["index"]]["answer"] for e in batch)
