"""Timing shared by the benchmark programs."""

import time


def best_time(fn, repeats: int, warmup=None) -> float:
  """Best wall time of `repeats` calls of fn, after one call of `warmup` (default: fn)."""
  (warmup or fn)()  # compiles (jax) / allocator and kernel caches (torch)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)
