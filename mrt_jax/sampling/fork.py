"""Probes: continuations forked from positions of sequences already in a KV cache (the trunk).

A probe at boundary b of trunk row r decodes as if its prompt were trunk_tokens[r][:b] + suffix,
without re-running that prefix: its queries attend to the trunk row's cached entries at
positions < b in place (`models.transformer.Prefix`), and to its own small cache holding the
suffix and the answer, whose rope positions continue from b. The trunk is never copied per
probe: all rows forked from trunk row r form a group of M rows that reads that row once.

Layout: probe rows are arranged on a grid [R, M] (R trunk rows, M rows per trunk row, from
`buckets.fine_at_least`); grid row r * M + m belongs to trunk row r. Unused grid rows are
padding that emits nothing. Result rows are probe-major (probe i's samples together), in the
order given. When every probe has the same number of samples n, M is a multiple of n and a
probe's samples are n consecutive grid rows: the suffix is prefilled once per probe, on the
[R, M / n] grid, and shared by its samples (`samples_per_slot` = n).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mrt_jax.sampling import buckets


@dataclasses.dataclass(frozen=True)
class Probe:
  """One fork of a trunk row.

  Attributes:
    source: the trunk (cache) row to fork from.
    boundary: the probe sees the source's tokens at positions < boundary; 0 <= boundary <=
      the source row's length.
    suffix: tokens fed after the prefix, at positions boundary, boundary + 1, ... (e.g. the
      forced termination suffix that ends the thinking). Non-empty: the last suffix token's
      logits choose the first answer token. To continue the prefix itself, fork at
      boundary - 1 with suffix = (token at boundary - 1,).
    num_samples: continuations decoded from this probe (m in the paper).
  """
  source: int
  boundary: int
  suffix: tuple[int, ...]
  num_samples: int = 1

  def __post_init__(self):
    object.__setattr__(self, "suffix", tuple(int(t) for t in self.suffix))


@dataclasses.dataclass(frozen=True)
class ProbeLayout:
  """Probes placed on the [R, M] grid (all arrays are over the R * M grid rows)."""
  rows_per_source: int      # M
  samples_per_slot: int     # n: grid rows r * M + [j * n, (j + 1) * n) share one suffix prefill
  suffixes: list[list[int]]  # each grid row's suffix ([0] for padding rows)
  boundaries_B: np.ndarray  # int32
  row_ids_B: np.ndarray     # int: result row (the PRNG stream of the row); unique for padding
  live_B: np.ndarray        # bool: False for padding rows
  order: np.ndarray         # grid row of each result row


def arrange(probes: Sequence[Probe], trunk_lengths: np.ndarray, vocab_size: int) -> ProbeLayout:
  """Validates probes against the trunk and places them on the grid."""
  if not len(probes):
    raise ValueError("expected at least one probe, got none")
  num_sources = len(trunk_lengths)
  per_source = np.zeros((num_sources,), int)
  for i, p in enumerate(probes):
    if not 0 <= p.source < num_sources:
      raise ValueError(f"probe {i}: source row {p.source} is not a row of the trunk cache "
                       f"(it has {num_sources} rows)")
    length = int(trunk_lengths[p.source])
    if not 0 <= p.boundary <= length:
      raise ValueError(f"probe {i}: boundary {p.boundary} is beyond the length {length} of "
                       f"trunk row {p.source}; expected 0 <= boundary <= {length}")
    if p.num_samples < 1:
      raise ValueError(f"probe {i}: num_samples must be >= 1, got {p.num_samples}")
    if not p.suffix:
      raise ValueError(f"probe {i}: suffix is empty; a probe needs at least one token whose "
                       f"logits choose its first answer token (see `Probe.suffix`)")
    bad = [t for t in p.suffix if not 0 <= t < vocab_size]
    if bad:
      raise ValueError(f"probe {i}: suffix holds token ids {bad[:5]} outside the vocab "
                       f"[0, {vocab_size})")
    per_source[p.source] += p.num_samples
  counts = {p.num_samples for p in probes}
  n = counts.pop() if len(counts) == 1 else 1  # samples sharing one suffix prefill
  M = n * buckets.fine_at_least(-(-int(per_source.max()) // n))
  B = num_sources * M
  suffixes = [[0] for _ in range(B)]
  boundaries_B = np.zeros((B,), np.int32)
  live_B = np.zeros((B,), bool)
  order = []
  next_slot = np.zeros((num_sources,), int)
  for p in probes:
    for _ in range(p.num_samples):
      row = p.source * M + next_slot[p.source]
      next_slot[p.source] += 1
      suffixes[row] = [int(t) for t in p.suffix]
      boundaries_B[row] = p.boundary
      live_B[row] = True
      order.append(row)
  order = np.asarray(order)
  row_ids_B = np.arange(B) + len(order)  # padding rows: ids past the results
  row_ids_B[order] = np.arange(len(order))
  return ProbeLayout(M, n, suffixes, boundaries_B, row_ids_B, live_B, order)
