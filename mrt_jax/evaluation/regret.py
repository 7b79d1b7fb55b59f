"""J(c) curves and the normalized regret of MRT (docs/method.md).

J(c) is the meta-prover success after c thinking tokens. A curve is known at budgets
c_0 < c_1 < ... < c_{C-1} (token counts); it is linear between budgets and held flat after the last.

Below the first budget. A curve must start at budget c_0 = 0 with J(0) = J_0, the empty-thinking
success (docs/method.md: J_0 uses the empty thinking prefix; block boundaries start at b_0 = 0). A
first budget other than 0 is an error, not an extrapolation: any J on [0, c_0) (flat, zero, a line
to the origin) would be an invented value that moves the regret. Measure budget 0.

Normalized regret at horizon C0, with the comparator (oracle) succeeding with probability 1
(MRT paper, Qu et al. 2025, cumulative regret against an oracle; normalized form in docs/method.md):
  regret(C0) = (1/C0)·∫_0^C0 (1 − J(c)) dc = 1 − (1/C0)·∫_0^C0 J(c) dc.
The integral is exact for the piecewise-linear curve: per segment [c_i, c_{i+1}] the trapezoid of
its part inside [0, C0], plus the flat tail J_{C-1}·max(C0 − c_{C-1}, 0). Computed in float64.

Ragged curves (traces with different numbers of blocks) are padded rectangles with `num_points`
valid knots per curve; knots past it are ignored whatever they hold (e.g. the think_end padding of
`mrt_jax.mrt.SegmentBatch`).

Letters: C knots (budgets) of a curve, G points of a common budget grid, H horizons C0, B traces,
N1 = N + 1 block boundaries b_0..b_N (as in `mrt_jax.mrt.segment`); `X` stands for any leading
axes, e.g. P problems × R traces per problem.
"""

from __future__ import annotations

import numpy as np


def _as_curves(budgets, j, num_points=None) -> tuple[np.ndarray, np.ndarray]:
  """Validates a batch of curves; returns (budgets_XxC1, j_XxC1) with all knots valid.

  Invalid knots (index >= num_points) are replaced by an exact continuation of the flat tail
  (budget last + 1, last + 2, ...; J = J_last), and one more such knot is appended so that every
  curve has at least one segment. The represented J(c) is unchanged.
  """
  j_XxC = np.asarray(j, np.float64)
  if j_XxC.ndim < 1 or j_XxC.shape[-1] < 1:
    raise ValueError(f"J values have shape {j_XxC.shape}; expected [..., C] with C >= 1")
  C = j_XxC.shape[-1]
  budgets_XxC = np.asarray(budgets, np.float64)
  if budgets_XxC.shape not in ((C,), j_XxC.shape):
    raise ValueError(f"budgets have shape {budgets_XxC.shape}; expected [C]=({C},) shared by all "
                     f"curves or the shape of the J values {j_XxC.shape}")
  budgets_XxC = np.broadcast_to(budgets_XxC, j_XxC.shape)
  X = j_XxC.shape[:-1]
  if num_points is None:
    n_X = np.full(X, C, np.int64)
  else:
    n_X = np.asarray(num_points, np.int64)
    if n_X.shape != X or np.any(n_X < 1) or np.any(n_X > C):
      raise ValueError(f"num_points {n_X.tolist()} (shape {n_X.shape}); expected integers in "
                       f"[1, {C}] of shape {X}, one per curve")
  valid_XxC = np.arange(C) < n_X[..., None]
  last_X1 = n_X[..., None] - 1
  c_last_X1 = np.take_along_axis(budgets_XxC, last_X1, axis=-1)
  j_last_X1 = np.take_along_axis(j_XxC, last_X1, axis=-1)
  # Past the last valid knot: budgets keep rising by 1 token, J stays at J_last (flat tail).
  tail_XxC = c_last_X1 + (np.arange(C) - last_X1)
  budgets_XxC = np.where(valid_XxC, budgets_XxC, tail_XxC)
  j_XxC = np.where(valid_XxC, j_XxC, j_last_X1)
  _check_knots(budgets_XxC, j_XxC)
  budgets_XxC1 = np.concatenate([budgets_XxC, budgets_XxC[..., -1:] + 1.0], axis=-1)
  j_XxC1 = np.concatenate([j_XxC, j_XxC[..., -1:]], axis=-1)
  return budgets_XxC1, j_XxC1


def _check_knots(budgets_XxC: np.ndarray, j_XxC: np.ndarray) -> None:
  """Raises ValueError naming the first bad budget or J value."""
  if not np.all(np.isfinite(budgets_XxC)):
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(budgets_XxC))[0])
    raise ValueError(f"budgets{list(bad)} = {budgets_XxC[bad]}; expected finite token counts")
  if np.any(budgets_XxC[..., 0] != 0):
    bad = tuple(int(i) for i in np.argwhere(budgets_XxC[..., 0] != 0)[0])
    raise ValueError(f"budgets{list(bad + (0,))} = {budgets_XxC[bad + (0,)]:g}; expected 0: a curve "
                     "starts at the empty-thinking success J_0 at budget 0 (docs/method.md)")
  step_XxC = np.diff(budgets_XxC, axis=-1)
  if np.any(step_XxC <= 0):
    bad = tuple(int(i) for i in np.argwhere(step_XxC <= 0)[0])
    row, i = bad[:-1], bad[-1]
    raise ValueError(
        f"budgets are not strictly increasing: budgets{list(row + (i,))} = "
        f"{budgets_XxC[row + (i,)]:g} then budgets{list(row + (i + 1,))} = "
        f"{budgets_XxC[row + (i + 1,)]:g} (curve budgets: {budgets_XxC[row].tolist()}); "
        "expected c_0 = 0 < c_1 < c_2 < ...")
  if not np.all((j_XxC >= 0) & (j_XxC <= 1)):
    bad = tuple(int(i) for i in np.argwhere(~((j_XxC >= 0) & (j_XxC <= 1)))[0])
    raise ValueError(f"J{list(bad)} = {j_XxC[bad]}; expected a success rate in [0, 1]")


def _queries(values, name: str) -> np.ndarray:
  q_Q = np.asarray(values, np.float64)
  if q_Q.ndim != 1 or q_Q.size == 0 or not np.all(np.isfinite(q_Q)) or np.any(q_Q < 0):
    raise ValueError(f"{name} = {q_Q.tolist()}; expected a non-empty 1-D list of finite token "
                     "counts >= 0")
  return q_Q


def resample_curve(budgets, j, grid, num_points=None) -> np.ndarray:
  """J(c) at the budgets of a common grid: linear between knots, flat after the last.

  Resampling is exact at the grid points; integrating the resampled curve equals integrating the
  original only when the grid contains all knots (regret is best taken from the original knots).

  Args:
    budgets: [C] knots shared by all curves, or [X..., C] one row per curve; c_0 = 0, increasing.
    j: [X..., C] J values at the knots, in [0, 1].
    grid: [G] budgets (token counts >= 0) at which to evaluate every curve.
    num_points: optional int [X...], the number of valid knots of each curve (default C).

  Returns:
    float64 [X..., G].
  """
  budgets_XxC, j_XxC = _as_curves(budgets, j, num_points)
  grid_G = _queries(grid, "grid")
  C = budgets_XxC.shape[-1]
  # Segment index: the last knot at or below each grid point (c_0 = 0 <= every grid point).
  below_XxGxC = budgets_XxC[..., None, :] <= grid_G[:, None]
  lo_XxG = np.minimum(below_XxGxC.sum(axis=-1) - 1, C - 2)
  c_lo_XxG = np.take_along_axis(budgets_XxC, lo_XxG, axis=-1)
  c_hi_XxG = np.take_along_axis(budgets_XxC, lo_XxG + 1, axis=-1)
  j_lo_XxG = np.take_along_axis(j_XxC, lo_XxG, axis=-1)
  j_hi_XxG = np.take_along_axis(j_XxC, lo_XxG + 1, axis=-1)
  # t > 1 only past the last knot, where both knots carry J_last: clipping keeps the tail flat.
  t_XxG = np.clip((grid_G - c_lo_XxG) / (c_hi_XxG - c_lo_XxG), 0.0, 1.0)
  return j_lo_XxG + t_XxG * (j_hi_XxG - j_lo_XxG)


def normalized_regret(budgets, j, horizons, num_points=None) -> np.ndarray:
  """Normalized regret 1 − (1/C0)·∫_0^C0 J(c) dc of every curve at every horizon C0.

  Exact piecewise-linear integral (MRT paper; docs/method.md): see the module docstring.

  Args:
    budgets: [C] knots shared by all curves, or [X..., C] one row per curve; c_0 = 0, increasing.
    j: [X..., C] J values at the knots, in [0, 1].
    horizons: [H] horizons C0 > 0 in thinking tokens; a horizon may fall between knots or past
      the last one (J is held flat there).
    num_points: optional int [X...], the number of valid knots of each curve (default C).

  Returns:
    float64 [X..., H].
  """
  budgets_XxC, j_XxC = _as_curves(budgets, j, num_points)
  c0_H = _queries(horizons, "horizons")
  if np.any(c0_H <= 0):
    raise ValueError(f"horizons = {c0_H.tolist()}; expected every horizon C0 > 0")
  a_Xx1xS, b_Xx1xS = budgets_XxC[..., None, :-1], budgets_XxC[..., None, 1:]
  ja_Xx1xS, jb_Xx1xS = j_XxC[..., None, :-1], j_XxC[..., None, 1:]
  # Part of segment [a, b] inside [0, C0] is [a, u] with u = clip(C0, a, b); J is linear on it.
  u_XxHxS = np.clip(c0_H[:, None], a_Xx1xS, b_Xx1xS)
  ju_XxHxS = ja_Xx1xS + (jb_Xx1xS - ja_Xx1xS) * (u_XxHxS - a_Xx1xS) / (b_Xx1xS - a_Xx1xS)
  area_XxH = np.sum((u_XxHxS - a_Xx1xS) * (ja_Xx1xS + ju_XxHxS) / 2.0, axis=-1)
  tail_XxH = j_XxC[..., -1:] * np.maximum(c0_H - budgets_XxC[..., -1:], 0.0)
  return 1.0 - (area_XxH + tail_XxH) / c0_H


def mean_normalized_regret(budgets, j, horizons, num_points=None) -> np.ndarray:
  """Normalized regret averaged over problems and traces (all leading axes), per horizon.

  With j of shape [P, R, C] (R traces per problem) this is the mean over problems of the mean
  over each problem's traces, as docs/method.md defines it.

  Args:
    budgets, j, horizons, num_points: as in `normalized_regret`.

  Returns:
    float64 [H].
  """
  regret_XxH = normalized_regret(budgets, j, horizons, num_points)
  return regret_XxH.reshape(-1, regret_XxH.shape[-1]).mean(axis=0)


def curve_from_boundaries(boundaries, j, num_blocks=None) -> tuple[np.ndarray, np.ndarray]:
  """The J(c) curve of one trace from its block boundaries and J at each boundary.

  Args:
    boundaries: int [N1], token offsets b_0 = 0 < b_1 < ... < b_N into the completion.
    j: [N1], J_j = meta-prover success after the prefix up to b_j (J_0: empty thinking).
    num_blocks: optional N when the arrays are padded (entries past b_N are dropped).

  Returns:
    (budgets_C, j_C), float64 with C = N + 1: the knots of the curve, validated.
  """
  boundaries_N1 = np.asarray(boundaries, np.float64)
  j_N1 = np.asarray(j, np.float64)
  if boundaries_N1.ndim != 1 or boundaries_N1.shape != j_N1.shape:
    raise ValueError(f"boundaries have shape {boundaries_N1.shape} and J {j_N1.shape}; expected "
                     "the same shape [N+1]")
  N1 = boundaries_N1.shape[0] if num_blocks is None else int(num_blocks) + 1
  if not 1 <= N1 <= boundaries_N1.shape[0]:
    raise ValueError(f"num_blocks = {num_blocks}; expected 0 <= num_blocks <= "
                     f"{boundaries_N1.shape[0] - 1} for boundaries of shape {boundaries_N1.shape}")
  budgets_C, j_C = boundaries_N1[:N1], j_N1[:N1]
  _check_knots(budgets_C, j_C)
  return budgets_C, j_C


def resample_traces(boundaries_BxN1, j_BxN1, num_blocks_B, grid) -> np.ndarray:
  """J(c) of a padded batch of traces (e.g. `mrt_jax.mrt.SegmentBatch`) on a common grid.

  Args:
    boundaries_BxN1: int [B, N+1] block boundaries b_0 = 0 < ... < b_N per trace (padded).
    j_BxN1: [B, N+1] J at each boundary (e.g. `mrt_jax.mrt.success_from_verdicts`).
    num_blocks_B: int [B] the number of real blocks N_b of each trace.
    grid: [G] common budgets.

  Returns:
    float64 [B, G].
  """
  num_points_B = np.asarray(num_blocks_B, np.int64) + 1
  return resample_curve(boundaries_BxN1, j_BxN1, grid, num_points=num_points_B)
