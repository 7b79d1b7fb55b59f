"""The reproduction's summary figures (experiments/summarize.py) on hand-computed inputs."""

import json
import math
import sys

import numpy as np
import pytest

from subprocess_util import ROOT

sys.path.insert(0, ROOT)  # experiments/ is not part of the package
from experiments import summarize  # noqa: E402
from mrt_jax.data import elimination  # noqa: E402


def test_interval_is_the_student_t_interval_over_seeds():
  mean, low, high = summarize.interval([1.0, 2.0, 3.0])
  half = 4.303 * 1.0 / math.sqrt(3)  # t_{0.975, 2} · sd / sqrt(n), sd = 1
  assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
  assert summarize.interval([5.0])[0] == 5.0 and math.isnan(summarize.interval([5.0])[1])
  assert summarize.interval([1.0, math.inf, 3.0])[0] == 2.0  # runs that never reach are dropped


def test_tokens_to_reach_interpolates_between_budgets():
  assert summarize.tokens_to_reach([10, 20, 40], [0.1, 0.3, 0.5], 0.4) == pytest.approx(30.0)
  assert summarize.tokens_to_reach([10, 20], [0.5, 0.6], 0.2) == 10.0
  assert summarize.tokens_to_reach([10, 20], [0.1, 0.2], 0.9) == math.inf


def test_block_quality_and_waste_read_the_traces(tmp_path):
  problem = elimination.generate_problem(0, 0, elimination.EliminationConfig(
      num_candidates=6, num_clues=3, indirect_prob=0.0))
  good = elimination.trace_completion(problem, [0, 0, 1, 2]).text  # one re-check, no harm
  wrong = next(c for c in problem["candidates"] if c != problem["answer"])
  bad = (f"Wait, clue: not {problem['answer']}.\n\nStrike {problem['answer']}.\n\nLeft:x.\n\n"
         f"Wait, clue: not {wrong}.\n\nStrike {wrong}.\n\n</think>\n\n\\boxed{{{wrong}}}")
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps({"problem_id": 0, "completion": c}) + "\n"
                          for c in (good, bad)))
  quality = summarize.block_quality(str(path), {0: problem})
  # good: 4 real clue lines; bad: 2 lines, the second real only if "not <wrong>." is a clue.
  real_bad = int(f"not {wrong}." in {elimination.clue_text(c) for c in problem["clues"]})
  assert quality["real_clues"] == pytest.approx((4 + real_bad) / 6)
  assert quality["harmful_traces"] == 0.5
  assert summarize.wasteful_blocks(str(path), {0: problem}) == pytest.approx(np.mean([1, 0]))


def test_progress_by_kind_reads_each_blocks_change_of_j(tmp_path):
  problem = elimination.generate_problem(0, 0, elimination.EliminationConfig(
      num_candidates=6, num_clues=3, indirect_prob=0.0))
  trace = elimination.trace_completion(problem, [0, 0, 1]).text  # new, re-check, new
  made_up = "Wait, clue: not Q.\n\nStrike Q.\n\nLeft:x.\n\n" + trace
  rows = [{"problem_id": 0, "completion": trace, "j_values": [0.2, 0.5, 0.4, 1.0]},
          {"problem_id": 0, "completion": made_up, "j_values": [0.2, 0.0, 0.3, 0.3, 0.9]},
          {"problem_id": 0, "completion": trace, "j_values": [0.2, 0.5]}]  # skipped: 1 != 3 + 1
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  got = summarize.progress_by_kind(str(path), {0: problem})
  new, recheck, madeup = [0.3, 0.6, 0.3, 0.6], [-0.1, 0.0], [-0.2]
  assert got["progress_new"] == pytest.approx(np.mean(new))
  assert got["progress_recheck"] == pytest.approx(np.mean(recheck))
  assert got["progress_madeup"] == pytest.approx(-0.2)
  residuals = np.concatenate([np.subtract(v, np.mean(v)) for v in (new, recheck, madeup)])
  assert got["progress_spread"] == pytest.approx(np.sqrt(np.mean(residuals ** 2)))


def test_target_check_survives_a_target_reached_at_budget_zero():
  run = dict(regret=0.5, thinking_tokens=10.0, tokens_to_target=0.0, accuracy=0.3)
  text = summarize.target_check({"grpo": [run, run], "mrt": [run, run]})
  assert "nan×" in text and "**yes**" in text  # equal accuracy counts as "≥"


def test_table_labels_missing_values_by_row():
  run = {row[0]: 1.0 for row in summarize.ROWS}
  missing = dict(run, tokens_to_target=float("nan"), progress_madeup=float("nan"))
  text = summarize.table({"grpo": [run, missing]})
  rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
  assert "(1 of 2 seeds never reach it)" in rows["tokens to target accuracy"]
  assert "(1 of 2 seeds have no such block)" in rows[
      "measured ΔJ of a block that checks a made-up clue"]
  assert "all 1 seeds never reach it" in summarize.table({"grpo": [missing]})


def test_count_parameters_sums_every_tensor_of_every_shard(tmp_path):
  from safetensors.numpy import save_file
  save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros((5,), np.float32)},
            str(tmp_path / "model-00001-of-00002.safetensors"))
  save_file({"c": np.zeros((2, 2, 2), np.float32)},
            str(tmp_path / "model-00002-of-00002.safetensors"))
  assert summarize.count_parameters(str(tmp_path)) == 12 + 5 + 8
  with pytest.raises(FileNotFoundError, match="no \\*.safetensors files"):
    summarize.count_parameters(str(tmp_path / "missing"))
