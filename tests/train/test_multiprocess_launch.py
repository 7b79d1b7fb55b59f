"""`python -m mrt_jax.launch` on 2 processes joined by jax.distributed (gloo) trains exactly like
1 process.

The shared reference (conftest.py) runs on one process holding 2 CPU devices with fsdp=2; here
2 processes holding 1 device each run the same command on the same mesh. The programs and
their partitioning are the same, so metrics and params must be equal exactly (tolerance 0).
"""

import os

import jax
import numpy as np

from launch_fixtures import (REF_DEVICES, REF_EXTRA, REF_STEPS, env, launch_cmd, metrics, ref_cmd,
                             run, untimed)
from multiprocess_util import run_commands


def _params(workdir, assets):
  """The latest checkpoint's params, restored on this (1-device) test process."""
  from mrt_jax import config_cli
  from mrt_jax.train.restore import load_checkpoint
  overrides = [a.removeprefix("--config.") for a in ref_cmd(workdir, assets)[4:]]
  config = config_cli.load_config("configs/demo_cpu.py", overrides)
  _, params, name = load_checkpoint(config, os.path.join(workdir, "checkpoints"))
  return name, jax.tree.map(np.asarray, params)


def test_two_processes_train_exactly_like_one(shared):
  workdir = str(shared["root"] / "two_processes")
  runs = run_commands(ref_cmd(workdir, shared["assets"]), num_processes=2, local_devices=1,
                      env=env(shared["cache"]), stderr=True)
  outs = [out for out, _ in runs]
  # The start-up path: each process joined the run and logs itself and the mesh once.
  for i, (_, err) in enumerate(runs):
    line = f"process {i} of 2: 1 of 2 cpu devices; mesh data 1 x fsdp 2 x tensor 1"
    assert err.count(line) == 1, err[-3000:]
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == list(range(1, REF_STEPS + 1))
  assert all(l["num_probes"] > 0 and np.isfinite(l["loss"]) for l in lines)
  assert untimed(lines) == untimed(metrics(shared["ref"]))
  # Process 0 alone reports (metrics.jsonl, TensorBoard, the final JSON line).
  assert f'"step": {REF_STEPS}' in outs[0] and '"step"' not in outs[1]
  # The checkpoint both processes wrote holds the 1-process run's params.
  name, params = _params(workdir, shared["assets"])
  ref_name, ref_params = _params(shared["ref"], shared["assets"])
  assert name == ref_name == f"step_{REF_STEPS}"
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_two_processes_with_a_fixed_meta_prover_train_exactly_like_one(shared):
  """probe.meta_prover = the warm start: its params load onto the mesh and its cache is filled
  with every rollout and forked by the probes on 2 processes as on 1 (tolerance 0)."""
  extra = [f"--config.probe.meta_prover={shared['assets']}/model"]
  cmd = lambda workdir: launch_cmd("configs/demo_cpu.py", workdir, shared["assets"], 2,
                                   [*REF_EXTRA, *extra])
  one = str(shared["root"] / "fixed_prover_one_process")
  run(cmd(one), shared["cache"], devices=REF_DEVICES)
  two = str(shared["root"] / "fixed_prover_two_processes")
  run_commands(cmd(two), num_processes=2, local_devices=1, env=env(shared["cache"]))
  lines = metrics(two)
  assert [l["step"] for l in lines] == [1, 2]
  assert all(l["num_probes"] > 0 and l["probe_answers"] > 0 for l in lines)
  assert untimed(lines) == untimed(metrics(one))
