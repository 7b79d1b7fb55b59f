"""The held-out split of a dataset that has no evaluation file of its own.

A record is held out when a hash of its problem text falls below `fraction`, so the split
depends on nothing but the problems themselves: not on the file's order, the run's seed, the
machine or the process count, and a problem that appears twice lands on one side only.
Training (`pipeline.pipeline_from_config`) reads the other side, so an evaluation never scores
a problem the run trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

from mrt_jax.data.sources import DataError, Record

_SCALE = float(2**64)


def heldout_fraction_of(problem: str) -> float:
  """The problem's position in [0, 1): the first 8 bytes of its SHA-256, as a fraction."""
  digest = hashlib.sha256(problem.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / _SCALE


@dataclasses.dataclass(frozen=True)
class Split:
  """Both sides of a held-out split.

  Attributes:
    train: the records training reads, in file order.
    heldout: the held-out records, in file order, each with an "id" (its row in the source
      when the record has none).
    description: what was split, for eval.json's "dataset" and the run's output.
  """
  train: list[Record]
  heldout: list[Record]
  description: str


def split_records(records: Sequence[Record], *, problem_field: str, fraction: float,
                  source: str) -> Split:
  """Splits `records` into training and held-out records by a hash of each problem.

  Args:
    records: the dataset's records, each holding `problem_field`.
    problem_field: field holding the problem text.
    fraction: expected share of held-out problems, in (0, 1).
    source: the dataset's path, for messages and the description.

  Returns:
    The `Split`.

  Raises:
    ValueError: `fraction` is outside (0, 1).
    DataError: one side of the split is empty (the message names the field to change).
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"eval.holdout_fraction = {fraction}; expected a fraction in (0, 1) of "
                     f"{source} to hold out of training (or set eval.data_path)")
  train, heldout = [], []
  for i, record in enumerate(records):
    if heldout_fraction_of(str(record[problem_field])) < fraction:
      heldout.append({**record, "id": record.get("id", i)})
    else:
      train.append(record)
  for side, rows in (("held-out", heldout), ("training", train)):
    if not rows:
      raise DataError(f"{source}: eval.holdout_fraction = {fraction} leaves no {side} problem "
                      f"among {len(records)}; change the fraction or set eval.data_path")
  description = (f"{source} (held-out split: {len(heldout)} of {len(records)} problems, "
                 f"eval.holdout_fraction = {fraction:g}, by a hash of each problem)")
  return Split(train, heldout, description)
