"""Run the same Python code in N processes joined by `jax.distributed` over gloo (CPU).

Each process gets `local_devices` simulated CPU devices; the code sees `PROCESS_ID` and
`NUM_PROCESSES` already initialized.
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


def run_processes(code: str, num_processes: int = 2, local_devices: int = 2,
                  timeout: int = 600) -> list[str]:
  """Runs `code` in `num_processes` processes; returns their stdouts (raises on failure)."""
  port = portpicker.pick_unused_port()
  procs = []
  for i in range(num_processes):
    env = dict(os.environ)
    env.update({
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={local_devices}",
        "JAX_PLATFORMS": "cpu", "MRT_PROCESS_ID": str(i),
        "MRT_NUM_PROCESSES": str(num_processes), "MRT_COORDINATOR": f"localhost:{port}",
        "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                       env.get("PYTHONPATH", "")]),
    })
    procs.append(subprocess.Popen(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = []
  try:
    for i, p in enumerate(procs):
      out, err = p.communicate(timeout=timeout)
      if p.returncode != 0:
        raise AssertionError(f"process {i} failed (exit {p.returncode}):\n{err[-6000:]}")
      outs.append(out)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return outs
