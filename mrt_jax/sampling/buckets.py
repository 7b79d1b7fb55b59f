"""Shape buckets and input checks shared by `generate`, `prefill` and `fork`.

Every array shape the jitted sampler sees is a bucket (a power of two or one of the sampler's
configured lengths), so new prompt lengths, batch sizes or token budgets inside a bucket reuse
the compiled program.
"""

from __future__ import annotations

import math
from typing import Sequence


def pow2_at_least(n: int, minimum: int = 1) -> int:
  """The smallest power of two >= max(n, minimum)."""
  n = max(n, minimum, 1)
  return 1 << (n - 1).bit_length()


def fine_at_least(n: int) -> int:
  """The smallest of 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... >= n.

  Four steps per power of two (at most 1/4 padding instead of 1/2, and at most four compiled
  sizes per octave) for dimensions that multiply the decode batch, such as the probes per
  trunk row.
  """
  n = max(n, 1)
  step = max(1, pow2_at_least(n) // 8)
  return -(-n // step) * step


def fine_ladder(low: int, high: int) -> tuple[int, ...]:
  """Every `fine_at_least` size from `low` to `high` (e.g. 4, 5, 6, 7, 8, 10, ..., 224, 256)."""
  return tuple(sorted({fine_at_least(n) for n in range(low, high + 1)}))


def bucket(n: int, sizes: Sequence[int], what: str, setting: str) -> int:
  """The smallest of `sizes` >= n; raises naming `what` and the sampler `setting` if none."""
  for size in sorted(sizes):
    if size >= n:
      return size
  raise ValueError(f"{what} is {n}, longer than the largest bucket {max(sizes)} "
                   f"(Sampler.{setting}); raise that bucket or shorten the input")


def batch_rows(n: int, multiple: int) -> int:
  """Padded row count: a power of two >= n, and a multiple of the mesh's batch shards."""
  return math.lcm(pow2_at_least(n), multiple)


def check_sequences(seqs: Sequence[Sequence[int]], vocab_size: int, what: str) -> list[list[int]]:
  """Validates token lists (non-empty, ids in the vocab); returns them as lists of int."""
  if isinstance(seqs, (str, bytes)) or not len(seqs):
    raise ValueError(f"expected a non-empty list of {what}s (lists of token ids), got {seqs!r}")
  out = []
  for i, seq in enumerate(seqs):
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
      raise TypeError(f"{what} {i} must be a list of token ids, got {type(seq).__name__}")
    seq = [int(t) for t in seq]
    if not seq:
      raise ValueError(f"{what} {i} is empty; every {what} needs at least one token")
    bad = [t for t in seq if not 0 <= t < vocab_size]
    if bad:
      raise ValueError(f"{what} {i} holds token ids {bad[:5]} outside the vocab "
                       f"[0, {vocab_size})")
    out.append(seq)
  return out
