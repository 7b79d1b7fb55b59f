"""Orbax checkpoints of the train state plus the data iterator's state (async, keep N).

A checkpoint is one Orbax step directory holding two items: `state` (the `TrainState` pytree:
params, optimizer, step, counters) and `extra` (JSON: the data iterator state and loop
counters). Saves are asynchronous; Orbax writes to a temporary directory and renames it when
complete, so a kill -9 mid-save leaves the previous checkpoint as the latest one.

Multi-process runs: every process calls save and restore (Orbax coordinates them); each writes
and reads only the shards its devices hold. Restores place every array with the target's
shardings, so a checkpoint written on one mesh resumes on another (other device or process
count).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import optax
import orbax.checkpoint as ocp

from mrt_jax import storage
from mrt_jax.learner.state import TrainState, init_state, state_layout


def abstract_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
  """`jax.ShapeDtypeStruct`s of `create_state(params, optimizer)` with its shardings.

  `params` may be abstract (shape, dtype and sharding are all that is read), so a resumed run
  never allocates a fresh optimizer state only to overwrite it.
  """
  shapes = jax.eval_shape(lambda p: init_state(p, optimizer), params)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      shapes, state_layout(params, optimizer))


def _check_placed(target: Any, where: str) -> None:
  unplaced = [jax.tree_util.keystr(path) for path, x in jax.tree.leaves_with_path(target)
              if getattr(x, "sharding", None) is None]
  if unplaced:
    raise ValueError(f"restoring {where}: target leaves {unplaced[:3]} have no sharding; "
                     "expected every leaf placed (see abstract_train_state)")


class Checkpointer:
  """Saves every `every` steps (and on demand), keeps the newest `keep`, restores the latest."""

  def __init__(self, directory: str, *, every: int, keep: int = 3, async_save: bool = True):
    self.every = every
    self.directory = storage.check_writable(directory, "checkpoint directory")
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

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict] | None:
    """The (state, extra) of `step` (default latest), or None when there is no checkpoint.

    Args:
      target: the state's pytree of `jax.ShapeDtypeStruct`s (or arrays), each with the sharding
        to restore onto (e.g. `abstract_train_state`): every process reads only the shards its
        devices hold, whatever the mesh or process count that wrote the checkpoint.
      step: the step to restore; None = the latest.

    Raises:
      ValueError: a leaf of `target` has no sharding (Orbax would return a host NumPy array).
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    _check_placed(target, f"{self.directory}/{step}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), extra=ocp.args.JsonRestore()))
    return restored["state"], restored["extra"]

  def restore_params(self, target: Any, step: int | None = None) -> tuple[Any, int] | None:
    """Only the params of step `step` (default latest), placed as `target`; None: no checkpoint.

    An Orbax partial restore: the optimizer moments, counters and data state are never read,
    so evaluating or exporting a 7B checkpoint costs the params' memory alone.

    Args:
      target: the params' pytree of `jax.ShapeDtypeStruct`s, each with its sharding (any mesh
        or process count; every process reads the shards its devices hold).
      step: the step to restore; None = the latest.

    Returns:
      (params, step).

    Raises:
      ValueError: a leaf of `target` has no sharding.
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    target = {"params": jax.tree.map(ocp.utils.to_shape_dtype_struct, target)}
    _check_placed(target, f"{self.directory}/{step}")
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as reader:
      restored = reader.restore(os.path.join(self.directory, str(step), "state"),
                                args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                                            partial_restore=True))
    return restored["params"], step

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
