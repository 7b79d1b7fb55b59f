"""Timing shared by the benchmark programs."""

import time


def best_time(fn, repeats: int, warmup=None) -> float:
  """Best wall time of `repeats` calls of fn, after one call of `warmup` (default: fn)."""
  return best_times({"fn": fn}, repeats, {"fn": warmup})["fn"]


def best_times(fns: dict, repeats: int, warmups: dict | None = None) -> dict:
  """Best wall time of each of `fns`' `repeats` calls, the calls interleaved (a, b, a, b, ...).

  Interleaving puts both sides of a ratio under the same machine state: on a shared VM the
  speed drifts by 10-20% over a minute, which a ratio of two separately timed runs absorbs.
  Each fn is called once first (or its entry of `warmups`).
  """
  for name, fn in fns.items():
    ((warmups or {}).get(name) or fn)()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: min(t) for name, t in times.items()}
