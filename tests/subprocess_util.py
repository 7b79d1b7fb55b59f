"""Run test code in a fresh Python process with N simulated CPU devices.

XLA reads `--xla_force_host_platform_device_count` once, before jax initializes, so tests that
need several devices run their body in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, devices: int = 8, timeout: int = 600, env: dict | None = None) -> str:
  """Runs `code` with `devices` CPU devices; returns stdout, raising with stderr on failure."""
  full_env = dict(os.environ)
  full_env["XLA_FLAGS"] = (full_env.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={devices}").strip()
  full_env["JAX_PLATFORMS"] = "cpu"
  full_env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                            full_env.get("PYTHONPATH", "")])
  full_env.update(env or {})
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                        text=True, timeout=timeout, env=full_env, cwd=ROOT)
  if proc.returncode != 0:
    raise AssertionError(f"subprocess failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
  return proc.stdout
