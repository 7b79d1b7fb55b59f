"""Multi-process start-up shared by `launch`, `evaluate` and `export` (absl flags defined here).

Every entry point calls `initialize()` before touching a device:
- explicit flags `--coordinator_address`, `--num_processes`, `--process_id` (GPU clusters,
  CPU tests): `jax.distributed.initialize` with them (gloo collectives on CPU);
- no flags on a Cloud TPU VM (TPU chips on this machine's PCI bus, as JAX itself detects them):
  `jax.distributed.initialize()` with no arguments. JAX then finds the slice's workers through
  the TPU metadata (GCE) or the GKE variables; a single-host VM becomes one process. No GKE
  variable is required;
- otherwise one process (this machine's devices only).
`log_process(mesh)` then prints one line per process (its index, the process count, its devices
and the mesh) to stderr.
"""

from __future__ import annotations

import os
import sys

from absl import flags

_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-process GPU/CPU runs)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index")


def on_cloud_tpu_vm() -> bool:
  """Whether this machine has TPU chips attached (a Cloud TPU VM or a GKE TPU node)."""
  # JAX's own check (PCI vendor and device ids), the one its TPU cluster detection relies on.
  from jax._src import hardware_utils  # pylint: disable=import-outside-toplevel
  return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0


def mode(coordinator: str | None, num_processes: int | None, process_id: int | None,
         tpu_vm: bool) -> str:
  """"explicit", "auto" (`jax.distributed.initialize()` detects the cluster) or "single".

  Raises:
    ValueError: only some of the three explicit flags are given, or they are inconsistent.
  """
  given = {"--coordinator_address": coordinator, "--num_processes": num_processes,
           "--process_id": process_id}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise ValueError(f"multi-process flags: {missing} missing; pass all of "
                       "--coordinator_address, --num_processes and --process_id, or none")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} with --num_processes={num_processes}; "
                       "expected 0 <= process_id < num_processes")
    return "explicit"
  return "auto" if tpu_vm else "single"


def initialize() -> str:
  """Joins the other processes of the run (see the module docstring); returns the mode."""
  import jax  # pylint: disable=import-outside-toplevel
  how = mode(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, on_cloud_tpu_vm())
  if how == "explicit":
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  elif how == "auto":
    jax.distributed.initialize()
  return how


def describe(mesh) -> str:
  """One line: this process's index, the process count, its devices and the mesh."""
  import jax  # pylint: disable=import-outside-toplevel
  axes = " x ".join(f"{name} {size}" for name, size in mesh.shape.items())
  return (f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} of {jax.device_count()} {jax.devices()[0].platform} "
          f"devices; mesh {axes}")


def log_process(mesh) -> None:
  """Prints `describe(mesh)` to stderr (every process, once per run)."""
  print(f"mrt_jax: {describe(mesh)}", file=sys.stderr, flush=True)
