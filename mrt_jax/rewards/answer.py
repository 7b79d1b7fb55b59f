"""Where the answer of a completion is: the text after the end of thinking, and its \\boxed{}."""

from __future__ import annotations

from mrt_jax.mrt.segment import end_of_thinking

THINK_CLOSE = "</think>"
_BOXED = "\\boxed{"


def answer_segment(text: str, *, whole_text_if_unclosed: bool = False,
                   think_close: str = THINK_CLOSE) -> str | None:
  """The text after the end of thinking: the first end-of-thinking tag, the rule the segmenter
  and evaluation share (`mrt_jax.mrt.segment.end_of_thinking`).

  Args:
    text: a completion.
    whole_text_if_unclosed: what a completion without the tag yields: False gives None (the
      trace was cut off while thinking, and grading its thinking would reward intermediate
      \\boxed{} values); True gives the whole text (for models that do not think).
    think_close: the end-of-thinking tag.

  Returns:
    The answer text, or None when there is none to grade.
  """
  cut = end_of_thinking(text, think_close)
  if cut < 0:
    return text if whole_text_if_unclosed else None
  return text[cut + len(think_close):]


def last_boxed(text: str) -> str | None:
  """Content of the last \\boxed{...} in `text`, with nested braces balanced; None if absent."""
  start = text.rfind(_BOXED)
  if start < 0:
    return None
  depth, begin = 1, start + len(_BOXED)
  for i in range(begin, len(text)):
    depth += {"{": 1, "}": -1}.get(text[i], 0)
    if depth == 0:
      return text[begin:i]
  return None  # unbalanced: the answer was cut off
