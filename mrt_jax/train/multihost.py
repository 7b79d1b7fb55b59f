"""What the training loop needs to run the same way on one process or many (`jax.distributed`).

The loop is SPMD over processes: every process runs the same command, reads the same global
batch, and holds the same host data at every step (prompts, sampled tokens all-gathered from
the devices, rewards, advantages), so every host-side decision (segmentation, which probes,
learner batch layout, when to stop) is taken identically everywhere without talking. Two
things would break that symmetry and are handled here:
- verification (CPU work that may time out by the wall clock): each process verifies a slice of
  the rows and the results are all-gathered, so the work is split and every process gets the
  same verdicts even when one host's verifier times out;
- signals (preemption reaches hosts at different times): processes agree on stopping.
With one process every function here is the plain local computation.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from mrt_jax.models.sharding import from_host

# (records, completion texts, completion token ids) -> (rewards f32 [B], stats dict).
RewardFn = Callable[[Sequence[dict], Sequence[str], Sequence[Sequence[int]]],
                    tuple[np.ndarray, dict]]

# Counters in a reward function's stats that are summed over processes (verify_batch's).
_COUNTS = ("errors", "timeouts")


def _allgather(x_P: np.ndarray) -> np.ndarray:
  """[n] from every process -> [processes, n] on every process (a collective)."""
  from jax.experimental import multihost_utils  # Only needed with several processes.
  return np.asarray(multihost_utils.process_allgather(x_P))


def split_over_processes(reward_fn: RewardFn) -> RewardFn:
  """`reward_fn` with its rows split over processes and the results all-gathered.

  Process p verifies rows [p·n, (p+1)·n) with n = ceil(B / processes). Rewards and the
  `errors`/`timeouts` counts are combined exactly; `details` (failure messages) keep only this
  process's rows, under their global row indices.
  """
  def split(records, texts, ids):
    count = jax.process_count()
    if count == 1:
      return reward_fn(records, texts, ids)
    n = -(-len(records) // count)
    lo = jax.process_index() * n
    hi = min(lo + n, len(records))
    rewards = np.zeros((n,), np.float32)
    stats: dict[str, Any] = {}
    if hi > lo:
      local, stats = reward_fn(records[lo:hi], texts[lo:hi], ids[lo:hi])
      rewards[:hi - lo] = np.asarray(local, np.float32)
    counts = np.array([stats.get(k, 0) for k in _COUNTS], np.float32)
    gathered = _allgather(np.concatenate([rewards, counts]))
    out = dict(stats)
    out.update({k: int(v) for k, v in zip(_COUNTS, gathered[:, n:].sum(axis=0))})
    if "details" in stats:
      out["details"] = [(lo + i, msg) for i, msg in stats["details"]]
    return gathered[:, :n].reshape(-1)[:len(records)], out
  return split


def any_process(flag: bool) -> bool:
  """Whether `flag` is true on any process (a collective with several processes)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(_allgather(np.array([flag], np.int32)).any())


def place(batch: Mapping[str, Any], shardings: Mapping[str, jax.sharding.Sharding]) -> dict:
  """Places a batch: host arrays (equal on every process) shard by shard, device arrays by
  resharding."""
  return {k: jax.device_put(v, shardings[k]) if isinstance(v, jax.Array)
          else from_host(v, shardings[k]) for k, v in batch.items()}
