"""Shared pytest setup: strict rank promotion, f32 everywhere, and the tiny-checkpoint helper."""

import os
import sys

# The tests' tiny programs take far longer to compile than to run: XLA's backend optimizations
# (LLVM's passes) are turned off for the test run and the subprocesses it starts, which inherit
# this environment (the notebook's kernel and the benchmarks' quick runs included). Everything
# still runs through the same HLO passes and partitioner; the demo and the figures in
# BENCHMARKS.md run at XLA's default level. Set before jax is imported.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield
