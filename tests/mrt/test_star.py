"""MRT-STaR selection: correct traces of maximal progress per group, ties to fewer tokens."""

import numpy as np
import pytest

from mrt_jax.mrt import star


def test_hand_computed_selection():
  outcome = np.array([1, 1, 0, 1,   0, 0, 0, 0,   1, 1, 1, 0], np.float32)
  # Total progress over real blocks: row 0: .5, row 1: .5+.25 (third block is padding), ...
  progress = np.array([
      [.5, 0, 0], [.5, .25, 9], [1, 0, 0], [.1, 0, 0],
      [1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0],
      [.5, 0, 0], [.25, .25, 0], [.5, 0, 0], [1, 1, 1]], np.float32)
  num_blocks = np.array([1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 3])
  lengths = np.array([10, 12, 5, 3, 1, 1, 1, 1, 20, 15, 20, 1])
  chosen = star.select("max_progress", outcome, progress, num_blocks, lengths, group_size=4)
  # Group 0: row 1 (.75 beats .5 and .1; the 9 is past its 2 blocks and ignored).
  # Group 1: nothing correct. Group 2: rows 8, 9, 10 tie at .5; row 9 has fewest tokens.
  np.testing.assert_array_equal(chosen, [1, -1, 9])
  plain = star.select("any_correct", outcome, progress, num_blocks, lengths, group_size=4)
  np.testing.assert_array_equal(plain, [3, -1, 9])


def test_bad_input():
  with pytest.raises(ValueError, match="not a whole number of groups of size 4"):
    star.max_progress(np.zeros(6), np.zeros((6, 1)), np.zeros(6), np.zeros(6), 4)
  with pytest.raises(ValueError, match="selection='best' is unknown"):
    star.select("best", np.zeros(4), np.zeros((4, 1)), np.zeros(4), np.zeros(4), group_size=4)
