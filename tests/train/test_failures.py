"""Loud failures: a failing verifier stops the run with its traceback; all-zero-advantage steps
are counted and warned about; the segmentation is shown on a trace."""

import types

import numpy as np
import pytest

from mrt_jax import config_cli
from mrt_jax.mrt.segment import SegmentConfig, segment
from mrt_jax.rewards import register_verifier, verify_batch
from mrt_jax.train import failures, loop


def _broken(record, text, token_ids):
  if record["bad"]:
    raise KeyError("expected_field")
  return 1.0


register_verifier("test_sometimes_broken", _broken, isolated=False)


def _stats(bad_rollouts, bad_probes):
  stats = {}
  for kind, bad in (("verify", bad_rollouts), ("probe", bad_probes)):
    _, s = verify_batch("test_sometimes_broken", [{"bad": b} for b in bad], ["t"] * len(bad),
                        [[1]] * len(bad))
    stats.update({f"{kind}_{k}": v for k, v in s.items()})
  return stats


def test_error_rate_above_the_threshold_stops_with_the_first_traceback():
  # 3 failures in 6 calls: 0.5 is not above a threshold of 0.5.
  failures.check_verifier_errors(_stats([False, True], [False, True, True, False]), 6, 0.5,
                                 "test_sometimes_broken")
  with pytest.raises(failures.VerifierFailed) as e:
    failures.check_verifier_errors(_stats([True, True], [True, True, False, False]), 6, 0.5,
                                   "test_sometimes_broken")
  message = str(e.value)
  assert message.startswith("verifier 'test_sometimes_broken' failed on 4 of 6 calls this step "
                            "(67%; rollouts: 2 errors, 0 timeouts; probes: 2 errors, 0 timeouts)")
  assert "above reward.max_error_rate=0.5" in message
  assert "Traceback (most recent call last)" in message and "in _broken" in message
  assert message.rstrip().endswith("KeyError: 'expected_field'")
  failures.check_verifier_errors(_stats([True, True], [True]), 3, 1.0, "x")  # 1.0: never stops


def test_zero_advantage_metrics_and_warning():
  G, T = 3, 5
  adv = np.zeros((2 * G, T), np.float32)
  assert failures.zero_advantage_metrics(adv, G) == {"zero_advantage_step": 1.0,
                                                     "zero_advantage_groups": 1.0}
  adv[G + 1, 2] = 0.5
  assert failures.zero_advantage_metrics(adv, G) == {"zero_advantage_step": 0.0,
                                                     "zero_advantage_groups": 0.5}
  warnings = []
  watch = failures.ZeroAdvantageWatch(3, warn=warnings.append)
  for step, zero in enumerate([1, 1, 0, 1, 1, 1, 1, 1, 0, 1], start=1):
    watch.update(step, {"zero_advantage_step": float(zero), "reward_mean": 0.0})
  assert len(warnings) == 1 and warnings[0].startswith("WARNING: steps 4..6 had all-zero")
  assert "reward_mean=0" in warnings[0]
  never = failures.ZeroAdvantageWatch(0, warn=warnings.append)
  for step in range(1, 10):
    never.update(step, {"zero_advantage_step": 1.0})
  assert len(warnings) == 1


def test_segmentation_is_described_block_by_block():
  pieces = ["A", ".\n\n", "B", ".\n\n", "Wait", " C", ".", "</think>", " 7"]
  config = SegmentConfig(min_paragraphs=1)
  seg = segment(list(range(len(pieces))), pieces, config)
  text = failures.describe_segmentation(config, pieces, seg)
  assert text.splitlines() == [
      f"segmentation: {config}",
      "first sampled trace: 2 blocks, thinking ends at token 7 of 9",
      "  block 1 (tokens 0..3): 'A.\\n\\nB'",  # ".\n\n" is the decision to go on: block 2's
      "  block 2 (tokens 3..7): '.\\n\\nWait C.'",
      "  answer (tokens 7..9): '</think> 7'"]


def test_the_loop_checks_every_step(capsys):
  """`train` runs these checks on each step's experience, before any update."""
  config = config_cli.load_config("configs/demo_cpu.py", ["reward.max_error_rate=0.25"])
  pieces = {1: "A", 2: ".\n\n", 3: "B"}
  seg = segment([1, 2, 3], [pieces[t] for t in (1, 2, 3)], SegmentConfig(min_paragraphs=1))
  run = types.SimpleNamespace(
      experience=types.SimpleNamespace(num_generations=2, segment=SegmentConfig()),
      decode=lambda ids: "".join(pieces[t] for t in ids), star_selection=None)
  exp = types.SimpleNamespace(completions=[[1, 2, 3]] * 2, segments=[seg] * 2,
                              advantages_BxT=np.zeros((2, 3), np.float32),
                              stats={**_stats([False, False], [False] * 4), "num_probes": 4})
  warnings = []
  watch = failures.ZeroAdvantageWatch(1, warn=warnings.append)
  loop._check_experience(config, run, exp, True, watch, 1)
  assert exp.stats["zero_advantage_step"] == 1.0 and len(warnings) == 1
  assert "first sampled trace: 1 blocks" in capsys.readouterr().out
  exp.stats.update(_stats([True, False], [False, True, False, False]))  # 2 of 6 > 0.25
  with pytest.raises(failures.VerifierFailed, match="failed on 2 of 6 calls"):
    loop._check_experience(config, run, exp, False, watch, 2)
