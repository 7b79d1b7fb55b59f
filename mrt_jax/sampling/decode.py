"""The jitted core of the sampler: prefill, a row's first token, decode phases, repacking.

All are pure functions of (params, arrays) with the architecture and shapes static; `jit`
compiles them once per shape bucket. `TRACES` counts how often each was traced (= compiled),
which tests read to bound the compiles.

A decode phase is one `lax.while_loop` of up to C steps over a cache window of S = P + C
entries; `schedule.py` runs phases over growing windows and `repack` builds each phase's batch
(rows that finished leave, queued ones join, entries move to the new window).

Cache invariant kept by a phase: row b's cache holds exactly its prompt (or, with a prefix, its
suffix) and every token it has fed, `lengths_B[b]` of them, ending at the phase's first entry P
for every row with a token to feed (`KVCache.start_B` places each row), and all rows write the
token they feed at step i to the same entry P + i (`forward(write_at=...)`): one
`dynamic_update_slice` per layer, which every backend does in place (libtpu answers a per-row
scatter by re-laying-out the whole cache on every step). A token is fed (written to the
cache) in the step after it is emitted, so with `feed_last` the phases run until every
emitted token is fed: the final cache is complete, and a fork can branch at any position
of it.
Without it (callers that drop the cache: probes, generation without `keep_cache`) they end
when the last row emits its last token, one forward pass sooner.

Cache layout: with `scan_layers` the caches are stacked [L, B, K, S, E] arrays; unrolled
(`scan_layers=False`, the `Sampler`'s default) they are per-layer buffers [B, K, S, E]
(`transformer.unstack_layers`) from the prefill on, so that every layer reads and updates its
own buffer in place and no call splits or restacks the cache. A cache in the other layout is
converted (one copy) on the way in.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.sharding import Rules, constrain
from mrt_jax.models.transformer import (CACHE_AXES, KVCache, Prefix, forward, stack_layers,
                                        unstack_layers, unstack_params)
from mrt_jax.models.weights import Params
from mrt_jax.sampling.rules import RuleArrays, choose, stop_matched

# Function name -> number of traces; a trace happens once per new static/shape signature.
TRACES: collections.Counter[str] = collections.Counter()


@flax.struct.dataclass
class Rows:
  """Per-row decode state, carried from phase to phase (rows move between batches with it)."""
  token_B: jax.Array       # i32: last emitted token (0 for finished rows), fed next step
  pending_B: jax.Array     # bool: `token_B` is a real token not yet in the cache
  done_B: jax.Array        # bool: the row emits no more tokens
  stopped_B: jax.Array     # bool: the row finished on a stop token/sequence
  emitted_B: jax.Array     # i32: tokens emitted so far (the next one's index)
  budget_B: jax.Array      # i32: the row's `max_new_tokens`
  window_BxW: jax.Array    # i32: the row's last W emitted tokens (newest last), -1 before any
  keys_B: jax.Array        # the row's PRNG key (`rules.choose`)


def in_layout(cache: KVCache, scan_layers: bool) -> KVCache:
  """The cache stacked (for a scan) or as per-layer buffers (unrolled), converting if needed."""
  per_layer = isinstance(cache.k_LxBxKxSxE, tuple)
  if per_layer and scan_layers:
    return stack_layers(cache)
  if not per_layer and not scan_layers:
    return unstack_layers(cache)
  return cache


def params_in_layout(params: Params, scan_layers: bool, o_EHD: bool = False) -> Params:
  """The params as the layer loop reads them: stacked for a scan, per-layer when unrolled.

  A sampler call splits the stacked weights once, here, for all its prefills and phases
  (each would otherwise copy them out of the stacked arrays on every call). With `o_EHD`
  (XLA:CPU, `Sampler.cpu_layouts`) each layer's output projection [H, E, D] is stored as
  "o_EHD" [E, H, D] instead: XLA:CPU contracts the attention output over (E, H) and would
  otherwise transpose the whole weight on every decode step.
  """
  if scan_layers or isinstance(params["layers"], (tuple, list)):
    return params
  return _split_layers(params, o_EHD=o_EHD)


@functools.partial(jax.jit, static_argnames=("o_EHD",))
def _split_layers(params: Params, o_EHD: bool = False) -> Params:
  params = unstack_params(params)
  if o_EHD:
    to_EHD = lambda p: {**{k: v for k, v in p.items() if k != "o"},
                        "o_EHD": jnp.transpose(p["o"], (1, 0, 2))}
    params = {**params, "layers": tuple(map(to_EHD, params["layers"]))}
  return params


def _constrain_cache(cache: KVCache, rules: Rules) -> KVCache:
  def one(a, axes=CACHE_AXES):
    if isinstance(a, tuple):  # per-layer buffers (`unstack_layers`)
      return tuple(constrain(x, axes[1:], rules) for x in a)
    return constrain(a, axes, rules)
  key_axes = (("layers", "batch", "kv_heads", "head_dim", "cache_seq") if cache.keys_ExS
              else CACHE_AXES)
  return cache.replace(k_LxBxKxSxE=one(cache.k_LxBxKxSxE, key_axes),
                       v_LxBxKxSxE=one(cache.v_LxBxKxSxE),
                       lengths_B=constrain(cache.lengths_B, ("batch",), rules),
                       start_B=constrain(cache.start_B, ("batch",), rules))


@functools.partial(jax.jit, static_argnames=("config", "rules", "compute_dtype", "cache_dtype",
                                             "cache_len", "repeats", "scan_layers"))
def prefill(config: ModelConfig, params: Params, tokens_BxT: jax.Array, lengths_B: jax.Array,
            prefix: Prefix | None = None, *, rules: Rules, compute_dtype: Any,
            cache_dtype: Any, cache_len: int, repeats: int = 1,
            scan_layers: bool = True) -> tuple[KVCache, jax.Array]:
  """Runs right-padded sequences through the model into a fresh cache.

  Args:
    config, params: the model.
    tokens_BxT: left-padded token ids; row b's real tokens are the last `lengths_B[b]`.
    lengths_B: int32 true lengths (>= 1).
    prefix: with a `Prefix`, the tokens continue the prefix rows at their boundaries (fork).
    rules, compute_dtype: sharding rules and activation dtype of the forward pass.
    cache_dtype: dtype of the cache.
    cache_len: entries per row of the new cache (S).
    repeats: each row is repeated this many times in the outputs (samples of one prompt share
      its prefill).
    scan_layers: scan (True) or unroll the layer loop (`models.forward`).

  Returns:
    The cache [.., B * repeats, S, ..] holding each row's tokens at entries [T - length, T)
    (lengths = true lengths, start = T - length; stacked with `scan_layers`, per-layer buffers
    without), and f32 logits [B * repeats, V] of each row's last real token.
  """
  TRACES["prefill"] += 1
  if prefix is not None:
    prefix = prefix.replace(cache=in_layout(prefix.cache, scan_layers))
  # The tokens attend causally among themselves (and to the prefix), not to an empty cache;
  # their keys/values fill entries 0..T-1 of a cache of S entries.
  B, T = tokens_BxT.shape
  lengths_B = lengths_B.astype(jnp.int32)
  logits_Bx1xV, cache = forward(config, params, tokens_BxT, prefix=prefix, cache_len=cache_len,
                                compute_dtype=compute_dtype, rules=rules,
                                logits_at=jnp.full((B, 1), T - 1, jnp.int32),
                                scan_layers=scan_layers, layer_buffers=not scan_layers,
                                start_B=T - lengths_B)
  # Each row's real tokens fill entries [T - length, T); nothing attends to those before.
  cast = lambda a: a.astype(cache_dtype)
  cache = cache.replace(k_LxBxKxSxE=jax.tree.map(cast, cache.k_LxBxKxSxE),
                        v_LxBxKxSxE=jax.tree.map(cast, cache.v_LxBxKxSxE))
  last_BxV = logits_Bx1xV[:, 0].astype(jnp.float32)
  if repeats > 1:
    # Stacked [L, B, ..] arrays repeat axis 1; per-layer [B, ..] buffers and lengths axis 0.
    cache = jax.tree.map(lambda a: jnp.repeat(a, repeats, axis=1 if a.ndim == 5 else 0), cache)
    last_BxV = jnp.repeat(last_BxV, repeats, axis=0)
  return _constrain_cache(cache, rules), last_BxV


def _emit(rows: Rows, logits_BxV: jax.Array,
          rule_arrays: RuleArrays) -> tuple[Rows, jax.Array, jax.Array]:
  """Chooses the next token of every unfinished row: (rows, tokens, log-probs).

  Finished rows emit token -1 with log-prob 0.
  """
  active_B = ~rows.done_B
  token_B, logprob_B = choose(logits_BxV, rule_arrays, rows.keys_B, rows.emitted_B)
  window_BxW = jnp.where(active_B[:, None],
                         jnp.concatenate([rows.window_BxW[:, 1:], token_B[:, None]], axis=1),
                         rows.window_BxW)
  stop_B = active_B & stop_matched(window_BxW, rule_arrays)
  out_of_budget_B = active_B & (rows.emitted_B + 1 >= rows.budget_B)
  rows = rows.replace(
      token_B=jnp.where(active_B, token_B, 0), pending_B=active_B,
      done_B=rows.done_B | stop_B | out_of_budget_B, stopped_B=rows.stopped_B | stop_B,
      emitted_B=rows.emitted_B + active_B, window_BxW=window_BxW)
  return rows, jnp.where(active_B, token_B, -1), jnp.where(active_B, logprob_B, 0.0)


def _constrain_rows(rows: Rows, rules: Rules) -> Rows:
  return jax.tree.map(lambda a: constrain(a, ("batch",) + (None,) * (a.ndim - 1), rules), rows)


@functools.partial(jax.jit, static_argnames=("rules",))
def start(first_logits_BxV: jax.Array, rule_arrays: RuleArrays, keys_B: jax.Array,
          live_B: jax.Array, budget_B: jax.Array, *,
          rules: Rules) -> tuple[Rows, jax.Array, jax.Array]:
  """Each live row's first token, chosen from its prefill logits: (rows, tokens, log-probs).

  Args:
    first_logits_BxV: logits of each row's last prefilled token.
    rule_arrays: sampling rules (`rules.RuleArrays`).
    keys_B: one PRNG key per row (see `rules.choose`).
    live_B: bool; False for padding rows, which emit nothing.
    budget_B: int32 `max_new_tokens` of each row (>= 1).
    rules: sharding rules.
  """
  TRACES["start"] += 1
  B = first_logits_BxV.shape[0]
  W = rule_arrays.stops_XxW.shape[1]
  rows = Rows(token_B=jnp.zeros((B,), jnp.int32), pending_B=jnp.zeros((B,), bool),
              done_B=~live_B, stopped_B=jnp.zeros((B,), bool),
              emitted_B=jnp.zeros((B,), jnp.int32), budget_B=budget_B.astype(jnp.int32),
              window_BxW=jnp.full((B, W), -1, jnp.int32), keys_B=keys_B)
  rows, token_B, logprob_B = _emit(_constrain_rows(rows, rules), first_logits_BxV, rule_arrays)
  return _constrain_rows(rows, rules), token_B, logprob_B


@functools.partial(jax.jit, static_argnames=("config", "rules", "compute_dtype", "steps",
                                             "scan_layers", "feed_last", "keys_ExS"),
                   donate_argnames=("cache",))
def phase(config: ModelConfig, params: Params, cache: KVCache, rows: Rows,
          rule_arrays: RuleArrays, prefix: Prefix | None = None, *, rules: Rules,
          compute_dtype: Any, steps: int, scan_layers: bool = True,
          feed_last: bool = True,
          keys_ExS: bool = False) -> tuple[KVCache, Rows, jax.Array, jax.Array]:
  """Up to `steps` decode steps of every row in one `lax.while_loop` over a static window.

  Each step feeds every pending row's last token (all rows write at one common entry) and
  emits the next token of every unfinished row.

  Args:
    config, params: the model.
    cache: the rows' cache (donated: updated in place; best in the layout of `scan_layers`,
      module docstring). Its last `steps` entries are this phase's, and every row's entries
      end where they begin (the rows with a pending token; others may end before).
    rows: the rows' `Rows` (after `start` or a previous phase).
    rule_arrays: sampling rules (`rules.RuleArrays`).
    prefix: the trunk that a fork's rows attend to (None for plain generation).
    rules, compute_dtype: sharding rules and activation dtype of the forward pass.
    steps: the phase's length C (the cache's S = entries before + C).
    scan_layers: scan (True) or unroll the layer loop (`models.forward`).
    feed_last: run until every emitted token is fed (so that the cache is complete), not only
      until every row has emitted its last token (one forward pass sooner).
    keys_ExS: with unrolled layers, hold the keys (and the prefix's) as [B, K, E, S] inside
      the loop (`KVCache.keys_ExS`): transposed once on the way in and once on the way out.

  Returns:
    (cache, rows, tokens [B, C], log-probs [B, C]): step i's emitted tokens (-1 for rows that
    emitted none) and log-probs (0 there). The phase ends early when no row needs another
    step; rows that still do continue in the next phase.
  """
  if keys_ExS and scan_layers:
    raise ValueError("decode phase: keys_ExS lays out per-layer key buffers; it needs "
                     "scan_layers=False")
  TRACES["phase"] += 1
  B = rows.token_B.shape[0]
  if cache.max_len < steps:
    raise ValueError(f"decode phase: a cache of {cache.max_len} entries has no room for "
                     f"{steps} steps")
  cache = _constrain_cache(in_layout(cache, scan_layers), rules)
  if prefix is not None:
    prefix = prefix.replace(cache=_constrain_cache(in_layout(prefix.cache, scan_layers), rules))
  first = cache.max_len - steps  # the entry every row writes its first fed token to
  if not scan_layers:
    # Unrolled layers read and update per-layer buffers in place; per-layer weights too (XLA
    # copies a slice of a stacked array on every step). Best split once per sampler call
    # (`params_in_layout`); stacked ones are split here, once per phase.
    params = unstack_params(params)
  swap_keys = lambda c, flag: c.replace(
      k_LxBxKxSxE=tuple(jnp.swapaxes(k, 2, 3) for k in c.k_LxBxKxSxE), keys_ExS=flag)
  if keys_ExS:
    cache = _constrain_cache(swap_keys(cache, True), rules)
    if prefix is not None:  # read on every step too; transposed once per phase
      prefix = prefix.replace(cache=_constrain_cache(swap_keys(prefix.cache, True), rules))

  def body(carry):
    i, cache, rows, tokens_BxC, logprobs_BxC = carry
    # Every pending row's last token goes to entry first + i (rows in lockstep).
    logits_Bx1xV, cache = forward(config, params, rows.token_B[:, None], cache=cache,
                                  prefix=prefix, compute_dtype=compute_dtype, rules=rules,
                                  scan_layers=scan_layers, write_at=first + i)
    # Finished rows write garbage past their last entry; only real tokens advance a length.
    cache = _constrain_cache(
        cache.replace(lengths_B=carry[1].lengths_B + rows.pending_B), rules)
    rows, token_B, logprob_B = _emit(rows, logits_Bx1xV[:, 0], rule_arrays)
    return (i + 1, cache, _constrain_rows(rows, rules), tokens_BxC.at[:, i].set(token_B),
            logprobs_BxC.at[:, i].set(logprob_B))

  # With feed_last, run while some row has an emitted token that is not yet in the cache
  # (rows stop emitting on a stop match or at their budget, so this ends one step after the
  # last row finishes); without, while some row will emit another token. Either way at most
  # `steps` steps: the window holds no more.
  needs_step = (lambda r: jnp.any(r.pending_B)) if feed_last else (lambda r: jnp.any(~r.done_B))
  cond = lambda carry: (carry[0] < steps) & needs_step(carry[2])
  init = (jnp.int32(0), cache, _constrain_rows(rows, rules),
          jnp.full((B, steps), -1, jnp.int32), jnp.zeros((B, steps), jnp.float32))
  _, cache, rows, tokens_BxC, logprobs_BxC = jax.lax.while_loop(cond, body, init)
  if keys_ExS:
    cache = _constrain_cache(swap_keys(cache, False), rules)
  return cache, rows, tokens_BxC, logprobs_BxC


def _moved(a: jax.Array, take_B: jax.Array, shift: jax.Array, length: int) -> jax.Array:
  """Cache array [.., B, K, S, E] -> rows `take_B`, entry s holding old entry s - shift."""
  a = jnp.take(a, jnp.maximum(take_B, 0), axis=a.ndim - 4)
  S = a.shape[-2]
  widths = [(0, 0)] * a.ndim
  widths[-2] = (length, S)  # room for any shift in [-S, length]
  return jax.lax.dynamic_slice_in_dim(jnp.pad(a, widths), length - shift, length, a.ndim - 2)


def _moved_rows(rows: Rows, take_B: jax.Array) -> Rows:
  index = jnp.maximum(take_B, 0)
  keys = jax.random.key_data(rows.keys_B)
  return rows.replace(**{f.name: jnp.take(getattr(rows, f.name), index, axis=0)
                         for f in dataclasses.fields(rows) if f.name != "keys_B"},
                      keys_B=jnp.take(keys, index, axis=0))


@functools.partial(jax.jit, static_argnames=("rules", "length"))
def repack(cache: KVCache, rows: Rows, take_B: jax.Array, shift: jax.Array,
           fresh: tuple[KVCache, Rows] | None, fresh_take_B: jax.Array | None,
           fresh_shift: jax.Array | None, *, rules: Rules,
           length: int) -> tuple[KVCache, Rows]:
  """The next phase's batch: rows gathered from the last one and from a fresh prefill.

  Slot b takes row take_B[b] of (cache, rows), moved `shift` entries later in the cache, or
  (where take_B[b] < 0) row fresh_take_B[b] of `fresh`, moved `fresh_shift` entries; slots with
  neither are empty (finished, no entries). The new cache has `length` entries.
  """
  TRACES["repack"] += 1
  sources = [(cache, rows, take_B, shift)]
  if fresh is not None:
    sources.append((*fresh, fresh_take_B, fresh_shift))
  parts = []
  for c, r, take, sh in sources:
    c = in_layout(c, not isinstance(cache.k_LxBxKxSxE, tuple))
    move = lambda a, take=take, sh=sh: _moved(a, take, sh, length)
    c = c.replace(k_LxBxKxSxE=jax.tree.map(move, c.k_LxBxKxSxE),
                  v_LxBxKxSxE=jax.tree.map(move, c.v_LxBxKxSxE),
                  lengths_B=jnp.take(c.lengths_B, jnp.maximum(take, 0)),
                  start_B=jnp.take(c.start_B, jnp.maximum(take, 0)) + sh)
    parts.append((take >= 0, c, _moved_rows(r, take)))
  valid_B, new_cache, new_rows = parts[0]
  for other_B, c, r in parts[1:]:
    pick = lambda a, b: jnp.where(other_B.reshape((-1,) + (1,) * (a.ndim - 1))
                                  if a.ndim < 5 else other_B[:, None, None, None][None],
                                  b, a)
    new_cache = jax.tree.map(pick, new_cache, c)
    new_rows = jax.tree.map(pick, new_rows, r)
    valid_B = valid_B | other_B
  # Empty slots: finished, nothing pending, no entries.
  new_rows = new_rows.replace(done_B=new_rows.done_B | ~valid_B,
                              pending_B=new_rows.pending_B & valid_B,
                              keys_B=jax.random.wrap_key_data(new_rows.keys_B))
  new_cache = new_cache.replace(lengths_B=jnp.where(valid_B, new_cache.lengths_B, 0),
                                start_B=jnp.where(valid_B, new_cache.start_B, length))
  return _constrain_cache(new_cache, rules), _constrain_rows(new_rows, rules)
