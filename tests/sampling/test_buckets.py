"""Bucket ladders: hand-listed sizes."""

from mrt_jax.sampling import buckets


def test_fine_ladder_has_four_sizes_per_octave():
  assert [buckets.fine_at_least(n) for n in (1, 8, 9, 11, 17, 33, 200)] == [
      1, 8, 10, 12, 20, 40, 224]
  assert buckets.fine_ladder(4, 32) == (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32)
  assert buckets.fine_ladder(9, 9) == (10,)  # the rung above a size that is not one
