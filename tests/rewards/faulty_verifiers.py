"""Misbehaving verifiers for the pool tests (module-level so worker processes can unpickle them).

Each reads what to do from the record, so one batch mixes good and bad items.
"""

import os
import time


def scripted(record, text, token_ids):
  """Returns record["value"], unless record["action"] says to sleep, raise or crash."""
  del text
  action = record.get("action")
  if action == "sleep":
    time.sleep(600)
  elif action == "raise":
    raise RuntimeError("verifier bug")
  elif action == "crash":
    os._exit(3)  # a segfault or OOM kill, as the parent sees it
  elif action == "nap":
    time.sleep(0.2)
  elif action == "len":
    return len(token_ids) / 10
  return record["value"]
