"""Tiny demo assets and `python -m mrt_jax.launch` runs in subprocesses for the e2e tests."""

import json
import os
import subprocess
import sys

from subprocess_util import ROOT

# Tiny everything: 2-layer width-32 model, short traces, 2 probes of 4 tokens.
TINY = [
    "--config.demo.num_problems=32", "--config.demo.hidden_size=32",
    "--config.demo.intermediate_size=64", "--config.demo.sft_steps=0",
    "--config.rollout.max_completion_len=24", "--config.probe.max_answer_len=4",
    "--config.train.global_batch_prompts=2", "--config.train.micro_batch_prompts=1",
    "--config.segment.method=fixed_chunk", "--config.segment.chunk_tokens=8",
]


def launch_cmd(config: str, workdir: str, assets: str, steps: int, extra=()) -> list[str]:
  return [sys.executable, "-m", "mrt_jax.launch", f"--config={config}",
          f"--config.workdir={workdir}", f"--config.model.path={assets}/model",
          f"--config.model.tokenizer_path={assets}/tokenizer",
          f"--config.data.path={assets}/train.jsonl", f"--config.train.total_steps={steps}",
          *TINY, *extra]


def env(cache_dir: str) -> dict:
  e = dict(os.environ)
  e.update({"JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "PYTHONPATH": os.pathsep.join([ROOT, e.get("PYTHONPATH", "")])})
  return e


def run(cmd: list[str], cache_dir: str, timeout: int = 600) -> subprocess.CompletedProcess:
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                        env=env(cache_dir))
  if proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}:\n{proc.stderr[-5000:]}")
  return proc


def metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]
