"""`verify_batch`: rewards of a batch of completions, with failures counted instead of raised."""

from __future__ import annotations

import atexit
import math
import os
import traceback
from typing import Any, Mapping, Sequence

import numpy as np

from mrt_jax.rewards.pool import ERROR, OK, TIMEOUT, Outcome, VerifierPool
from mrt_jax.rewards.registry import get_verifier

_pools: dict[tuple[int, float], VerifierPool] = {}


def default_pool(num_workers: int = 0, timeout_s: float = 10.0) -> VerifierPool:
  """The process-wide pool of these settings, started on first use, closed at exit.

  Args:
    num_workers: worker processes; 0 = this machine's CPU count (`os.cpu_count()`).
    timeout_s: seconds one item may run before it scores 0 as a timeout.

  Raises:
    ValueError: num_workers < 0 or timeout_s <= 0 (named as the config's reward fields).
  """
  if num_workers < 0 or not timeout_s > 0:
    raise ValueError(f"reward.num_workers={num_workers}, reward.timeout_s={timeout_s}; expected "
                     "num_workers >= 0 (0: the CPU count) and timeout_s > 0")
  key = (num_workers or os.cpu_count() or 1, float(timeout_s))
  if key not in _pools:
    _pools[key] = VerifierPool(*key)
    atexit.register(_pools[key].close)
  return _pools[key]


def pool_for(name: str, num_workers: int, timeout_s: float) -> VerifierPool | None:
  """`default_pool(num_workers, timeout_s)` when verifier `name` runs isolated, else None (an
  inline verifier needs no worker processes)."""
  return default_pool(num_workers, timeout_s) if get_verifier(name).isolated else None


def _checked(outcome: Outcome) -> Outcome:
  """A reward that is not a finite number in [0, 1] is a verifier error."""
  if outcome.status == OK and not (math.isfinite(outcome.value) and 0.0 <= outcome.value <= 1.0):
    return Outcome(ERROR, 0.0, f"reward {outcome.value} is outside [0, 1]")
  return outcome


def _run_inline(fn, args_list) -> list[Outcome]:
  outcomes = []
  for args in args_list:
    try:
      outcomes.append(Outcome(OK, float(fn(*args))))
    except Exception:  # pylint: disable=broad-except  # a failure costs only this sample
      outcomes.append(Outcome(ERROR, 0.0, traceback.format_exc().rstrip()))
  return outcomes


def verify_batch(name: str, records: Sequence[Mapping[str, Any]], texts: Sequence[str],
                 token_ids: Sequence[Sequence[int]], *,
                 pool: VerifierPool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
  """Rewards of completions under the verifier registered as `name`.

  A completion whose verifier raises, returns a value outside [0, 1], or (isolated verifiers)
  runs past the pool's timeout gets reward 0 and is counted; it never stops the run.

  Args:
    name: a registered verifier ("math", "math_whole_text", "elimination", ...).
    records: one problem record per completion (the gold answer under "answer").
    texts: the decoded completions.
    token_ids: the completions' token ids (verifiers receive them as int32 [T] arrays).
    pool: worker pool for isolated verifiers; None uses `default_pool()` (a worker per CPU, 10 s
      timeout). Ignored for inline verifiers.

  Returns:
    rewards: float32 [B] in [0, 1].
    stats: {"errors": int, "timeouts": int, "details": list of (index, message) of failures;
      a raised exception's message is its traceback}.

  Raises:
    ValueError: unknown verifier, or the three sequences differ in length.
  """
  verifier = get_verifier(name)
  if not len(records) == len(texts) == len(token_ids):
    raise ValueError(f"verify_batch({name!r}): got {len(records)} records, {len(texts)} texts "
                     f"and {len(token_ids)} token id lists; expected one of each per completion")
  # int32 arrays pickle as one buffer: long completions cost the workers little to receive.
  args_list = [(dict(r), str(t), np.asarray(ids, np.int32).reshape(-1))
               for r, t, ids in zip(records, texts, token_ids)]
  if verifier.isolated:
    outcomes = (pool or default_pool()).map(verifier.fn, args_list)
  else:
    outcomes = _run_inline(verifier.fn, args_list)
  outcomes = [_checked(o) for o in outcomes]
  rewards = np.array([o.value for o in outcomes], np.float32).reshape(len(outcomes))
  stats = {
      "errors": sum(o.status == ERROR for o in outcomes),
      "timeouts": sum(o.status == TIMEOUT for o in outcomes),
      "details": [(i, f"{o.status}: {o.detail}") for i, o in enumerate(outcomes) if o.status != OK],
  }
  return rewards, stats
