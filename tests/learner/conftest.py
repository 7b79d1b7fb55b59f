"""The 1-device train-step reference that the 8-device and 2-process step tests compare with."""

import jax
import numpy as np
import pytest

from learner_fixtures import rl_batch, tiny_model, two_steps
from mrt_jax import models


@pytest.fixture(scope="session")
def one_device_steps(tmp_path_factory):
  """(path of the batch as .npz, `two_steps` on it on this process's first device)."""
  config, params = tiny_model()
  batch = rl_batch(config, params)
  path = tmp_path_factory.mktemp("learner_batch") / "batch.npz"
  np.savez(path, **batch)
  out, _ = two_steps(batch, models.make_mesh(devices=jax.devices()[:1]))
  return path, out
