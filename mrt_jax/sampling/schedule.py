"""Decoding in phases: cache windows that grow with the rows, and rows that leave and join.

One `decode.phase` runs C steps of every working row over a cache of S = P + C entries,
where P is the entry at which every row's next token is written: a step at context t reads
about t entries, not the whole new-token bucket. Between phases the host reads which rows
finished and builds the next phase's batch (`decode.repack`, one gather of the live rows'
cache into a new window):
- rows that finished leave it (compaction into a smaller power-of-two batch), unless every
  row must keep its slot (`keep_all`: forked rows read their trunk row by slot). When the
  caller keeps the cache (`park`), a row that leaves is parked: its cache moves to a batch of
  finished rows that no step reads, and the final cache gathers the parked and the last
  working rows back into one, row r holding sequence r;
- when more sequences were asked for than `slots`, queued sequences take the freed slots
  (continuous batching); each row keeps its PRNG key and its token index, so its tokens do not
  depend on the batch it was decoded in;
- every row's entries are moved so that they end at the new P. Queued rows join at the
  old window (at least their prompt width), or, when the longest kept row fills at most
  half of it, at the smallest bucket (`buckets.fine_at_least`) that holds it: over a queue,
  the window follows the longest live row, not the longest row ever decoded.

Phase lengths come from bucketed sizes only (`phase_steps`), so the compiled phase programs
are bounded by (batch buckets) x (window buckets) for a given prompt and new-token bucket.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from mrt_jax.models.sharding import to_host
from mrt_jax.models.transformer import KVCache
from mrt_jax.sampling import buckets


@dataclasses.dataclass
class Fresh:
  """Newly prefilled sequences (rows of `cache`; seq_B[b] = -1 for padding rows)."""
  cache: KVCache
  first_logits_BxV: object
  seq_B: np.ndarray
  keys_B: object
  live_B: object
  budget_B: object
  width: int  # entry at which every row's prompt ends


@dataclasses.dataclass
class Decoded:
  """Per sequence: emitted tokens and log-probs, and whether it finished on a stop."""
  tokens: list[list[int]]
  logprobs: list[list[float]]
  stopped: np.ndarray
  cache: KVCache


def phase_steps(window: int, need: int, min_steps: int, new_tokens: int) -> int:
  """Steps of a phase whose rows start writing at entry `window` and need `need` more steps.

  A quarter of the window rounded up to a power of two (the window grows ~1.25-1.5x per
  phase, and a finished row costs at most a quarter of its context in steps before it
  leaves), but no more than `need` rounded up to a power of two, and at least `min_steps`;
  never more than the new-token bucket (the static batch's one phase).
  """
  quarter = buckets.pow2_at_least(window) // 4
  return min(new_tokens, max(min_steps, min(buckets.pow2_at_least(need), quarter)))


def run(*, admit: Callable[[int, int | None, Callable[[int], int] | None], Fresh],
        num_seqs: int, budgets: np.ndarray, slots: int | None, keep_all: bool, park: bool,
        phased: bool, min_steps: int, new_tokens: int, feed_last: bool,
        start: Callable, step: Callable, repack: Callable, put: Callable,
        batch_multiple: int) -> Decoded:
  """Decodes `num_seqs` sequences in phases (module docstring).

  Args:
    admit: admit(first, max_rows, steps_for) prefills queued sequences first, first + 1, ...
      (as many as fit in `max_rows`, None: all) into a `Fresh` whose cache has
      steps_for(width) entries after the prompts (none without `steps_for`); None if none
      fits.
    num_seqs: sequences to decode (result rows).
    budgets: int [num_seqs] max new tokens of each.
    slots: live rows decoded at once (None: all sequences at once).
    keep_all: rows never leave their slot (the final cache is the working one).
    park: rows that finish leave the working batch but keep their cache (parked), and the
      final cache holds every sequence, row r = sequence r (every sequence admitted at once).
    phased: growing windows; False: one phase over the whole new-token bucket per batch.
    min_steps: the shortest phase (`phase_steps`).
    new_tokens: the new-token bucket N.
    feed_last: feed every row's last token too (the final cache is complete).
    start, step, repack: `decode.start`, `decode.phase`, `decode.repack` with the model and
      static settings bound (step(cache, rows, rule_arrays, steps)).
    put: places a host [B] array with the batch sharding.
    batch_multiple: batch sizes are multiples of this (the mesh's batch shards).
  """
  tokens = [[] for _ in range(num_seqs)]
  logprobs = [[] for _ in range(num_seqs)]
  stopped = np.zeros((num_seqs,), bool)

  def need(seqs: np.ndarray, pending: np.ndarray, done: np.ndarray) -> int:
    """Steps the rows of `seqs` still need (each step feeds one token and emits one)."""
    out = 0
    for s, p, d in zip(seqs, pending, done):
      if s >= 0:
        out = max(out, int(p and feed_last) if d else int(budgets[s]) - len(tokens[s]) + feed_last)
    return out

  def steps_for(window: int, n: int) -> int:
    return phase_steps(window, n, min_steps, new_tokens) if phased else new_tokens

  def begin(fresh: Fresh):
    rows, token_B, logprob_B = start(fresh.first_logits_BxV, fresh.keys_B, fresh.live_B,
                                     fresh.budget_B)
    record(fresh.seq_B, to_host(token_B)[:, None], to_host(logprob_B)[:, None])
    return rows

  def record(seq_B, token_BxC, logprob_BxC):
    for b, s in enumerate(seq_B):
      if s >= 0:
        n = int((token_BxC[b] >= 0).sum())
        tokens[s].extend(token_BxC[b, :n].tolist())
        logprobs[s].extend(logprob_BxC[b, :n].tolist())

  first_need = int(budgets.max()) - 1 + int(feed_last)
  fresh = admit(0, slots, lambda width: steps_for(width, first_need))
  next_seq = int((fresh.seq_B >= 0).sum())
  if park and (keep_all or next_seq < num_seqs):
    raise ValueError("schedule.run: park needs every sequence admitted at once and rows free "
                     "to leave (keep_all=False)")
  cache, rows, seq_B = fresh.cache, begin(fresh), fresh.seq_B
  final_rows = len(seq_B)  # with park: the final cache's rows, row r = sequence r
  parked = None  # with park: (cache, rows, seq_P) of the rows that finished
  steps = cache.max_len - fresh.width
  while True:
    cache, rows, token_BxC, logprob_BxC = step(cache, rows, steps)
    record(seq_B, to_host(token_BxC), to_host(logprob_BxC))
    pending, done, stopped_B, start_B = map(to_host, (rows.pending_B, rows.done_B,
                                                      rows.stopped_B, cache.start_B))
    stopped[seq_B[seq_B >= 0]] = stopped_B[seq_B >= 0]
    going = (seq_B >= 0) & (pending if feed_last else ~done)
    if not going.any() and next_seq >= num_seqs:
      break
    keep = (seq_B >= 0) if keep_all else going
    if park and ((seq_B >= 0) & ~going).any():
      parked = _park(parked, cache, rows, seq_B, np.flatnonzero((seq_B >= 0) & ~going),
                     repack, put, batch_multiple)
    fresh = None
    free = len(seq_B) if slots is None else slots - int(keep.sum())
    if next_seq < num_seqs and free > 0:
      fresh = admit(next_seq, free if slots is not None else None, None)
    kept = np.flatnonzero(keep) if not keep_all else np.arange(len(seq_B))
    num_fresh = 0 if fresh is None else int((fresh.seq_B >= 0).sum())
    # The new batch: kept rows first (in slot order), then the admitted ones.
    if keep_all:
      rows_new = len(seq_B)
    else:
      rows_new = buckets.batch_rows(len(kept) + num_fresh, batch_multiple)
    take_B = np.full((rows_new,), -1, np.int32)
    take_B[:len(kept)] = kept
    take_B[:len(kept)][seq_B[kept] < 0] = -1
    new_seq_B = np.full((rows_new,), -1, np.int64)
    new_seq_B[:len(kept)] = seq_B[kept]
    old_len = cache.max_len
    # Rows' entries end at old_len (those still going) or before; the longest span from a
    # kept row's first entry to old_len must fit before the new write entry.
    context = max([old_len - int(start_B[b]) for b in kept if seq_B[b] >= 0], default=1)
    fresh_args = (None, None, None)
    if fresh is not None:
      fresh_rows = begin(fresh)
      admitted = np.flatnonzero(fresh.seq_B >= 0)
      fresh_take_B = np.full((rows_new,), -1, np.int32)
      fresh_take_B[len(kept):len(kept) + num_fresh] = admitted
      new_seq_B[len(kept):len(kept) + num_fresh] = fresh.seq_B[admitted]
      next_seq += num_fresh
    # Without admissions the rows keep their window (plain generation's windows then depend
    # on the buckets only). With them, a window more than twice what the kept rows need
    # shrinks to their bucket, and the admitted rows need their prompt width.
    window = old_len
    if fresh is not None:
      if 2 * context <= old_len:
        window = buckets.fine_at_least(context)
      window = max(window, fresh.width)
      fresh_args = ((fresh.cache, fresh_rows), put(fresh_take_B),
                    jnp.int32(window - fresh.width))
    steps = steps_for(window, max(
        need(new_seq_B[:len(kept)], pending[kept], done[kept]),
        need(new_seq_B[len(kept):], np.ones(rows_new - len(kept), bool),
             np.zeros(rows_new - len(kept), bool))))
    cache, rows = repack(cache, rows, put(take_B), jnp.int32(window - old_len), *fresh_args,
                         length=window + steps)
    seq_B = new_seq_B
  if park and (parked is not None or len(seq_B) != final_rows):
    cache = _unpark(parked, cache, rows, seq_B, final_rows, repack, put)
  return Decoded(tokens, logprobs, stopped, cache)


def _park(parked, cache: KVCache, rows, seq_B: np.ndarray, leaving: np.ndarray,
          repack: Callable, put: Callable, batch_multiple: int):
  """The parked batch plus the working rows `leaving`, all in the working cache's window."""
  old = 0 if parked is None else len(parked[2])
  total = buckets.batch_rows(old + len(leaving), batch_multiple)
  take_B = np.full((total,), -1, np.int32)
  take_B[old:old + len(leaving)] = leaving
  parked_take_B = np.full((total,), -1, np.int32)
  parked_take_B[:old] = np.arange(old)
  seq_P = np.concatenate([[] if parked is None else parked[2], seq_B[leaving]]).astype(np.int64)
  return (*_gather(cache, rows, take_B, parked, parked_take_B, repack, put), seq_P)


def _unpark(parked, cache: KVCache, rows, seq_B: np.ndarray, final_rows: int,
            repack: Callable, put: Callable) -> KVCache:
  """One cache of `final_rows` rows, row r = sequence r, from the working and parked rows
  (`parked` None: the working rows only, after padding rows left)."""
  take_B = np.full((final_rows,), -1, np.int32)
  take_B[seq_B[seq_B >= 0]] = np.flatnonzero(seq_B >= 0)
  parked_take_B = np.full((final_rows,), -1, np.int32)
  if parked is not None:
    parked_take_B[parked[2]] = np.arange(len(parked[2]))
  return _gather(cache, rows, take_B, parked, parked_take_B, repack, put)[0]


def _gather(cache: KVCache, rows, take_B: np.ndarray, parked, parked_take_B: np.ndarray,
            repack: Callable, put: Callable):
  """(cache, rows) whose slot b holds working row take_B[b] or parked row parked_take_B[b],
  in the working cache's window.

  Windows only grow while rows are parked (no sequence joins), so the parked rows move
  later by the growth since they were parked, as the working rows did.
  """
  fresh_args = (None, None, None)
  if parked is not None:
    fresh_args = ((parked[0], parked[1]), put(parked_take_B),
                  jnp.int32(cache.max_len - parked[0].max_len))
  return repack(cache, rows, put(take_B), jnp.int32(0), *fresh_args, length=cache.max_len)
