"""Worker processes that run verifiers under a hard per-item timeout, restarting hung workers.

`concurrent.futures.ProcessPoolExecutor` cannot stop one hung task (only the whole pool), so
each worker here is a process with its own pipe: the parent sends one item at a time, waits on
all busy pipes until the earliest deadline, and SIGKILLs and replaces a worker whose item passed
it. A worker that dies (segfault, OOM kill) costs its item an error and is replaced too.

Workers are started by "forkserver" where available (else "spawn"), never plain "fork": the
parent may run JAX threads, and forking a multithreaded process can deadlock. The forkserver
preloads this package and the config's plugins imported so far (`mrt_jax.plugins`, where user
verifiers live), so a replacement worker starts in milliseconds instead of re-importing JAX,
SymPy and the user's module. Every worker also imports the plugins itself (from the folders they
were found in) before it takes work: a forkserver started before they were imported lacks them.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import sys
import time
import traceback
from typing import Any, Callable, NamedTuple, Sequence

from mrt_jax import plugins

OK, ERROR, TIMEOUT = "ok", "error", "timeout"
_READY = "ready"


class Outcome(NamedTuple):
  """Result of one item: status OK with the function's float value, or ERROR/TIMEOUT."""
  status: str
  value: float
  detail: str = ""


def _worker_main(conn: multiprocessing.connection.Connection, folders: Sequence[str],
                 modules: Sequence[str]) -> None:
  """Imports the plugins `modules` (found in `folders`), then runs `(fn, args)` items from
  `conn` until it receives None or the pipe closes."""
  sys.path[:0] = [f for f in folders if f not in sys.path]
  for name in modules:
    importlib.import_module(name)
  conn.send(_READY)
  while True:
    try:
      item = conn.recv()
    except EOFError:
      return
    if item is None:
      return
    try:
      fn, args = item
      outcome = Outcome(OK, float(fn(*args)))
    except Exception:  # pylint: disable=broad-except  # any failure costs only this item
      outcome = Outcome(ERROR, 0.0, traceback.format_exc().rstrip())
    conn.send(outcome)


class _Worker:
  """One worker process and the parent's end of its pipe."""

  def __init__(self, ctx, startup_timeout_s: float):
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_worker_main, daemon=True,
                               args=(child, plugins.folders(), plugins.imported()))
    self.process.start()
    child.close()
    try:
      ready = self.conn.poll(startup_timeout_s) and self.conn.recv() == _READY
    except (EOFError, OSError):  # it died while starting
      ready = False
    if not ready:
      self.kill()
      raise RuntimeError(f"a verifier worker did not start within {startup_timeout_s} s (exit "
                         f"code {self.process.exitcode})")

  def kill(self) -> None:
    self.process.kill()
    self.process.join()
    self.conn.close()

  def stop(self) -> None:
    try:
      self.conn.send(None)
    except OSError:  # already dead
      pass
    self.process.join(1.0)
    if self.process.is_alive():
      self.process.kill()
      self.process.join()
    self.conn.close()


def _default_start_method() -> str:
  return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class VerifierPool:
  """A fixed number of verifier worker processes with a hard timeout per item.

  Not thread-safe: call `map` from one thread at a time.

  Args:
    num_workers: worker processes.
    timeout_s: seconds one item may run before its worker is killed (reward 0, counted).
    start_method: multiprocessing start method; None picks "forkserver" (else "spawn").
    startup_timeout_s: seconds a new worker may take to start.
  """

  def __init__(self, num_workers: int = 2, timeout_s: float = 10.0,
               start_method: str | None = None, startup_timeout_s: float = 120.0):
    if num_workers < 1 or timeout_s <= 0:
      raise ValueError(f"VerifierPool(num_workers={num_workers}, timeout_s={timeout_s}): "
                       "expected num_workers >= 1 and timeout_s > 0")
    self.timeout_s = timeout_s
    self.restarts = 0
    self._startup_timeout_s = startup_timeout_s
    self._ctx = multiprocessing.get_context(start_method or _default_start_method())
    if self._ctx.get_start_method() == "forkserver":
      # Takes effect only if this process has not started its forkserver yet.
      self._ctx.set_forkserver_preload(["mrt_jax.rewards", *plugins.imported()])
    self._workers = [_Worker(self._ctx, startup_timeout_s) for _ in range(num_workers)]

  def _replace(self, worker: _Worker) -> _Worker:
    worker.kill()
    self.restarts += 1
    new = _Worker(self._ctx, self._startup_timeout_s)
    self._workers[self._workers.index(worker)] = new
    return new

  def map(self, fn: Callable[..., float], args_list: Sequence[tuple[Any, ...]]) -> list[Outcome]:
    """Runs `fn(*args)` for every args tuple in the workers.

    Args:
      fn: a module-level function (pickled by name) returning a float.
      args_list: one picklable args tuple per item.

    Returns:
      One `Outcome` per item, in order.
    """
    if self._workers is None:
      raise RuntimeError("VerifierPool.map called after close()")
    busy: dict[_Worker, tuple[int, float]] = {}  # worker -> (item, deadline)
    try:
      return self._run(fn, args_list, busy)
    except BaseException:
      # An interrupted batch (Ctrl-C, a bug) leaves busy workers whose late results the next
      # batch would read as its own: replace them.
      for worker in list(busy):
        self._replace(worker)
      raise

  def _run(self, fn, args_list, busy) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(args_list)
    todo = list(range(len(args_list)))[::-1]  # popped from the end: items start in order
    idle = list(self._workers)
    while todo or busy:
      while todo and idle:
        worker, i = idle.pop(), todo.pop()
        try:
          worker.conn.send((fn, args_list[i]))
        except Exception as e:  # pylint: disable=broad-except  # unpicklable item, dead worker
          outcomes[i] = Outcome(ERROR, 0.0, f"cannot send item {i}: {type(e).__name__}: {e}")
          idle.append(self._replace(worker) if isinstance(e, OSError) else worker)
          continue
        busy[worker] = (i, time.monotonic() + self.timeout_s)
      if not busy:
        continue
      wait_s = max(0.0, min(deadline for _, deadline in busy.values()) - time.monotonic())
      ready = multiprocessing.connection.wait([w.conn for w in busy], wait_s)
      now = time.monotonic()
      for worker in list(busy):
        i, deadline = busy[worker]
        if worker.conn in ready:
          del busy[worker]
          try:
            outcomes[i] = worker.conn.recv()
            idle.append(worker)
          except (EOFError, OSError):
            idle.append(self._replace(worker))
            outcomes[i] = Outcome(ERROR, 0.0, f"worker died (exit code "
                                  f"{worker.process.exitcode})")
        elif now >= deadline:
          del busy[worker]
          outcomes[i] = Outcome(TIMEOUT, 0.0, f"no result after {self.timeout_s} s")
          idle.append(self._replace(worker))
    return outcomes

  def close(self) -> None:
    """Stops the workers; the pool cannot be used afterwards."""
    for worker in self._workers or ():
      worker.stop()
    self._workers = None

  def __enter__(self) -> "VerifierPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
