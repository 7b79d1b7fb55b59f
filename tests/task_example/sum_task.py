"""A task of its own: sums of two numbers, the answer written bare after the thinking."""

from mrt_jax.rewards import answer_segment, register_verifier


def final_answer(text):
  """The text after </think>, stripped (None for a trace cut off while thinking)."""
  answer = answer_segment(text)
  return None if answer is None else answer.strip()


def verify(record, text, token_ids):
  """1.0 if the final answer is the record's answer (a string in train.jsonl)."""
  return float(final_answer(text) == record["answer"])


register_verifier("sum_task", verify, isolated=False, extract_answer=final_answer)
