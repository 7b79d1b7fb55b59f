"""The demo's warm start: SFT examples mirror the probes token for token; SFT learns; the
model directory refuses to be reused for other settings."""

import json
import os
import re

import jax
import numpy as np
import pytest

from launch_fixtures import TINY, asset_flags
from model_fixtures import tiny_config
from mrt_jax import config_cli, models
from mrt_jax.data import elimination
from mrt_jax.models import tokenizer as tokenizer_lib
from mrt_jax.rewards import last_boxed
from mrt_jax.train import demo
from mrt_jax.train.sft import example, sft_batch, train_sft


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tokenizer"))
  config = _config("/unused")
  corpus = elimination.tokenizer_corpus(40, 0, demo._task(config),
                                        config.probe.termination_suffix)
  tokenizer_lib.build_tiny_tokenizer(path, corpus, vocab_size=384)
  return tokenizer_lib.load_tokenizer(path)


def _config(assets, *extra):
  overrides = [o.removeprefix("--config.") for o in TINY] + [
      *[o.removeprefix("--config.") for o in asset_flags(assets)], *extra]
  return config_cli.load_config("configs/demo_cpu.py", overrides)


def test_example_and_batch_masks():
  tokens, mask = example(([1, 2], False), ([3, 4, 5], True), ([6], False))
  assert tokens == [1, 2, 3, 4, 5, 6] and mask == [0, 0, 1, 1, 1, 0]
  batch = sft_batch([(tokens, mask), ([7], [1.0])], length=8)
  np.testing.assert_array_equal(batch["tokens"][1], [7, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(batch["mask"][0], [0, 0, 1, 1, 1, 0, 0, 0])
  assert example(([1, 2], 0.5), ([3, 4], [2.0, 1.0]))[1] == [0.5, 0.5, 2.0, 1.0]
  with pytest.raises(ValueError, match="segment 1 has 2 tokens but 1 weights"):
    example(([1], True), ([3, 4], [2.0]))
  with pytest.raises(ValueError, match="example 0 has 2 tokens but a mask of 1"):
    sft_batch([([1, 2], [1.0])], length=8)
  with pytest.raises(ValueError, match="example 0 has 6 tokens, more than the SFT length 4"):
    sft_batch([(tokens, mask)], length=4)


def test_warm_start_answers_follow_the_probe_token_layout(tokenizer):
  """A forced answer's context is prompt + the trace's own ids cut at b + the suffix's ids (the
  sequence `Sampler.fork` feeds μ), and only the guess (a letter left) and eos are targets."""
  config = _config("/unused")
  problems = elimination.generate_problems(6, 3, demo._task(config))
  traces, answers = demo.warm_start_pools(config, tokenizer, problems)
  assert len(traces) == 6 and len(answers) == 4 * 6
  suffix = tokenizer.encode(config.probe.termination_suffix, add_special_tokens=False)
  eos = tokenizer.eos_token_id
  for i, problem in enumerate(problems):
    prompt = tokenizer_lib.render_prompt(tokenizer, problem["problem"])
    ids, mask = traces[i]
    assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
    assert all(mask[len(prompt):]) and ids[-1] == eos
    natural, *forced = answers[4 * i:4 * i + 4]
    assert sum(natural[1]) == 1  # the answer letter of the trace's own "\boxed{X}"
    assert tokenizer.decode([natural[0][natural[1].index(1.0)]]) == problem["answer"]
    for ids, mask in forced:
      start = mask.index(1.0)
      context, target = ids[:start], ids[start:]
      assert context[:len(prompt)] == prompt and context[-len(suffix):] == suffix
      assert all(mask[start:]) and target[-1] == eos
      guess = last_boxed(tokenizer.decode(target[:-1]))
      thinking = tokenizer.decode(context[len(prompt):-len(suffix)])
      # A cut may fall inside a block: the guess is among the letters left after the blocks
      # that end (with their blank line) before the cut.
      done = len(re.findall(r"Left:[^\n]*\.\n\n", thinking))
      checked = elimination.checked_clues(thinking, problem)[:done]
      assert guess in elimination.remaining(problem, checked)


def test_several_traces_per_problem_and_the_prompts_clue_order(tokenizer):
  """demo.sft_traces_per_problem traces (and their four answers each) per problem, problem by
  problem, each with its own re-checks; with demo.clue_order=prompt each checks the clues as the
  prompt lists them."""
  config = _config("/unused", "demo.sft_traces_per_problem=3", "demo.clue_order=prompt",
                   "demo.waste_prob=0.5")
  problems = elimination.generate_problems(6, 3, demo._task(config))
  traces, answers = demo.warm_start_pools(config, tokenizer, problems)
  assert len(traces) == 3 * 6 and len(answers) == 4 * 3 * 6
  distinct = 0
  for i, problem in enumerate(problems):
    prompt = tokenizer_lib.render_prompt(tokenizer, problem["problem"])
    texts = set()
    for ids, _ in traces[3 * i:3 * i + 3]:
      assert ids[:len(prompt)] == prompt
      text = tokenizer.decode(ids[len(prompt):-1])
      checked = elimination.checked_clues(text, problem)
      assert [k for j, k in enumerate(checked) if k not in checked[:j]] == list(
          range(len(problem["clues"])))
      texts.add(text)
    for ids, _ in answers[12 * i:12 * i + 12]:
      assert ids[:len(prompt)] == prompt
    distinct += len(texts) > 1
  assert distinct > 0  # the re-checks differ between a problem's traces
  with pytest.raises(ValueError, match="demo.sft_traces_per_problem = 0"):
    demo.warm_start_pools(_config("/unused", "demo.sft_traces_per_problem=0"), tokenizer,
                          problems)


def test_clue_copy_and_decision_tokens_are_weighted(tokenizer):
  """With demo.sft_clue_weight, exactly the tokens that copy each clue line's letters and period
  from the prompt carry that weight; with demo.sft_decision_weight, exactly the tokens between
  each "Left" line and the next block's "Wait" or "</think>"; every other trace token weighs 1,
  the prompt 0."""
  config = _config("/unused", "demo.sft_clue_weight=4.0", "demo.sft_decision_weight=2.0")
  problems = elimination.generate_problems(6, 3, demo._task(config))
  traces, _ = demo.warm_start_pools(config, tokenizer, problems)
  for problem, (ids, mask) in zip(problems, traces):
    prompt = tokenizer_lib.render_prompt(tokenizer, problem["problem"])
    text = tokenizer.decode(ids[len(prompt):-1])
    lines = re.findall(r"^Wait, clue: not (.*)$", text, re.MULTILINE)
    assert lines and all(f"not {line}" in map(elimination.clue_text, problem["clues"])
                         for line in lines)
    weighted = [t for t, w in zip(ids, mask) if w == 4.0]
    assert tokenizer.decode(weighted) == "".join(f" {line}" for line in lines)
    deciding = [t for t, w in zip(ids, mask) if w == 2.0]
    assert tokenizer.decode(deciding) == "\n\nWait" * (len(lines) - 1) + "\n\n</think>"
    assert set(mask) == {0.0, 1.0, 2.0, 4.0}
  # Weighted: tokens inside the copied span and one that straddles its end (".\n" here).
  assert demo.trace_weights("Wait, clue: not A.\n", [(0, 15), (15, 17), (17, 19)], 3.0) == [
      1.0, 3.0, 3.0]
  # The choice after a Left line: the blank line and the first letter of what follows.
  assert demo.trace_weights("Left:a,B.\n\nWait", [(0, 9), (9, 10), (10, 11), (11, 15)], 3.0,
                            5.0) == [1.0, 5.0, 5.0, 5.0]
  # A weight below 1 lowers its tokens (the default 1 applies only where no span lies); a token
  # that straddles the decision and the copied clue takes the larger weight.
  assert demo.trace_weights("Left:a,B.\n\nWait, clue: not A.", [(0, 9), (9, 27), (27, 29)],
                            2.0, 0.5) == [1.0, 2.0, 2.0]
  assert demo.trace_weights("Left:a,B.\n\nWait", [(0, 9), (9, 11), (11, 15)], 2.0, 0.5) == [
      1.0, 0.5, 0.5]


def test_sft_learns_a_fixed_pool():
  config = tiny_config(vocab_size=32, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, max_position_embeddings=64)
  params = models.init_params(config, jax.random.key(0))
  pool = [example(([1, 2, 3], False), ([4 + k, 9, 10 + k], True)) for k in range(4)]
  _, losses = train_sft(config, params, [pool, pool[:1]], [0] * 30 + [1] * 10, batch_size=4,
                        learning_rate=1e-2, seed=0)
  assert len(losses) == 40 and losses[-1] < 0.25 * losses[0]
  # Decoupled weight decay scales every weight by 1 - lr_t × wd per step on top of the updates:
  # the cosine schedule's lr_t sum to about 0.2 over these 40 steps, so wd = 3 leaves about
  # exp(-0.6) = 0.55 of the norm.
  decayed, _ = train_sft(config, params, [pool, pool[:1]], [0] * 30 + [1] * 10, batch_size=4,
                         learning_rate=1e-2, seed=0, weight_decay=3.0)
  trained, _ = train_sft(config, params, [pool, pool[:1]], [0] * 30 + [1] * 10, batch_size=4,
                         learning_rate=1e-2, seed=0)
  norm = lambda tree: float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree))))
  assert norm(decayed) < 0.75 * norm(trained)
  with pytest.raises(ValueError, match="pools of sizes \\[4, 0\\]"):
    train_sft(config, params, [pool, []], [0], batch_size=2, learning_rate=1e-2, seed=0)
  with pytest.raises(ValueError, match="plan of 1 steps over pools \\[2\\]"):
    train_sft(config, params, [pool], [2], batch_size=2, learning_rate=1e-2, seed=0)


def test_model_built_from_other_settings_is_an_error(tmp_path):
  config = _config(str(tmp_path))
  demo.build_assets(config)  # no SFT steps in TINY: a random init, saved with its manifest
  demo.build_assets(config)  # same settings: reused
  other = _config(str(tmp_path), "demo.waste_prob=0.1")
  with pytest.raises(ValueError, match="demo.waste_prob: built 0.5, config 0.1"):
    demo.build_assets(other)
  path = os.path.join(config.model.path, demo.MANIFEST)
  with open(path, encoding="utf-8") as f:
    built = json.load(f)
  # A manifest from before a field existed: read as built with the field's default.
  older = {k: v for k, v in built["demo"].items() if k != "clue_order"}
  with open(path, "w", encoding="utf-8") as f:
    json.dump({**built, "demo": older}, f)
  demo.build_assets(config)
  with pytest.raises(ValueError, match="demo.clue_order: built 'random', config 'prompt'"):
    demo.build_assets(_config(str(tmp_path), "demo.clue_order=prompt"))
  # Assets whose forced answers were laid out otherwise (an older segmenter) are refused too.
  with open(path, "w", encoding="utf-8") as f:
    json.dump({**built, "probe_layout": "older"}, f)
  with pytest.raises(ValueError, match="the forced answers' layout \\(built 'older'"):
    demo.build_assets(config)
