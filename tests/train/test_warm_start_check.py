"""Choosing the demo's warm start among SFT seeds: the check problems, the choice, and a build
that keeps exactly the chosen candidate and records every candidate's check."""

import json
import os

import jax
import numpy as np
import pytest

from launch_fixtures import TINY, asset_flags
from mrt_jax import config_cli, models
from mrt_jax.data import elimination
from mrt_jax.train import demo
from mrt_jax.train import warm_start_check as check


def _config(assets, *extra):
  overrides = [o.removeprefix("--config.") for o in TINY] + [
      *[o.removeprefix("--config.") for o in asset_flags(assets)],
      # TINY builds one candidate; these build two, checked on 4 problems x 1 sample.
      "demo.num_warm_starts=2", "demo.check_problems=4", "demo.check_samples=1",
      "eval.num_problems=2", *extra]
  return config_cli.load_config("configs/demo_cpu.py", overrides)


def test_check_problems_skip_sft_puzzles_and_keep_order():
  config = _config("/unused")
  task = demo._task(config)
  rl = elimination.generate_problems(32, 0, task)
  sft = rl[1:6:2]  # the 2nd, 4th and 6th RL puzzles were seen in SFT
  got = check.check_problems(config, rl, sft)
  assert [p["id"] for p in got] == [rl[i]["id"] for i in (0, 2, 4, 6)]
  assert not {p["problem"] for p in got} & {p["problem"] for p in sft}
  with pytest.raises(ValueError, match="only 1 of the 2 RL prompts .* are unseen by the SFT"):
    check.check_problems(config, rl[:2], rl[1:2])
  with pytest.raises(ValueError, match="demo.check_problems = 0"):
    check.check_problems(_config("/unused", "demo.check_problems=0"), rl, sft)


def test_choose_takes_the_best_check_and_the_first_on_ties():
  entries = [{"check_pass@1": p} for p in (0.25, 0.5, 0.5, 0.125)]
  assert check.choose(entries) == 1
  assert check.choose(entries[:1]) == 0
  with pytest.raises(ValueError, match="no warm-start candidates"):
    check.choose([])


def test_candidate_zero_is_the_single_warm_start():
  assert check.candidate_sft_seed(3, 0) == 3 and check.candidate_sft_seed(3, 1) == [3, 1]
  k0, k1 = check.candidate_key(3, 0), check.candidate_key(3, 1)
  assert jax.random.key_data(k0).tolist() == jax.random.key_data(jax.random.key(3)).tolist()
  assert jax.random.key_data(k1).tolist() != jax.random.key_data(k0).tolist()


def test_build_keeps_the_chosen_candidate_and_records_the_checks(tmp_path):
  """Two random-init candidates (TINY has no SFT steps): the saved model is exactly the
  candidate demo.json names, and its entry's check matches the check's own eval.json."""
  config = _config(str(tmp_path))
  demo.build_assets(config)
  with open(os.path.join(config.model.path, demo.MANIFEST), encoding="utf-8") as f:
    built = json.load(f)
  entries = built["warm_starts"]
  assert [e["candidate"] for e in entries] == [0, 1]
  assert built["chosen"] == check.choose(entries)
  for e in entries:
    with open(os.path.join(config.model.path, e["check_dir"], "eval.json"), encoding="utf-8") as f:
      record = json.load(f)
    assert record["num_problems"] == 4 and record["num_samples"] == 1
    assert record["metrics"]["pass@1"] == e["check_pass@1"]
  model_config, saved = models.load_hf(config.model.path)
  want = models.init_params(model_config, check.candidate_key(0, built["chosen"]))
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  demo.build_assets(config)  # same settings: reused, the record of the choice is no setting
  with pytest.raises(ValueError, match="demo.num_warm_starts: built 2, config 3"):
    demo.build_assets(_config(str(tmp_path), "demo.num_warm_starts=3"))


def test_zero_candidates_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="demo.num_warm_starts = 0; expected >= 1"):
    demo.build_assets(_config(str(tmp_path), "demo.num_warm_starts=0"))


@pytest.mark.parametrize("scores", [(0.25, 0.5), (0.5, 0.25)])
def test_build_saves_the_winner_whichever_it_is(tmp_path, monkeypatch, scores):
  """With the checks' scores fixed, the saved params are the winning candidate's init."""
  def fake_check(config, model_config, params, tokenizer, problems, index):
    return {"candidate": index, "check_pass@1": scores[index], "check_dir": "none"}
  monkeypatch.setattr(check, "check_candidate", fake_check)
  config = _config(str(tmp_path))
  demo.build_assets(config)
  winner = int(np.argmax(scores))
  with open(os.path.join(config.model.path, demo.MANIFEST), encoding="utf-8") as f:
    assert json.load(f)["chosen"] == winner
  model_config, saved = models.load_hf(config.model.path)
  want = models.init_params(model_config, check.candidate_key(0, winner))
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_check_config_is_the_evaluation_cut_down_and_seeded_by_the_demo():
  config = _config("/unused", "seed=5", "demo.seed=2", "eval.temperature=0.7")
  c = check.check_config(config, 4)
  assert (c.seed, c.eval.num_problems, c.eval.num_samples) == (2, 4, 1)
  assert c.eval.extrapolation_budgets == () and c.eval.temperature == 0.7
  assert config.seed == 5 and config.eval.num_problems == 2  # the run's config is untouched
