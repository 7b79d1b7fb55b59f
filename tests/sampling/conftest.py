"""Session-wide tiny HF checkpoints for the sampler tests (built once per family)."""

import pytest

import hf_fixtures
from mrt_jax import models


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
  """checkpoint(family) -> (torch model, config, params, directory), cached per family."""
  built = {}

  def get(family: str):
    if family not in built:
      directory = tmp_path_factory.mktemp(family)
      model = hf_fixtures.make_checkpoint(family, str(directory), seed=0)
      config, params = models.load_hf(directory)
      built[family] = (model, config, params, directory)
    return built[family]

  return get

