"""progress_reward and success_from_verdicts: hand-computed values, a NumPy reference on prime
shapes, and shape errors."""

import jax
import numpy as np
import pytest

import mrt_jax
from mrt_jax.mrt import progress_reward, success_from_verdicts


def test_hand_computed():
  success = np.array([[0.25, 0.5, 0.5, 1.0], [0.0, 1.0, 0.5, 0.75], [0.5, 0.0, 1.0, 1.0]],
                     np.float32)
  p = progress_reward(success, np.array([3, 1, 0], np.int32))
  np.testing.assert_array_equal(np.asarray(p), [[0.25, 0.0, 0.5], [1.0, 0.0, 0.0], [0, 0, 0]])
  assert p.dtype == np.float32 and p.shape == (3, 3)


def test_matches_numpy_reference_on_prime_shapes():
  rng = np.random.default_rng(0)
  B, N = 7, 5
  success = rng.random((B, N + 1)).astype(np.float32)
  num_blocks = rng.integers(0, N + 1, size=B).astype(np.int32)
  expected = np.zeros((B, N), np.float32)
  for b in range(B):
    for j in range(1, num_blocks[b] + 1):
      expected[b, j - 1] = success[b, j] - success[b, j - 1]
  np.testing.assert_allclose(np.asarray(progress_reward(success, num_blocks)), expected,
                             rtol=0, atol=1e-6)


def test_top_level_export_is_jitted_and_traceable():
  assert mrt_jax.progress_reward is progress_reward
  f = jax.jit(lambda s, n: progress_reward(s, n).sum())
  assert float(f(np.array([[0.0, 1.0]], np.float32), np.array([1], np.int32))) == 1.0


def test_no_blocks_gives_empty_progress():
  assert progress_reward(np.zeros((2, 1), np.float32), np.zeros(2, np.int32)).shape == (2, 0)


def test_success_from_verdicts():
  verdicts = np.array([[[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]], bool)  # B=1, N+1=3, M=4
  np.testing.assert_array_equal(np.asarray(success_from_verdicts(verdicts)), [[0.75, 1.0, 0.25]])
  masked = success_from_verdicts(verdicts, np.array([[True, True, False]]))
  np.testing.assert_array_equal(np.asarray(masked), [[0.75, 1.0, 0.0]])


def test_shape_errors_name_the_array():
  with pytest.raises(ValueError, match=r"num_blocks has shape \(3,\); expected \[B\]=\(2,\)"):
    progress_reward(np.zeros((2, 4), np.float32), np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="success has shape"):
    progress_reward(np.zeros(4, np.float32), np.zeros(4, np.int32))
  with pytest.raises(ValueError, match="verdicts has shape"):
    success_from_verdicts(np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="boundary_mask has shape"):
    success_from_verdicts(np.zeros((2, 3, 4), np.float32), np.ones((2, 4), bool))
