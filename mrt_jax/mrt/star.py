"""MRT-STaR trace selection (docs/method.md): keep, per group, the correct trace whose J curve
has the least regret.

Letters: B traces (P groups × G), N1 = N + 1 block boundaries b_0..b_N.

A trace's total progress Σ_j p_j telescopes to J_N − J_0, so selecting on it would keep the trace
whose thinking ENDS highest, however long it took. MRT-STaR keeps instead the trace whose
meta-prover success rises earliest: per group, among traces with outcome 1, the one with the
lowest normalized regret 1 − (1/C0)·∫_0^C0 J(c) dc of its J curve (knots (b_j, J_j), linear
between them, flat after b_N: `mrt_jax.evaluation.regret.normalized_regret`). C0 is common to
the group: the longest thinking among its correct traces, so a trace that reaches the same J
sooner has less area above its curve. Ties go to the shorter trace (token efficiency), then to
the lower index. A group with no correct trace contributes nothing. Selection rules are
registered by name in `SELECTIONS`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mrt_jax.evaluation.regret import normalized_regret


def _best(outcome_B: np.ndarray, score_B: np.ndarray, lengths_B: np.ndarray,
          group_size: int) -> np.ndarray:
  """Per group, the correct trace of lowest (score, length, index), or -1; int [P]."""
  B = outcome_B.shape[0]
  if B % group_size:
    raise ValueError(f"{B} traces are not a whole number of groups of size {group_size}")
  chosen = np.full(B // group_size, -1, np.int64)
  for g in range(B // group_size):
    rows = [i for i in range(g * group_size, (g + 1) * group_size) if outcome_B[i] >= 1.0]
    if rows:
      chosen[g] = min(rows, key=lambda i: (score_B[i], lengths_B[i], i))
  return chosen


def min_regret(outcome_B: np.ndarray, success_BxN1: np.ndarray, boundaries_BxN1: np.ndarray,
               num_blocks_B: np.ndarray, lengths_B: np.ndarray, group_size: int) -> np.ndarray:
  """Index of the selected trace of each group (module docstring), or -1; int [P].

  Args:
    outcome_B: 0/1 outcome rewards.
    success_BxN1: J_0..J_N at each trace's boundaries (columns past N_b ignored).
    boundaries_BxN1: token offsets b_0 = 0 < ... < b_N (columns past N_b ignored).
    num_blocks_B: N_b, the real blocks of each trace.
    lengths_B: completion tokens (the tie-break).
    group_size: G.
  """
  B = outcome_B.shape[0]
  if B % group_size:
    raise ValueError(f"{B} traces are not a whole number of groups of size {group_size}")
  num_blocks_B = np.asarray(num_blocks_B, np.int64)
  think_end_B = np.take_along_axis(np.asarray(boundaries_BxN1, np.float64),
                                   num_blocks_B[:, None], axis=1)[:, 0]
  correct_B = np.asarray(outcome_B) >= 1.0
  regret_B = np.full(B, np.inf)
  for g in range(B // group_size):
    rows = np.arange(g * group_size, (g + 1) * group_size)
    rows = rows[correct_B[rows]]
    if rows.size:
      horizon = max(1.0, float(think_end_B[rows].max()))
      regret_B[rows] = normalized_regret(boundaries_BxN1[rows], success_BxN1[rows], [horizon],
                                         num_points=num_blocks_B[rows] + 1)[:, 0]
  return _best(outcome_B, regret_B, lengths_B, group_size)


def any_correct(outcome_B: np.ndarray, success_BxN1: np.ndarray, boundaries_BxN1: np.ndarray,
                num_blocks_B: np.ndarray, lengths_B: np.ndarray, group_size: int) -> np.ndarray:
  """Plain STaR (rejection sampling): the shortest correct trace of each group, or -1."""
  del success_BxN1, boundaries_BxN1, num_blocks_B
  return _best(outcome_B, np.zeros(outcome_B.shape[0]), lengths_B, group_size)


SELECTIONS: dict[str, Callable[..., np.ndarray]] = {
    "min_regret": min_regret, "any_correct": any_correct,
}


def select(name: str, *args, **kwargs) -> np.ndarray:
  """Applies the selection rule registered as `name` (arguments as in `min_regret`)."""
  if name not in SELECTIONS:
    raise ValueError(f"star.selection={name!r} is unknown; expected one of {sorted(SELECTIONS)}")
  return SELECTIONS[name](*args, **kwargs)
