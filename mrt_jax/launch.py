"""`python -m mrt_jax.launch --config=configs/X.py[:variant] [--config.a.b=value ...]`

Trains with the config's algorithm (GRPO, MRT), resuming from `config.workdir` when it holds a
checkpoint. On a TPU VM pod slice run the same command on every worker (`launch/tpu_pod.sh`);
`jax.distributed` then finds the other workers by itself. On GPU clusters pass
`--coordinator_address`, `--num_processes` and `--process_id` (`launch/gpu_node.sh`).
A config with a `demo` block (the built-in configs' `:cpu` variants) first builds the demo's
tiny assets; a config of another task has none and builds nothing.
"""

from __future__ import annotations

import json
import os

from absl import flags, logging

from mrt_jax import config_cli

_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-process GPU/CPU runs)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index")


def init_distributed() -> None:
  """`jax.distributed.initialize` for multi-process runs (explicit flags, or a TPU pod slice)."""
  import jax
  if _NUM_PROCESSES.value and _NUM_PROCESSES.value > 1:
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    jax.distributed.initialize()  # Multi-host TPU slice: every worker runs this command.


def _build_demo_assets(config, demo) -> None:
  """Process 0 builds the demo's assets first; the others then find them on a shared
  filesystem, or build the same ones (they are a function of the config) on their own."""
  import jax
  from jax.experimental import multihost_utils
  if jax.process_index() == 0:
    demo.build_assets(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("demo assets built")
    if jax.process_index() != 0:
      demo.build_assets(config)


def main(config) -> None:
  # Orbax and XLA log every checkpoint phase at INFO; the progress bar and metrics.jsonl are
  # the run's record.
  logging.set_verbosity(logging.WARNING)
  init_distributed()
  import jax
  from mrt_jax.train import demo, loop  # After distributed init: they touch devices.
  if config.get("demo") is not None:
    _build_demo_assets(config, demo)
  metrics = loop.train(config)
  if jax.process_index() == 0:
    table = loop.evaluation_table(config.workdir)
    if table is not None:
      print("\n" + table, flush=True)
    print(json.dumps({"step": config.train.total_steps, **metrics}))


if __name__ == "__main__":
  config_cli.run(main)
