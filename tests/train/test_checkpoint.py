"""Orbax checkpoints of the train state and the data iterator state."""

import os

import jax
import numpy as np
import pytest

from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import create_state
from mrt_jax.train.checkpoint import Checkpointer

import sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "learner"))
from learner_fixtures import tiny_model  # noqa: E402
from multiprocess_util import run_processes  # noqa: E402
from subprocess_util import run_python  # noqa: E402


def _state(seed):
  config, params = tiny_model(seed)
  optimizer = make_optimizer(OptimizerConfig(total_steps=10))
  return create_state(params, optimizer)


def test_save_restore_round_trip_keeps_n_and_every(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "ck"), every=2, keep=2)
  state = _state(0)
  saved = {}
  for step in range(1, 7):
    state = state.replace(step=state.step + 1)
    if ckpt.maybe_save(step, state, {"step": step, "data": {"pos": step * 3}}):
      saved[step] = jax.tree.map(np.asarray, state)
  ckpt.wait()
  assert sorted(saved) == [2, 4, 6]
  assert ckpt.latest_step() == 6
  assert sorted(int(d) for d in os.listdir(tmp_path / "ck") if d.isdigit()) == [4, 6]
  fresh = Checkpointer(str(tmp_path / "ck"), every=2, keep=2)
  restored, extra = fresh.restore(_state(1))
  assert extra == {"step": 6, "data": {"pos": 18}}
  jax.tree.map(np.testing.assert_array_equal, saved[6], jax.tree.map(np.asarray, restored))
  restored4, extra4 = fresh.restore(_state(1), step=4)
  assert extra4["step"] == 4 and int(restored4.step) == 4
  fresh.close()
  ckpt.close()


def test_empty_directory_restores_nothing_and_unwritable_is_an_error(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "empty"), every=1)
  assert ckpt.restore(_state(0)) is None
  ckpt.close()
  locked = tmp_path / "locked"
  locked.write_text("a file, not a directory")
  with pytest.raises(OSError, match="not writable"):
    Checkpointer(str(locked / "ck"), every=1)


def test_a_target_without_shardings_is_an_error(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "ck"), every=1)
  ckpt.maybe_save(1, _state(0), {"step": 1}, force=True)
  ckpt.wait()
  unplaced = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))
  with pytest.raises(ValueError, match="no sharding"):
    ckpt.restore(unplaced)
  ckpt.close()


# Restores the state saved in `{directory}` (or first writes `{leaves}` there from a `{write_mesh}`
# layout) onto `{mesh}`, and checks every array is placed with the target sharding and each
# shard this process holds equals the written values. Nothing is computed on devices, so
# nothing compiles.
_RESTORE_ON_MESH = """
import sys, jax, numpy as np
sys.path.insert(0, "tests/learner")
from learner_fixtures import HF
from mrt_jax import models
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import param_shardings
from mrt_jax.train.checkpoint import Checkpointer, abstract_train_state
config = models.config_from_hf_dict(HF)
optimizer = make_optimizer(OptimizerConfig(total_steps=10))
shapes = jax.eval_shape(lambda: models.init_params(config, jax.random.key(0)))

def abstract_state(mesh):
  placed = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        shapes, param_shardings(config, mesh))
  return abstract_train_state(placed, optimizer)

with np.load("{leaves}") as f:
  expected = [f[f"arr_{{i}}"] for i in range(len(f.files))]
ckpt = Checkpointer("{directory}", every=1)
if {write_mesh} is not None:
  layout = abstract_state(models.make_mesh(**{write_mesh}))
  written = jax.tree.unflatten(jax.tree.structure(layout), [
      jax.device_put(e, t.sharding) for e, t in zip(expected, jax.tree.leaves(layout))])
  ckpt.maybe_save(1, written, {{"step": 1}}, force=True)
  ckpt.wait()
target = abstract_state(models.make_mesh(**{mesh}))
restored, extra = ckpt.restore(target)
ckpt.close()
assert extra == {{"step": 1}}, extra
sharded = 0
for (path, x), t, e in zip(jax.tree.leaves_with_path(restored), jax.tree.leaves(target),
                           expected):
  name = jax.tree_util.keystr(path)
  assert x.sharding.is_equivalent_to(t.sharding, x.ndim), (name, x.sharding, t.sharding)
  sharded += not x.sharding.is_fully_replicated
  for shard in x.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), e[shard.index], err_msg=name)
assert sharded > 10, sharded  # params and both Adam moments: most leaves are split
print("restored", jax.process_count(), len(jax.devices()))
"""


def _expected_leaves(path) -> str:
  """Saves the leaves of `_state(0)` (with non-zero Adam moments) as arr_0, arr_1, ..."""
  state = _state(0)
  moments = jax.tree.map(lambda x: x + np.array(1, x.dtype), state.opt_state)
  state = state.replace(opt_state=moments)
  np.savez(path, *[np.asarray(x) for x in jax.tree.leaves(state)])
  return state


def test_restore_places_every_array_on_another_mesh(tmp_path):
  # Written with fsdp=8, restored onto data 2 x fsdp 2 x tensor 2 (8 CPU devices).
  _expected_leaves(tmp_path / "leaves.npz")
  code = _RESTORE_ON_MESH.format(directory=tmp_path / "ck", leaves=tmp_path / "leaves.npz",
                                 write_mesh="dict(fsdp=8)", mesh="dict(data=2, fsdp=2, tensor=2)")
  assert "restored 1 8" in run_python(code, devices=8)


def test_two_processes_restore_a_one_process_checkpoint(tmp_path):
  state = _expected_leaves(tmp_path / "leaves.npz")
  ckpt = Checkpointer(str(tmp_path / "ck"), every=1)
  ckpt.maybe_save(1, state, {"step": 1}, force=True)  # One process, one device.
  ckpt.close()
  # 2 processes x 2 devices: fsdp across the processes, tensor within each.
  code = _RESTORE_ON_MESH.format(directory=tmp_path / "ck", leaves=tmp_path / "leaves.npz",
                                 write_mesh=None, mesh="dict(fsdp=2, tensor=2)")
  outs = run_processes(code, num_processes=2, local_devices=2)
  assert all("restored 2 4" in out for out in outs), outs
