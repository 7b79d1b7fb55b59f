"""The `math` verifier: math-verify on the answer after the end of thinking, gold in \\boxed{}.

math-verify (Hugging Face) extracts LaTeX or plain expressions from the prediction (a \\boxed{}
answer first) and compares them with the gold answer in SymPy. Its own timeouts use SIGALRM,
which raises in any thread but the main one (in worker threads every score would
silently become 0), so they are switched off here and the verifier is registered `isolated`:
`VerifierPool` runs it in worker processes and kills a worker that passes the hard timeout.
`raise_on_error=True` lets internal math-verify failures reach the pool, which counts them,
instead of being silently scored 0.

Variants:
- `math`: a completion without "</think>" scores 0 (it was cut off while thinking; grading
  its thinking would reward intermediate \\boxed{} values).
- `math_whole_text`: a completion without "</think>" is graded on its whole text (models that
  do not think).

Known behaviour (tests/rewards/test_math_table.py holds the full table): a percent gold such
as "50\\%" accepts both 50 and 0.5; an equation gold "x=3" accepts 3; decimals must match to 6
digits (1/3 vs 0.333 is wrong); several \\boxed{} in the answer are read as one set, so a model
that changes its mind after the thinking is scored wrong; without \\boxed{}, markdown bold answers
followed by other numbers are misread (the last number wins); an open interval "(1,2)" equals
the set {1, 2}.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import math_verify

from mrt_jax.rewards.answer import answer_segment
from mrt_jax.rewards.registry import register_verifier

# With its SIGALRM timeouts off, math-verify warns once per process that the caller must
# interrupt hangs itself, which VerifierPool does; the warning would only repeat per worker.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _gold_latex(answer: Any) -> str:
  """The gold answer as "\\boxed{...}" (math-verify extracts a boxed gold most reliably)."""
  gold = str(answer).strip()
  if gold.startswith("$") and gold.endswith("$"):
    gold = gold.strip("$").strip()
  return gold if "\\boxed" in gold else f"\\boxed{{{gold}}}"


def math_reward(gold: Any, answer_text: str) -> float:
  """1.0 if math-verify finds `answer_text`'s answer equal to `gold`, else 0.0.

  Args:
    gold: the reference answer (LaTeX or a number), wrapped in \\boxed{} unless it is already.
    answer_text: the text to grade (the part after the thinking).

  Raises:
    Exception: whatever math-verify raises internally (counted as an error by the caller).
  """
  gold_parsed = math_verify.parse(_gold_latex(gold), parsing_timeout=None, raise_on_error=True)
  if not gold_parsed:
    raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
  predicted = math_verify.parse(answer_text, parsing_timeout=None, raise_on_error=True)
  return float(math_verify.verify(gold_parsed, predicted, timeout_seconds=None,
                                  raise_on_error=True))


def verify_math(record: Mapping[str, Any], text: str, token_ids: Sequence[int]) -> float:
  """`math`: grades the text after "</think>"; 0 when the completion has no "</think>"."""
  del token_ids  # graded on text
  answer = answer_segment(text)
  return 0.0 if answer is None else math_reward(record["answer"], answer)


def verify_math_whole_text(record: Mapping[str, Any], text: str,
                           token_ids: Sequence[int]) -> float:
  """`math_whole_text`: as `math`, but a completion without "</think>" is graded whole."""
  del token_ids  # graded on text
  return math_reward(record["answer"], answer_segment(text, whole_text_if_unclosed=True))


register_verifier("math", verify_math, isolated=True)
register_verifier("math_whole_text", verify_math_whole_text, isolated=True)
