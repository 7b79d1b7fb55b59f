"""Shared test data: the elimination config of the data tests and jsonl writing."""

import json

from mrt_jax.data import elimination

TASK_CONFIG = elimination.EliminationConfig(num_candidates=7, num_clues=4, waste_prob=0.5)


def write_jsonl(path, rows):
  """Writes rows (dicts) as JSON lines; returns the path as a string."""
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return str(path)
