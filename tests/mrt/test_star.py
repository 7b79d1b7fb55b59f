"""MRT-STaR selection: the correct trace of least regret per group, ties to fewer tokens."""

import numpy as np
import pytest

from mrt_jax.mrt import star


def _regret_by_hand(bounds, j, horizon):
  """1 − (1/C0)·(trapezoids up to b_N + flat J_N to C0), from the knots, in plain Python."""
  area = sum((b1 - b0) * (j0 + j1) / 2 for b0, b1, j0, j1 in zip(bounds, bounds[1:], j, j[1:]))
  return 1 - (area + j[-1] * (horizon - bounds[-1])) / horizon


def test_hand_computed_selection():
  outcome = np.array([1, 1, 0, 1,   0, 0, 0, 0,   1, 1, 1, 0], np.float32)
  # Group 0: rows 0 and 1 end at the same J_N = 1 (the same total progress), but row 1 gets
  # there after 10 of its 40 tokens, row 0 only at 40; row 3 never rises. Padding past N reads 9.
  bounds = np.array([
      [0, 40, 40], [0, 10, 40], [0, 5, 5], [0, 30, 30],
      [0, 1, 1], [0, 1, 1], [0, 1, 1], [0, 1, 1],
      [0, 20, 20], [0, 10, 20], [0, 20, 20], [0, 1, 2]], np.float64)
  success = np.array([
      [0, 1, 9], [0, 1, 1], [0, 1, 9], [.4, .4, 9],
      [0, 1, 9], [0, 1, 9], [0, 1, 9], [0, 1, 9],
      [0, .5, 9], [0, .5, .5], [0, .5, 9], [1, 1, 1]], np.float64)
  num_blocks = np.array([1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 2])
  lengths = np.array([50, 60, 5, 30, 1, 1, 1, 1, 20, 15, 30, 1])
  want = {0: _regret_by_hand([0, 40], [0, 1], 40),
          1: _regret_by_hand([0, 10, 40], [0, 1, 1], 40),
          3: _regret_by_hand([0, 30], [.4, .4], 40)}
  # 0.125 < 0.5 < 0.6. Total progress would tie rows 0 and 1 (J_N − J_0 = 1) and keep row 0.
  assert want[1] < want[0] < want[3]
  chosen = star.select("min_regret", outcome, success, bounds, num_blocks, lengths, group_size=4)
  # Group 0: row 1. Group 1: nothing correct. Group 2: rows 8, 9, 10 share one curve
  # (row 9's extra knot lies on it); row 9 has the fewest tokens.
  np.testing.assert_array_equal(chosen, [1, -1, 9])
  plain = star.select("any_correct", outcome, success, bounds, num_blocks, lengths, group_size=4)
  np.testing.assert_array_equal(plain, [3, -1, 9])


def test_equal_regret_goes_to_fewer_tokens():
  outcome = np.ones(2, np.float32)
  bounds = np.array([[0, 10], [0, 30]], np.float64)
  success = np.array([[.5, .5], [.5, .5]])
  chosen = star.min_regret(outcome, success, bounds, np.array([1, 1]), np.array([40, 12]), 2)
  np.testing.assert_array_equal(chosen, [1])


def test_bad_input():
  with pytest.raises(ValueError, match="not a whole number of groups of size 4"):
    star.min_regret(np.zeros(6), np.zeros((6, 1)), np.zeros((6, 1)), np.zeros(6, int),
                    np.zeros(6), 4)
  with pytest.raises(ValueError, match="selection='best' is unknown"):
    star.select("best", np.zeros(4), np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4, int),
                np.zeros(4), group_size=4)
