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
