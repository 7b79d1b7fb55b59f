"""The jitted core of the sampler: prefill, and the decode loop (one `lax.while_loop`).

Both are pure functions of (params, arrays) with the architecture and shapes static; `jit`
compiles them once per shape bucket. `TRACES` counts how often each was traced (= compiled),
which tests read to show that calls inside a bucket do not recompile.

Cache invariant kept by the loop: row b's cache holds exactly its prompt (or, with a prefix, its
suffix) and every token it has emitted, `lengths_B[b]` of them. Prompts come left-padded to
the prompt width W, so every row's prompt ends at entry W (`KVCache.start_B`) and all rows
write the token they feed at step i to the same entry W + i (`forward(write_at=...)`): one
`dynamic_update_slice` per layer, which every backend does in place (libtpu answers a per-row
scatter by re-laying-out the whole cache on every step). A token is fed (written to the
cache) in the step after it is emitted, so with `feed_last` the loop runs until every
emitted token is fed: the returned cache is complete, and a fork can branch at any position
of it.
Without it (callers that drop the cache: probes, generation without `keep_cache`) the loop
ends when the last row emits its last token, one forward pass sooner.

Cache layout: with `scan_layers` the caches are stacked [L, B, K, S, E] arrays; unrolled
(`scan_layers=False`, the `Sampler`'s default) they are per-layer buffers [B, K, S, E]
(`transformer.unstack_layers`) from the prefill on, so that every layer reads and updates its
own buffer in place and no call splits or restacks the cache. A cache in the other layout is
converted (one copy) on the way in.
"""

from __future__ import annotations

import collections
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
class DecodeState:
  """Loop carry. Index i of the output buffers is the i-th generated token of the row."""
  step: jax.Array          # i32 []: tokens emitted so far (the next one's index)
  cache: KVCache
  token_B: jax.Array       # i32: last emitted token (0 for finished rows), fed next step
  pending_B: jax.Array     # bool: `token_B` is a real token not yet in the cache
  done_B: jax.Array        # bool: the row emits no more tokens
  stopped_B: jax.Array     # bool: the row finished on a stop token/sequence
  window_BxW: jax.Array    # i32: the row's last W emitted tokens (newest last), -1 before any
  tokens_BxN: jax.Array    # i32: emitted tokens, -1 after the row's end
  logprobs_BxN: jax.Array  # f32: their log-probs (rules.py convention), 0 after the end


def in_layout(cache: KVCache, scan_layers: bool) -> KVCache:
  """The cache stacked (for a scan) or as per-layer buffers (unrolled), converting if needed."""
  per_layer = isinstance(cache.k_LxBxKxSxE, tuple)
  if per_layer and scan_layers:
    return stack_layers(cache)
  if not per_layer and not scan_layers:
    return unstack_layers(cache)
  return cache


def _constrain_cache(cache: KVCache, rules: Rules) -> KVCache:
  def one(a):
    if isinstance(a, tuple):  # per-layer buffers (`unstack_layers`)
      return tuple(constrain(x, CACHE_AXES[1:], rules) for x in a)
    return constrain(a, CACHE_AXES, rules)
  return cache.replace(k_LxBxKxSxE=one(cache.k_LxBxKxSxE), v_LxBxKxSxE=one(cache.v_LxBxKxSxE),
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


def _emit(state: DecodeState, logits_BxV: jax.Array, rule_arrays: RuleArrays,
          row_keys_B: jax.Array, max_new_tokens: jax.Array) -> DecodeState:
  """Chooses token `state.step` of every unfinished row and records it."""
  s = state
  active_B = ~s.done_B
  token_B, logprob_B = choose(logits_BxV, rule_arrays, row_keys_B, s.step)
  window_BxW = jnp.where(active_B[:, None],
                         jnp.concatenate([s.window_BxW[:, 1:], token_B[:, None]], axis=1),
                         s.window_BxW)
  stop_B = active_B & stop_matched(window_BxW, rule_arrays)
  out_of_budget_B = active_B & (s.step + 1 >= max_new_tokens)
  return s.replace(
      step=s.step + 1,
      token_B=jnp.where(active_B, token_B, 0),
      pending_B=active_B,
      done_B=s.done_B | stop_B | out_of_budget_B,
      stopped_B=s.stopped_B | stop_B,
      window_BxW=window_BxW,
      # Index `step` is past the buffer only once every row is done; those writes are dropped.
      tokens_BxN=s.tokens_BxN.at[:, s.step].set(jnp.where(active_B, token_B, -1), mode="drop"),
      logprobs_BxN=s.logprobs_BxN.at[:, s.step].set(jnp.where(active_B, logprob_B, 0.0),
                                                    mode="drop"))


@functools.partial(jax.jit, static_argnames=("config", "rules", "compute_dtype", "new_tokens",
                                             "scan_layers", "feed_last"),
                   donate_argnames=("cache",))
def decode(config: ModelConfig, params: Params, cache: KVCache, first_logits_BxV: jax.Array,
           rule_arrays: RuleArrays, row_keys_B: jax.Array, live_B: jax.Array,
           max_new_tokens: jax.Array, prefix: Prefix | None = None, *, rules: Rules,
           compute_dtype: Any, new_tokens: int, scan_layers: bool = True,
           feed_last: bool = True) -> DecodeState:
  """Generates up to `max_new_tokens` tokens per row in one `lax.while_loop`.

  Args:
    config, params: the model.
    cache: the prefilled cache (donated: updated in place; best in the layout of
      `scan_layers`, module docstring). Its last `new_tokens` entries are the decode's, and
      every live row's prompt ends where they begin (as `prefill` leaves it).
    first_logits_BxV: logits of each row's last prefilled token (they choose token 0).
    rule_arrays: sampling rules (`rules.RuleArrays`).
    row_keys_B: one PRNG key per row (see `rules.choose`).
    live_B: bool; False for padding rows, which emit nothing.
    max_new_tokens: int32 [] budget, <= `new_tokens`.
    prefix: the trunk that a fork's rows attend to (None for plain generation).
    rules, compute_dtype: sharding rules and activation dtype of the forward pass.
    new_tokens: the output buffer length N (the bucket of `max_new_tokens`).
    scan_layers: scan (True) or unroll the layer loop (`models.forward`).
    feed_last: also feed each row's last emitted token, so that the returned cache is complete
      (False saves the final forward pass when the caller drops the cache).

  Returns:
    The final `DecodeState`; with `feed_last` its cache holds every row's prefilled and emitted
    tokens (without, the last emitted token of each row is missing), in the layout of
    `scan_layers`.
  """
  TRACES["decode"] += 1
  B = first_logits_BxV.shape[0]
  W = rule_arrays.stops_XxW.shape[1]
  cache = _constrain_cache(in_layout(cache, scan_layers), rules)
  if prefix is not None:
    prefix = prefix.replace(cache=_constrain_cache(in_layout(prefix.cache, scan_layers), rules))
  state = DecodeState(
      step=jnp.int32(0), cache=cache, token_B=jnp.zeros((B,), jnp.int32),
      pending_B=jnp.zeros((B,), bool), done_B=~live_B, stopped_B=jnp.zeros((B,), bool),
      window_BxW=jnp.full((B, W), -1, jnp.int32),
      tokens_BxN=jnp.full((B, new_tokens), -1, jnp.int32),
      logprobs_BxN=jnp.zeros((B, new_tokens), jnp.float32))
  state = _emit(state, first_logits_BxV, rule_arrays, row_keys_B, max_new_tokens)

  if cache.max_len < new_tokens:
    raise ValueError(f"decode: a cache of {cache.max_len} entries has no room for "
                     f"{new_tokens} new tokens")
  width = cache.max_len - new_tokens  # the prompt width: entry of every row's first new token

  def body(s: DecodeState) -> DecodeState:
    # Token `step - 1` of every pending row goes to entry width + step - 1 (rows in lockstep).
    logits_Bx1xV, cache = forward(config, params, s.token_B[:, None], cache=s.cache,
                                  prefix=prefix, compute_dtype=compute_dtype, rules=rules,
                                  scan_layers=scan_layers, write_at=width + s.step - 1)
    # Finished rows write garbage past their last entry; only real tokens advance a length.
    cache = _constrain_cache(cache.replace(lengths_B=s.cache.lengths_B + s.pending_B), rules)
    return _emit(s.replace(cache=cache), logits_Bx1xV[:, 0], rule_arrays, row_keys_B,
                 max_new_tokens)

  if not scan_layers:
    # Unrolled layers read and update per-layer buffers in place; split the stacked weights
    # once per call too (XLA copies a slice of a stacked array on every step).
    params = unstack_params(params)
  # With feed_last, run while some row has an emitted token that is not yet in the cache
  # (rows stop emitting on a stop match or at the budget, so this ends one step after the last
  # row finishes); without, while some row will emit another token.
  cond = (lambda s: jnp.any(s.pending_B)) if feed_last else (lambda s: jnp.any(~s.done_B))
  return jax.lax.while_loop(cond, body, state)
