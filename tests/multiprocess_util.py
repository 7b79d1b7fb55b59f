"""Run N processes joined by `jax.distributed` over gloo (CPU).

`run_processes` runs the same Python code in every process, already initialized (the code sees
`PROCESS_ID` and `NUM_PROCESSES`); `run_commands` runs a command line that initializes itself
from `--coordinator_address`, `--num_processes` and `--process_id` (e.g. `mrt_jax.launch`).
Each process gets `local_devices` simulated CPU devices.
"""

import os
import subprocess
import sys
import textwrap

import portpicker

from subprocess_util import ROOT

_PRELUDE = """
import os, jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
PROCESS_ID = int(os.environ["MRT_PROCESS_ID"])
NUM_PROCESSES = int(os.environ["MRT_NUM_PROCESSES"])
jax.distributed.initialize(coordinator_address=os.environ["MRT_COORDINATOR"],
                           num_processes=NUM_PROCESSES, process_id=PROCESS_ID)
"""


def _env(base: dict | None, process_id: int, num_processes: int, local_devices: int,
         coordinator: str) -> dict:
  env = dict(os.environ if base is None else base)
  env.update({
      "XLA_FLAGS": (f"{env.get('XLA_FLAGS', '')} "  # the last device count given wins
                    f"--xla_force_host_platform_device_count={local_devices}").strip(),
      "JAX_PLATFORMS": "cpu", "MRT_PROCESS_ID": str(process_id),
      "MRT_NUM_PROCESSES": str(num_processes), "MRT_COORDINATOR": coordinator,
      "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                     env.get("PYTHONPATH", "")]),
  })
  return env


def _wait(procs: list[subprocess.Popen], timeout: int, stderr: bool = False) -> list:
  """Stdouts (or (stdout, stderr) pairs) of all processes; raises with the first failure's
  stderr (killing the rest)."""
  outs = []
  try:
    for i, p in enumerate(procs):
      out, err = p.communicate(timeout=timeout)
      if p.returncode != 0:
        raise AssertionError(f"process {i} failed (exit {p.returncode}):\n{err[-6000:]}")
      outs.append((out, err) if stderr else out)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return outs


def run_processes(code: str, num_processes: int = 2, local_devices: int = 2,
                  timeout: int = 600) -> list[str]:
  """Runs `code` in `num_processes` processes; returns their stdouts (raises on failure)."""
  coordinator = f"localhost:{portpicker.pick_unused_port()}"
  procs = [subprocess.Popen(
      [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
      env=_env(None, i, num_processes, local_devices, coordinator), cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(num_processes)]
  return _wait(procs, timeout)


def run_commands(cmd: list[str], num_processes: int = 2, local_devices: int = 1,
                 env: dict | None = None, timeout: int = 600, stderr: bool = False) -> list:
  """Runs `cmd` plus the three distributed flags in every process; returns their stdouts
  (with `stderr`: (stdout, stderr) pairs)."""
  coordinator = f"localhost:{portpicker.pick_unused_port()}"
  procs = []
  for i in range(num_processes):
    flags = [f"--coordinator_address={coordinator}", f"--num_processes={num_processes}",
             f"--process_id={i}"]
    procs.append(subprocess.Popen(
        cmd + flags, env=_env(env, i, num_processes, local_devices, coordinator), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return _wait(procs, timeout, stderr)
