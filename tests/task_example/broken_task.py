"""A verifier with a bug: it reads a field the task's records do not have."""

from mrt_jax.rewards import register_verifier


def verify(record, text, token_ids):
  return float(text == record["solution"])


register_verifier("broken_task", verify, isolated=False)
