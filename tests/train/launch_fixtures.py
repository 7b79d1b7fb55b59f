"""Tiny demo assets and `python -m mrt_jax.launch` runs in subprocesses for the e2e tests."""

import json
import os
import subprocess
import sys

from subprocess_util import ROOT

# Tiny everything: 2-layer width-32 model, short traces, 2 probes of 4 tokens.
TINY = [
    "--config.demo.num_problems=32", "--config.demo.num_test_problems=8",
    "--config.demo.hidden_size=32",
    "--config.demo.intermediate_size=64", "--config.demo.sft_trace_steps=0",
    "--config.demo.sft_answer_steps=0", "--config.demo.num_warm_starts=1",
    "--config.rollout.max_completion_len=24", "--config.probe.max_answer_len=4",
    "--config.probe.estimator=sampled", "--config.probe.num_probes=2",
    "--config.train.global_batch_prompts=2", "--config.train.micro_batch_prompts=1",
    "--config.segment.method=fixed_chunk", "--config.segment.chunk_tokens=8",
]


# The shared MRT reference run (conftest.py `shared`): 4 steps on one process with 2 CPU
# devices and fsdp=2, so params, grads and optimizer state are split, a resumed run restores
# onto the mesh, and 2 processes of 1 device each run the very same programs. No evaluation
# (the GRPO test covers it): its compiles would dominate every run of this command. The
# meta-prover's answer rows are on, so resume and multi-process runs cover them too.
REF_STEPS = 4
REF_DEVICES = 2
REF_EXTRA = ("--config.mesh.fsdp=2", "--config.train.eval_every=0",
             "--config.loss.answer_nll_coef=0.5")


def asset_flags(assets: str, held_out_file: bool = True) -> list[str]:
  """Points a config at demo assets in `assets` (model, tokenizer, problems), so no test writes
  the real demo's directory; `held_out_file=False` keeps eval.data_path empty (the config then
  evaluates on the held-out split of data.path)."""
  flags = [f"--config.model.path={assets}/model",
           f"--config.model.tokenizer_path={assets}/tokenizer",
           f"--config.data.path={assets}/train.jsonl"]
  return flags + ([f"--config.eval.data_path={assets}/test.jsonl"] if held_out_file else [])


def launch_cmd(config: str, workdir: str, assets: str, steps: int, extra=(),
               held_out_file: bool = True) -> list[str]:
  return [sys.executable, "-m", "mrt_jax.launch", f"--config={config}",
          f"--config.workdir={workdir}", *asset_flags(assets, held_out_file),
          f"--config.train.total_steps={steps}", *TINY, *extra]


def env(cache_dir: str, devices: int | None = None) -> dict:
  """CPU, a persistent compilation cache, and `devices` simulated devices (None: XLA's)."""
  e = dict(os.environ)
  e.update({"JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "PYTHONPATH": os.pathsep.join([ROOT, e.get("PYTHONPATH", "")])})
  if devices is not None:
    e["XLA_FLAGS"] = (f"{e.get('XLA_FLAGS', '')} "
                      f"--xla_force_host_platform_device_count={devices}").strip()
  return e


def run(cmd: list[str], cache_dir: str, timeout: int = 600,
        devices: int | None = None) -> subprocess.CompletedProcess:
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                        env=env(cache_dir, devices))
  if proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}:\n{proc.stderr[-5000:]}")
  return proc


def ref_cmd(workdir: str, assets: str, extra=()) -> list[str]:
  """The shared reference run's command (in `workdir`)."""
  return launch_cmd("configs/demo_cpu.py", str(workdir), str(assets), REF_STEPS,
                    [*REF_EXTRA, *extra])


def untimed(lines: list[dict]) -> list[dict]:
  """Every metric but the wall-clock time split (time_*), which no two runs share."""
  return [{k: v for k, v in l.items() if not k.startswith("time_")} for l in lines]


def metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]
