"""eval.json, the per-sample JSONL and the summary line: strict JSON, required fields, errors."""

import dataclasses
import json

import numpy as np
import pytest

from mrt_jax.evaluation import report
from mrt_jax.evaluation import (Estimate, eval_record, regret_metrics, sample_record,
                                summary_line, write_eval_json, write_samples_jsonl)


@dataclasses.dataclass
class _Config:
  num_samples: int = 4
  budgets: tuple = (0, 512, 1024)


def _record():
  metrics = {"pass@1": np.float32(0.5), "pass@4": 0.75, "maj@4": Estimate(0.5, 0.25, 0.75),
             "mean_thinking_tokens": np.int64(812), "token_efficiency": None,
             "j_curve": np.array([0.1, 0.4, np.nan])}
  metrics.update(regret_metrics([1024, 512], [0.4, 0.6]))
  return eval_record(config=_Config(), checkpoint="/ckpt/mrt/step_100", metrics=metrics,
                     extra={"plots": ["j_curves.png"]})


def test_eval_json_round_trip(tmp_path):
  record = _record()
  path = write_eval_json(tmp_path / "out" / "eval.json", record)
  with open(path) as f:
    loaded = json.load(f)
  assert loaded == record
  assert loaded["checkpoint"] == "/ckpt/mrt/step_100"
  assert loaded["config"] == {"num_samples": 4, "budgets": [0, 512, 1024]}
  assert loaded["metrics"]["maj@4"] == {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}
  assert loaded["metrics"]["j_curve"] == [pytest.approx(0.1), pytest.approx(0.4), None]
  # Regret without a horizon is taken at the largest horizon.
  assert loaded["metrics"]["normalized_regret"] == 0.4
  assert loaded["metrics"]["normalized_regret@512"] == 0.6
  assert loaded["plots"] == ["j_curves.png"]


def test_summary_line():
  line = summary_line(_record())
  assert "\n" not in line
  summary = json.loads(line)
  assert summary["pass@1"] == 0.5 and summary["normalized_regret"] == 0.4
  assert summary["checkpoint"] == "/ckpt/mrt/step_100"
  assert "maj@4" not in summary and "j_curve" not in summary  # Scalars only.


def test_samples_jsonl(tmp_path):
  records = [sample_record(problem_id="aime24/3", sample_index=i, completion=f"text {i}",
                           boundaries=np.array([0, 17, 40]), j_values=np.array([0.0, 0.5, 1.0]),
                           verdict=bool(i), answer="42", num_tokens=np.int32(55))
             for i in range(3)]
  path = write_samples_jsonl(tmp_path / "samples.jsonl", records)
  with open(path) as f:
    lines = [json.loads(line) for line in f]
  assert len(lines) == 3
  assert lines[1] == {"problem_id": "aime24/3", "sample_index": 1, "completion": "text 1",
                      "blocks": [0, 17, 40], "j_values": [0.0, 0.5, 1.0], "verdict": True,
                      "answer": "42", "num_tokens": 55}


def test_bad_input():
  with pytest.raises(ValueError, match=r"metrics\['normalized_regret'\] = None; expected a number"):
    eval_record(config={}, checkpoint="c", metrics={"pass@1": 0.5})
  with pytest.raises(ValueError, match="lack \\['pass@1'\\]"):
    summary_line({"metrics": {"normalized_regret": 0.1}})
  with pytest.raises(ValueError, match=r"boundaries have shape \(3,\) and j_values \(2,\)"):
    sample_record(problem_id=0, sample_index=0, completion="", boundaries=[0, 1, 2],
                  j_values=[0.1, 0.2], verdict=False)
  with pytest.raises(TypeError, match="cannot write set"):
    eval_record(config={"x": {1, 2}}, checkpoint="c",
                metrics={"pass@1": 0.5, "normalized_regret": 0.1})


def test_before_after_table_names_the_data_figures_and_paths():
  def record(step, p, ci, think, regret):
    return {"step": step, "dataset": "test.jsonl", "num_problems": 16, "num_samples": 2,
            "metrics": {"pass@1": p, "pass@1_ci": ci, "mean_thinking_tokens": think,
                        "normalized_regret": regret}}
  table = report.before_after_table(record(0, 0.5, [0.25, 0.75], 144.06, 0.4781),
                                    record(20, 0.625, [0.375, 0.8125], 119.0, None),
                                    run_dir="/w", plots_dir="/w/eval/compare")
  lines = table.splitlines()
  assert lines[0] == "Evaluated on test.jsonl: 16 problems x 2 samples each"
  assert lines[1].split() == ["warm", "start", "(step", "0)", "trained", "(step", "20)"]
  assert lines[2].split("  ")[0] == "pass@1 [95% interval]"
  assert "0.500 [0.250, 0.750]" in lines[2] and "0.625 [0.375, 0.812]" in lines[2]
  assert lines[3].split()[-2:] == ["144.1", "119.0"]
  assert lines[4].split()[-2:] == ["0.478", "n/a"]  # a null (non-finite) figure stays visible
  # Columns line up: each figure starts where its header does.
  assert lines[2].index("0.625") == lines[1].index("trained")
  assert lines[5].startswith("plots: /w/eval/compare") and lines[6].startswith("run:   /w ")
