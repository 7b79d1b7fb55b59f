"""Verifiers of the synthetic tasks in `mrt_jax.data` (exact answers, cheap: run inline)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mrt_jax.rewards.answer import answer_segment, last_boxed
from mrt_jax.rewards.registry import register_task_prover, register_verifier


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


def elimination_success(record: Mapping[str, Any], thinking: str) -> float:
  """The elimination puzzle's exact J: a guess uniform over the letters that the clues the
  thinking has checked (its "Wait, clue: ..." lines that copy a clue of the problem) leave.

  The meta-prover the demo's SFT teaches (`elimination.forced_completion`), read off the clue
  lines alone: a trace's own "Strike"/"Left" lines, right or wrong, do not move it.
  """
  from mrt_jax.data import elimination  # Lazily: only this prover needs the task's module.
  order = elimination.checked_clues(thinking, record)
  return 1.0 / len(elimination.remaining(record, order))


register_task_prover("elimination", elimination_success)


def elimination_left_success(record: Mapping[str, Any], thinking: str) -> float:
  """The elimination puzzle's J taken at the trace's word: a guess uniform over the letters its
  last "Left" line keeps (all candidates before the first), so 0 once that line strikes the
  hidden letter.

  The forced answer the demo's SFT teaches reads that line. Equal to `elimination_success` along
  traces that strike what their clues say; a block whose "Left" line strikes the hidden letter
  makes negative progress here, whatever clue it copied (under `elimination_success` it earns
  that clue's progress).
  """
  from mrt_jax.data import elimination  # Lazily: only this prover needs the task's module.
  left = elimination.last_left(thinking, record)
  if left is None:
    left = record["candidates"]
  return 1.0 / len(left) if record["answer"] in left else 0.0


register_task_prover("elimination_left", elimination_left_success)
