"""The public warm start lays examples out exactly as a run feeds them, for a task and tokenizer
of its own (tests/task_example)."""

import pytest

from mrt_jax import config_cli, models
from mrt_jax.data.pipeline import render_prompts
from mrt_jax.mrt.segment import segment
from mrt_jax.train import setup
from mrt_jax.train.rollout import token_pieces
from mrt_jax.train.warm_start import Layout, forced_answer_example
from task_example import assets

CONFIG = "tests/task_example/config.py:cpu"


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  d = tmp_path_factory.mktemp("warm_start")
  tokenizer = assets.build_tokenizer(str(d / "tokenizer"))
  assets.build_model(str(d / "model"), tokenizer)
  config = config_cli.load_config(CONFIG, [
      f"model.path={d}/model", f"model.tokenizer_path={d}/tokenizer", "segment.chunk_tokens=3"])
  with config.unlocked():  # Optional data fields (`pipeline_from_config`).
    config.data.system = "Add."
    config.data.prompt_template = "Q: {problem}"
  return config, tokenizer


def test_examples_follow_the_run_layout(task):
  config, tokenizer = task
  layout = Layout.from_config(config, tokenizer)
  record = {"question": "What is 2 + 3?", "answer": "5"}
  # The prompt as the training data pipeline renders it (template, system prompt, opener).
  rendered = render_prompts([record], tokenizer, max_prompt_len=64, problem_field="question",
                            prompt_template="Q: {problem}", system="Add.")
  prompt = layout.prompt(record["question"])
  assert prompt == rendered.examples[0]["prompt_ids"].tolist()
  # The suffix as the run's probes tokenize it.
  model_config = models.load_config(config.model.path)
  experience = setup.experience_config(config, tokenizer, model_config)
  assert layout.suffix == experience.suffix_tokens
  ids = layout.encode("I add 2 and 3 to get 5.</think> 5")
  bounds = layout.boundaries(ids)
  decode = lambda t: tokenizer.decode(list(t), skip_special_tokens=True)
  seg = segment(ids + [tokenizer.eos_token_id],
                token_pieces(decode, ids + [tokenizer.eos_token_id]), experience.segment)
  assert bounds == [0, *seg.boundaries] and len(bounds) > 2  # as `collect` segments a rollout
  trace_ids, trace_mask = layout.trace(prompt, ids)
  assert trace_ids == prompt + ids + [tokenizer.eos_token_id]
  assert trace_mask == [0.0] * len(prompt) + [1.0] * (len(ids) + 1)
  for cut in bounds:
    tokens, mask = layout.forced_answer(prompt, ids, cut, " 5")
    start = mask.index(1.0)
    # A probe at b feeds prompt + trace[:b] + suffix (`Sampler.fork`); the answer is the target.
    assert tokens[:start] == prompt + ids[:cut] + list(experience.suffix_tokens)
    assert tokens[start:] == tokenizer.encode(" 5", add_special_tokens=False) + [
        tokenizer.eos_token_id]
    assert all(mask[start:])
  with pytest.raises(ValueError, match="cut=99; expected 0 <= cut <= 3"):
    forced_answer_example(prompt, [1, 2, 3], 99, [4], [5], 0)

