"""Orbax checkpoints of the train state plus the data iterator's state (async, keep N).

A checkpoint is one Orbax step directory holding two items: `state` (the `TrainState` pytree:
params, optimizer, step, counters) and `extra` (JSON: the data iterator state and loop
counters). Saves are asynchronous; Orbax writes to a temporary directory and renames it when
complete, so a kill -9 mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every `every` steps (and on demand), keeps the newest `keep`, restores the latest."""

  def __init__(self, directory: str, *, every: int, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.every = every
    try:
      os.makedirs(self.directory, exist_ok=True)
      probe = os.path.join(self.directory, ".write_test")
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      raise OSError(f"checkpoint directory {self.directory!r} is not writable: {e}") from e
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def maybe_save(self, step: int, state: Any, extra: dict, *, force: bool = False) -> bool:
    """Saves at multiples of `every` (or when forced); returns whether it saved."""
    if not force and (self.every <= 0 or step % self.every):
      return False
    if step in self._manager.all_steps():
      return False
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)), force=True)
    return True

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict] | None:
    """The (state, extra) of `step` (default latest) laid out like `abstract_state`, or None."""
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), extra=ocp.args.JsonRestore()))
    return restored["state"], restored["extra"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
