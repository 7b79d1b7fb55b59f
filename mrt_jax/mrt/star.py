"""MRT-STaR trace selection (docs/method.md): keep correct traces of maximal progress per group.

Letters: B traces (P groups × G), N blocks.

A trace's total progress is Σ_j p_j = J_N − J_0 over its real blocks: how much its thinking
raised the meta-prover's success. Per group, among traces with outcome 1, the one with the
largest total progress is kept; ties go to the shorter trace (token efficiency), then to the
lower index. A group with no correct trace contributes nothing. Selection rules are registered
by name in `SELECTIONS`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def max_progress(outcome_B: np.ndarray, progress_BxN: np.ndarray, num_blocks_B: np.ndarray,
                 lengths_B: np.ndarray, group_size: int) -> np.ndarray:
  """Index of the selected trace of each group, or -1; int [P]."""
  B = outcome_B.shape[0]
  if B % group_size:
    raise ValueError(f"{B} traces are not a whole number of groups of size {group_size}")
  N = progress_BxN.shape[1]
  real_BxN = np.arange(N)[None, :] < np.asarray(num_blocks_B)[:, None]
  total_B = np.where(real_BxN, progress_BxN, 0.0).sum(axis=1)
  chosen = np.full(B // group_size, -1, np.int64)
  for g in range(B // group_size):
    rows = [i for i in range(g * group_size, (g + 1) * group_size) if outcome_B[i] >= 1.0]
    if rows:
      chosen[g] = min(rows, key=lambda i: (-total_B[i], lengths_B[i], i))
  return chosen


def any_correct(outcome_B: np.ndarray, progress_BxN: np.ndarray, num_blocks_B: np.ndarray,
                lengths_B: np.ndarray, group_size: int) -> np.ndarray:
  """Plain STaR (rejection sampling): the shortest correct trace of each group, or -1."""
  return max_progress(outcome_B, np.zeros_like(progress_BxN), num_blocks_B, lengths_B,
                      group_size)


SELECTIONS: dict[str, Callable[..., np.ndarray]] = {
    "max_progress": max_progress, "any_correct": any_correct,
}


def select(name: str, *args, **kwargs) -> np.ndarray:
  if name not in SELECTIONS:
    raise ValueError(f"star.selection={name!r} is unknown; expected one of {sorted(SELECTIONS)}")
  return SELECTIONS[name](*args, **kwargs)
