"""Verifiers of the synthetic tasks in `mrt_jax.data` (exact answers, cheap: run inline)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mrt_jax.rewards.answer import answer_segment, last_boxed
from mrt_jax.rewards.registry import register_verifier


def verify_exact_boxed(record: Mapping[str, Any], text: str, token_ids: Sequence[int]) -> float:
  """1.0 if the last \\boxed{} after "</think>" equals the gold answer (stripped), else 0.0.

  A completion without "</think>" scores 0, as for `math`.
  """
  del token_ids  # graded on text
  answer = answer_segment(text)
  boxed = None if answer is None else last_boxed(answer)
  return float(boxed is not None and boxed.strip() == str(record["answer"]).strip())


# The elimination puzzle (mrt_jax/data/elimination.py): the answer is one candidate letter.
register_verifier("elimination", verify_exact_boxed, isolated=False)
