"""`python -m mrt_jax.launch` end to end on CPU: GRPO and MRT steps, kill -9 and exact resume."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest

from launch_fixtures import env, launch_cmd, metrics, run
from subprocess_util import ROOT

STEPS = 4


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """Assets, a compilation cache, and one uninterrupted MRT run all tests compare against."""
  root = tmp_path_factory.mktemp("launch")
  cache, assets = str(root / "jax_cache"), str(root / "assets")
  ref = str(root / "mrt_ref")
  out = run(launch_cmd("configs/demo_cpu.py", ref, assets, STEPS), cache)
  return {"root": root, "cache": cache, "assets": assets, "ref": ref, "stdout": out.stdout}


def _events(workdir):
  tb = os.path.join(workdir, "tensorboard")
  return [f for f in os.listdir(tb) if f.startswith("events.out.tfevents")]


def test_mrt_run_writes_metrics_events_and_checkpoints(shared):
  lines = metrics(shared["ref"])
  assert [l["step"] for l in lines] == list(range(1, STEPS + 1))
  for l in lines:
    assert np.isfinite(l["loss"]) and l["num_probes"] > 0 and "J_0" in l
  assert _events(shared["ref"])
  steps = sorted(int(d) for d in os.listdir(os.path.join(shared["ref"], "checkpoints"))
                 if d.isdigit())
  assert steps[-1] == STEPS
  assert '"step": 4' in shared["stdout"].strip().splitlines()[-1]


def test_grpo_runs_without_probes(shared):
  workdir = str(shared["root"] / "grpo")
  run(launch_cmd("configs/grpo_7b.py:cpu", workdir, shared["assets"], 2), shared["cache"])
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == [1, 2]
  assert all(l["num_probes"] == 0 and "J_1" not in l for l in lines)
  assert _events(workdir)


def test_kill_9_then_restart_reproduces_the_uninterrupted_run(shared):
  workdir = str(shared["root"] / "killed")
  cmd = launch_cmd("configs/demo_cpu.py", workdir, shared["assets"], STEPS)
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env(shared["cache"]), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 500
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path) and len(open(path).read().splitlines()) >= 2:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert len(metrics(workdir)) < STEPS
  run(cmd, shared["cache"])
  assert metrics(workdir) == metrics(shared["ref"])


def test_mrt_star_runs(shared):
  workdir = str(shared["root"] / "star")
  run(launch_cmd("configs/mrt_star_7b.py:cpu", workdir, shared["assets"], 2), shared["cache"])
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == [1, 2]
  assert all("star_selected" in l and l["num_probes"] > 0 for l in lines)
