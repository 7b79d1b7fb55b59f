"""A workdir on a bucket URI (`gs://`, served offline by tests/fake_bucket.py through etils.epath):
metrics.jsonl and TensorBoard events survive a resume, evaluation outputs and plots land in
the bucket, and nothing is written to a local `gs:` directory."""

import json
import os

import numpy as np
import pytest

import fake_bucket
from mrt_jax import storage
from mrt_jax.evaluate import compare
from mrt_jax.evaluation import report
from mrt_jax.train.metrics import MetricsWriter
from mrt_jax.train.setup import check_workdir


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  fake_bucket.install(str(tmp_path / "bucket_root"))
  monkeypatch.chdir(tmp_path)  # a path mistaken for a local one would land here, under gs:
  yield tmp_path / "bucket_root" / "bucket"
  assert not os.path.exists(tmp_path / "gs:"), "a gs:// path was written as a local path"


def _lines(uri):
  with storage.open_file(uri) as f:
    return [json.loads(line) for line in f]


def test_metrics_resume_round_trip_on_a_bucket(bucket):
  workdir = check_workdir("gs://bucket/run")
  assert workdir == "gs://bucket/run"
  writer = MetricsWriter(workdir, total_steps=4)
  for step in range(1, 5):
    writer.write(step, {"loss": np.float32(step), "reward_mean": np.float32(0.5)})
  writer.write_text(1, "samples", "a rollout")
  writer.close()
  assert [l["step"] for l in _lines(f"{workdir}/metrics.jsonl")] == [1, 2, 3, 4]
  # Resumed from the step-2 checkpoint: steps 3 and 4 are dropped, then recomputed.
  writer = MetricsWriter(workdir, total_steps=4, initial_step=2)
  for step in (3, 4):
    writer.write(step, {"loss": np.float32(10 * step)})
  writer.close()
  lines = _lines(f"{workdir}/metrics.jsonl")
  assert [(l["step"], l["loss"]) for l in lines] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
  events = storage.listdir(f"{workdir}/tensorboard")
  # One event file per writer, named by the second it opened (two may share a name here).
  assert events and all(e.startswith("events.out.tfevents") for e in events)
  assert all((bucket / "run" / "tensorboard" / e).stat().st_size > 0 for e in events)
  assert sorted(os.listdir(bucket / "run")) == ["metrics.jsonl", "tensorboard"]  # no probe left


def test_evaluation_outputs_and_plots_on_a_bucket(bucket):
  curves = {"budgets": [0, 8, 16], "J": [0.1, 0.4, 0.5], "mean_thinking_tokens": [0, 8, 15],
            "episode_J": [0.1, 0.3, 0.5], "horizons": [8, 16], "regret": [0.5, 0.6],
            "episode_regret": [0.4, 0.5]}
  record = report.eval_record(config={"seed": 0}, checkpoint="gs://bucket/run/checkpoints",
                              metrics={"pass@1": 0.5, "normalized_regret": 0.6},
                              extra={"name": "step_4", "budget_forcing": curves})
  report.write_eval_json("gs://bucket/run/eval/step_4/eval.json", record)
  report.write_samples_jsonl("gs://bucket/run/eval/step_4/samples.jsonl", [{"a": 1}, {"a": 2}])
  plots = compare(["gs://bucket/run/eval/step_4/eval.json"], "gs://bucket/run/eval/compare")
  assert sorted(plots.values()) == [f"gs://bucket/run/eval/compare/{n}" for n in
                                    ("accuracy_vs_tokens.png", "j_curves.png", "regret.png")]
  for name in ("accuracy_vs_tokens.png", "j_curves.png", "regret.png"):
    assert (bucket / "run/eval/compare" / name).read_bytes()[:4] == b"\x89PNG"
  assert json.loads((bucket / "run/eval/step_4/eval.json").read_text())["metrics"]["pass@1"] == 0.5
  assert _lines("gs://bucket/run/eval/step_4/samples.jsonl") == [{"a": 1}, {"a": 2}]
