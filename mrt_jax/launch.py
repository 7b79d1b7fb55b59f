"""`python -m mrt_jax.launch --config=configs/X.py[:variant] [--config.a.b=value ...]`

Trains with the config's algorithm (GRPO, MRT), resuming from `config.workdir` when it holds a
checkpoint. On a TPU VM pod slice run the same command on every worker (`launch/tpu_pod.sh`):
on a machine with TPU chips `jax.distributed.initialize()` finds the other workers by itself
(`mrt_jax.distributed`). On GPU clusters pass `--coordinator_address`, `--num_processes` and
`--process_id` (`launch/gpu_node.sh`).
A config with a `demo` block (the built-in configs' `:cpu` variants) first builds the demo's
tiny assets; a config of another task has none and builds nothing.
"""

from __future__ import annotations

import json

from absl import logging

from mrt_jax import config_cli, distributed


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
  distributed.initialize()
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
