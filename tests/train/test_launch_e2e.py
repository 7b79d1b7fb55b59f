"""`python -m mrt_jax.launch` end to end on CPU: GRPO and MRT steps, kill -9 and exact resume.

The MRT runs use the shared reference's mesh (conftest.py: fsdp=2 over 2 CPU devices), so the
kill -9 test also resumes onto a mesh that splits the params and optimizer state.
"""

import json
import os
import signal
import subprocess
import time

import numpy as np

from launch_fixtures import (REF_DEVICES, REF_STEPS as STEPS, env, launch_cmd, metrics, ref_cmd,
                             run, untimed)
from subprocess_util import ROOT


def _events(workdir):
  tb = os.path.join(workdir, "tensorboard")
  return [f for f in os.listdir(tb) if f.startswith("events.out.tfevents")]


def test_mrt_run_writes_metrics_events_and_checkpoints(shared):
  lines = metrics(shared["ref"])
  assert [l["step"] for l in lines] == list(range(1, STEPS + 1))
  for l in lines:
    assert np.isfinite(l["loss"]) and l["num_probes"] > 0 and "J_0" in l
    assert l["answer_nll"] > 0 and np.isfinite(l["answer_nll"])  # the meta-prover's rows
  assert _events(shared["ref"])
  steps = sorted(int(d) for d in os.listdir(os.path.join(shared["ref"], "checkpoints"))
                 if d.isdigit())
  assert steps[-1] == STEPS
  assert '"step": 4' in shared["stdout"].strip().splitlines()[-1]


def test_grpo_runs_without_probes_with_several_updates_per_batch(shared):
  workdir = str(shared["root"] / "grpo")
  # μ = 2 passes over 2 mini-batches: the last update sees ratios moved off 1.
  # The meta-prover's answer rows sampled from the warm start, which β = 0 leaves no reference
  # copy of: the run keeps its own before the first update donates the params.
  extra = ["--config.loss.answer_nll_coef=0.5", "--config.loss.kl_beta=0.0",
           "--config.train.num_updates=2", "--config.train.mini_batches=2",
           "--config.optimizer.learning_rate=1e-2", "--config.optimizer.warmup_ratio=0.0",
           # Evaluation from the loop at steps 0 and 2, tiny: 4 problems, budgets 8 and 16, no
           # extrapolation (the e2e evaluation test covers it).
           "--config.train.eval_every=2", "--config.eval.num_problems=4",
           "--config.eval.budgets=(8, 16)", "--config.eval.extrapolation_budgets=()",
           "--config.eval.num_resamples=20",
           # J(c) from the warm start's forced answers, loaded once for both evaluations.
           f"--config.eval.meta_prover={shared['assets']}/model"]
  # No eval.data_path: the evaluation reads the held-out split of data.path that training skips.
  proc = run(launch_cmd("configs/grpo_7b.py:cpu", workdir, shared["assets"], 2, extra,
                        held_out_file=False), shared["cache"])
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == [1, 2]
  assert all(l["num_probes"] == 0 and "J_1" not in l for l in lines)
  assert all(np.isfinite(l["answer_nll"]) and l["answer_nll"] > 0 for l in lines)
  assert max(l["ratio_max"] - l["ratio_min"] for l in lines) > 1e-4
  assert _events(workdir)
  for step in (0, 2):
    record = json.load(open(os.path.join(workdir, "eval", f"step_{step}", "eval.json")))
    assert record["step"] == step and "pass@1" in record["metrics"]
    assert record["meta_prover"] == f"{shared['assets']}/model"
    assert record["dataset"].startswith(f"{shared['assets']}/train.jsonl (held-out split: ")
  assert os.path.exists(os.path.join(workdir, "eval", "compare", "j_curves.png"))
  # The run ends with the before/after table, then the JSON line of the last step's metrics.
  out = proc.stdout.strip().splitlines()[-8:]
  assert out[0].startswith(f"Evaluated on {shared['assets']}/train.jsonl (held-out split: ")
  assert out[1].split() == ["warm", "start", "(step", "0)", "trained", "(step", "2)"]
  assert [l.split()[0] for l in out[2:7]] == ["pass@1", "mean", "normalized", "plots:", "run:"]
  assert out[-1].startswith('{"step": 2')


def test_export_writes_a_directory_transformers_loads(shared):
  from mrt_jax import config_cli, models
  from mrt_jax.export import export
  import hf_fixtures
  import jax
  import jax.numpy as jnp
  import torch
  import transformers
  overrides = [a.removeprefix("--config.") for a in ref_cmd(shared["ref"], shared["assets"])[4:]]
  # Written on fsdp=2 (2 devices), exported from this 1-device process.
  config = config_cli.load_config("configs/demo_cpu.py", overrides + ["mesh.fsdp=1"])
  out = str(shared["root"] / "exported")
  assert export(config, os.path.join(shared["ref"], "checkpoints"), out) == f"step_{STEPS}"
  model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
  assert transformers.AutoTokenizer.from_pretrained(out) is not None
  model_config, params = models.load_hf(out)
  tokens = [5, 17, 42, 99, 3, 7]
  ours, _ = models.forward(model_config, params, jnp.asarray([tokens], jnp.int32))
  np.testing.assert_allclose(ours[0], hf_fixtures.torch_logits(model, tokens), rtol=0, atol=1e-4)
  # The exported params are the checkpoint's trained params, not the warm start.
  _, start = models.load_hf(config.model.path)
  assert any(float(jnp.abs(a - b).max()) > 0 for a, b in
             zip(jax.tree.leaves(params), jax.tree.leaves(start)))


def test_kill_9_then_restart_reproduces_the_uninterrupted_run(shared):
  workdir = str(shared["root"] / "killed")
  cmd = ref_cmd(workdir, shared["assets"])
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env(shared["cache"], REF_DEVICES),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
  run(cmd, shared["cache"], devices=REF_DEVICES)
  # Every metric is bit-identical; only the wall-clock time split (time_*) differs.
  assert untimed(metrics(workdir)) == untimed(metrics(shared["ref"]))


def test_mrt_star_runs(shared):
  workdir = str(shared["root"] / "star")
  run(launch_cmd("configs/mrt_star_7b.py:cpu", workdir, shared["assets"], 2), shared["cache"])
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == [1, 2]
  assert all("star_selected" in l and l["num_probes"] > 0 for l in lines)


def test_a_frozen_meta_prover_keeps_j_0_while_the_policy_moves(shared):
  """probe.meta_prover = the warm start: J_0 (the prompt alone, likelihood J, no sampling) stays
  the warm start's while the policy learns at a high rate (the answer rows pull it toward the
  reference answers, so its own J would move), equal to a run whose policy does not move
  (learning rate 0, μ the policy); the same data order gives both runs the same prompts."""
  common = ["--config.advantage.estimator=mrt", "--config.probe.estimator=likelihood",
            "--config.probe.top_p=1.0",  # a random model's nucleus can drop the answer: J = 0
            "--config.loss.answer_nll_coef=1.0", "--config.loss.answer_target=reference",
            "--config.train.eval_every=0", "--config.optimizer.warmup_ratio=0.0"]
  frozen = str(shared["root"] / "frozen_prover")
  run(launch_cmd("configs/demo_cpu.py", frozen, shared["assets"], 3, common + [
      "--config.optimizer.learning_rate=1e-2",
      f"--config.probe.meta_prover={shared['assets']}/model"]), shared["cache"])
  still = str(shared["root"] / "still_policy")
  run(launch_cmd("configs/demo_cpu.py", still, shared["assets"], 3, common + [
      "--config.optimizer.learning_rate=0.0"]), shared["cache"])
  moving, fixed = metrics(frozen), metrics(still)
  assert [l["step"] for l in moving] == [1, 2, 3] and all(l["J_0"] > 0 for l in moving)
  # The schedule's first step has learning rate 0; the policy moves at the second.
  assert moving[2]["answer_nll"] < fixed[2]["answer_nll"] - 0.1
  np.testing.assert_allclose([l["J_0"] for l in moving], [l["J_0"] for l in fixed], rtol=1e-5)
