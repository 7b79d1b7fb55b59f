"""Normalized regret (docs/method.md) against hand-computed piecewise-linear integrals and an
independent np.interp + trapezoid reference; curve resampling; bad budgets."""

import numpy as np
import pytest

from mrt_jax.evaluation import (curve_from_boundaries, mean_normalized_regret, normalized_regret,
                                resample_curve, resample_traces)

# J(c): 0.2 at c = 0, 0.6 at 100, 1.0 at 300, flat after.
BUDGETS = [0, 100, 300]
J = [0.2, 0.6, 1.0]


@pytest.mark.parametrize("horizon, expected", [
    # Inside the first segment: J(50) = 0.4, ∫ = 50·(0.2 + 0.4)/2 = 15.
    (50, 1 - 15 / 50),
    # At a knot: ∫ = 100·(0.2 + 0.6)/2 = 40.
    (100, 1 - 40 / 100),
    # Between knots: J(200) = 0.8, ∫ = 40 + 100·(0.6 + 0.8)/2 = 110.
    (200, 1 - 110 / 200),
    # At the last knot: ∫ = 40 + 200·(0.6 + 1.0)/2 = 200.
    (300, 1 - 200 / 300),
    # Beyond the last knot, J held at 1.0: ∫ = 200 + 200·1.0 = 400.
    (500, 1 - 400 / 500),
])
def test_hand_computed_integral(horizon, expected):
  regret_H = normalized_regret(BUDGETS, J, [horizon])
  assert regret_H.shape == (1,)
  np.testing.assert_allclose(regret_H, [expected], rtol=0, atol=1e-12)


def test_several_horizons_at_once_and_special_curves():
  np.testing.assert_allclose(normalized_regret(BUDGETS, J, [50, 200, 500]),
                             [0.7, 0.45, 0.2], rtol=0, atol=1e-12)
  # A single knot at 0: J is constant, regret = 1 − J_0 at every horizon.
  np.testing.assert_allclose(normalized_regret([0], [0.25], [1, 7, 1000]), [0.75] * 3,
                             rtol=0, atol=1e-12)
  # Falling curve 1 → 0 over 10 tokens: ∫_0^10 = 5, ∫_0^20 = 5.
  np.testing.assert_allclose(normalized_regret([0, 10], [1.0, 0.0], [10, 20]), [0.5, 0.75],
                             rtol=0, atol=1e-12)
  # The oracle itself (J = 1) has zero regret; a never-correct model has regret 1.
  np.testing.assert_array_equal(normalized_regret([0, 5, 9], [1, 1, 1], [3, 9, 20]), [0, 0, 0])
  np.testing.assert_array_equal(normalized_regret([0, 5, 9], [0, 0, 0], [3, 9, 20]), [1, 1, 1])


def _reference_regret(budgets_C, j_C, c0):
  """Independent: np.interp (flat beyond the last knot) + trapezoid on knots ∪ {C0}."""
  grid = np.union1d(budgets_C[budgets_C < c0], [c0])
  return 1 - np.trapezoid(np.interp(grid, budgets_C, j_C), grid) / c0


def test_vectorized_matches_reference_on_prime_shapes():
  rng = np.random.default_rng(0)
  P, R, C = 5, 3, 7
  budgets_PxRxC = np.concatenate(
      [np.zeros((P, R, 1)), np.cumsum(rng.integers(1, 50, (P, R, C - 1)), axis=-1)], axis=-1)
  j_PxRxC = rng.random((P, R, C))
  horizons_H = np.array([1, 37.5, 101, 250, 400])
  regret_PxRxH = normalized_regret(budgets_PxRxC, j_PxRxC, horizons_H)
  assert regret_PxRxH.shape == (P, R, 5)
  for p in range(P):
    for r in range(R):
      expected = [_reference_regret(budgets_PxRxC[p, r], j_PxRxC[p, r], c0) for c0 in horizons_H]
      np.testing.assert_allclose(regret_PxRxH[p, r], expected, rtol=0, atol=1e-12)
  np.testing.assert_allclose(mean_normalized_regret(budgets_PxRxC, j_PxRxC, horizons_H),
                             regret_PxRxH.mean(axis=(0, 1)), rtol=0, atol=1e-12)
  # Budgets shared by all curves broadcast like a per-curve copy.
  shared = normalized_regret(budgets_PxRxC[0, 0], j_PxRxC, horizons_H)
  copied = normalized_regret(np.broadcast_to(budgets_PxRxC[0, 0], j_PxRxC.shape), j_PxRxC,
                             horizons_H)
  np.testing.assert_array_equal(shared, copied)


def test_ragged_traces_ignore_padding():
  # SegmentBatch layout: columns past num_blocks repeat think_end and hold junk J values.
  boundaries_BxN1 = np.array([[0, 40, 90, 90], [0, 70, 70, 70], [0, 0, 0, 0]])
  j_BxN1 = np.array([[0.0, 0.5, 1.0, 0.3], [0.5, 0.25, 0.9, 0.9], [0.75, 0.1, 0.2, 0.3]])
  num_blocks_B = np.array([2, 1, 0])
  horizons_H = [20, 90, 200]
  regret_BxH = normalized_regret(boundaries_BxN1, j_BxN1, horizons_H, num_points=num_blocks_B + 1)
  for b, n in enumerate(num_blocks_B):
    budgets_C, j_C = curve_from_boundaries(boundaries_BxN1[b], j_BxN1[b], num_blocks=n)
    np.testing.assert_array_equal(regret_BxH[b], normalized_regret(budgets_C, j_C, horizons_H))
  # Trace 0 by hand at C0 = 200: ∫ = 40·0.25 + 50·0.75 + 110·1.0 = 157.5.
  np.testing.assert_allclose(regret_BxH[0, 2], 1 - 157.5 / 200, rtol=0, atol=1e-12)
  np.testing.assert_allclose(regret_BxH[2], [0.25] * 3, rtol=0, atol=1e-12)


def test_resample_curve_and_traces():
  grid_G = [0, 50, 100, 200, 300, 1000]
  np.testing.assert_allclose(resample_curve(BUDGETS, J, grid_G), [0.2, 0.4, 0.6, 0.8, 1.0, 1.0],
                             rtol=0, atol=1e-12)
  boundaries_BxN1 = np.array([[0, 40, 90, 90], [0, 70, 70, 70]])
  j_BxN1 = np.array([[0.0, 0.5, 1.0, 0.3], [0.5, 0.25, 0.9, 0.9]])
  j_BxG = resample_traces(boundaries_BxN1, j_BxN1, [2, 1], [0, 20, 65, 70, 500])
  np.testing.assert_allclose(j_BxG, [[0.0, 0.25, 0.75, 0.8, 1.0],
                                     [0.5, 0.5 - 0.25 * 20 / 70, 0.5 - 0.25 * 65 / 70, 0.25, 0.25]],
                             rtol=0, atol=1e-12)
  # A grid that holds every knot keeps the regret exact.
  grid = np.arange(0, 301)
  np.testing.assert_allclose(normalized_regret(grid, resample_curve(BUDGETS, J, grid), [200]),
                             normalized_regret(BUDGETS, J, [200]), rtol=0, atol=1e-12)


def test_curve_from_boundaries():
  budgets_C, j_C = curve_from_boundaries([0, 12, 30, 30], [0.1, 0.2, 0.4, 0.0], num_blocks=2)
  np.testing.assert_array_equal(budgets_C, [0, 12, 30])
  np.testing.assert_array_equal(j_C, [0.1, 0.2, 0.4])
  with pytest.raises(ValueError, match=r"budgets\[0\] = 5; expected 0"):
    curve_from_boundaries([5, 12], [0.1, 0.2])
  with pytest.raises(ValueError, match="num_blocks = 4"):
    curve_from_boundaries([0, 12], [0.1, 0.2], num_blocks=4)


def test_bad_budgets_are_named():
  with pytest.raises(ValueError, match=r"not strictly increasing: budgets\[1\] = 100 then "
                                       r"budgets\[2\] = 100"):
    normalized_regret([0, 100, 100], [0.1, 0.2, 0.3], [50])
  with pytest.raises(ValueError, match=r"not strictly increasing: budgets\[1, 1\] = 10 then "
                                       r"budgets\[1, 2\] = 5"):
    normalized_regret([[0, 10, 20], [0, 10, 5]], [[0.1] * 3] * 2, [50])
  with pytest.raises(ValueError, match=r"budgets\[0\] = 10; expected 0.*empty-thinking"):
    normalized_regret([10, 100], [0.1, 0.2], [50])
  with pytest.raises(ValueError, match=r"budgets have shape \(2,\); expected \[C\]=\(3,\)"):
    normalized_regret([0, 100], [0.1, 0.2, 0.3], [50])
  with pytest.raises(ValueError, match=r"J\[1\] = 1.5; expected a success rate in \[0, 1\]"):
    normalized_regret([0, 100], [0.1, 1.5], [50])
  with pytest.raises(ValueError, match="expected every horizon C0 > 0"):
    normalized_regret([0, 100], [0.1, 0.2], [0, 50])
  with pytest.raises(ValueError, match="num_points"):
    normalized_regret([0, 100], [0.1, 0.2], [50], num_points=[3])
