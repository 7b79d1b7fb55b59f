"""Shared pytest setup: strict rank promotion, f32 everywhere, and the tiny-checkpoint helper."""

import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield
