"""Verifier worker pools shared by the reward tests (starting workers is the slow part)."""

import pytest

from mrt_jax.rewards import VerifierPool


@pytest.fixture(scope="session")
def math_pool():
  """Two workers with a generous timeout: the table's cases must never time out."""
  with VerifierPool(num_workers=2, timeout_s=30.0) as pool:
    yield pool


@pytest.fixture(scope="session")
def strict_pool():
  """Two workers with a short timeout, for hung verifiers (each timeout costs 2 s)."""
  with VerifierPool(num_workers=2, timeout_s=2.0) as pool:
    yield pool
