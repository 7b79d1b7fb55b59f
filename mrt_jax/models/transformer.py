"""The decoder forward pass: pure function of (config, params, tokens, positions, cache).

Layers are scanned by default (`lax.scan` over the stacked `layers` params), so compile time
does not grow with depth; `scan_layers=False` unrolls them instead (XLA:CPU copies each scanned
layer's weight and cache slices on every step, which dominates a small decode step there).
The KV cache is an explicit pytree laid out [L, B, K, S, E], so a query's dot with one head's
keys reads them contiguously (no transpose per step). Each layer writes the new tokens'
keys/values into its cache (one scatter at each row's slots) and then attends to the updated
cache: written in place and read after, the cache needs no defensive copy (a buffer read and
then updated in place would be copied by XLA). A jitted caller that donates the cache (or
carries it in a loop) updates it in place. A prefill (`cache_len=S`) attends causally among its
tokens only and writes them into a fresh cache.

Forking: with a `Prefix`, groups of rows also attend to a shared read-only cache (a trunk of
sequences already processed) up to a per-row boundary, and keep only what follows the boundary
in their own cache; the trunk is read in place, never copied per row.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from mrt_jax.models import layers
from mrt_jax.models.config import ModelConfig
from mrt_jax.models.sharding import TRAIN_RULES, Rules, constrain
from mrt_jax.models.weights import Params

# Logical axes of the cache arrays [L, B, K, S, E].
CACHE_AXES = ("layers", "batch", "kv_heads", "cache_seq", "head_dim")


@flax.struct.dataclass
class KVCache:
  """Keys/values of every layer; row b holds positions [0, lengths[b]) of its sequence.

  Entry start[b] + p of row b is the key/value of the token at rope position p. Entries before
  start[b] or at or beyond start[b] + lengths[b] are garbage (e.g. the padding of a prefill)
  and are never attended to.

  The sampler left-pads its prompts, so every row's prompt ends at the same entry (start[b] =
  prompt width - prompt length) and rows decoding in lockstep write each new token at one
  common entry: one `dynamic_update_slice` per layer instead of a per-row scatter, which
  libtpu answers by changing the cache's layout, and so copying it, on every step.

  `k`/`v` are stacked [L, B, K, S, E] arrays; inside an unrolled decode loop they are tuples of
  L arrays [B, K, S, E] instead (`unstack_layers`), so that each layer reads and updates its
  own buffer in place (a slice of a stacked array that is also updated is copied by XLA).
  """
  k_LxBxKxSxE: jax.Array | tuple[jax.Array, ...]
  v_LxBxKxSxE: jax.Array | tuple[jax.Array, ...]
  lengths_B: jax.Array  # int32
  start_B: jax.Array  # int32: entry of each row's position 0
  # Per-layer key buffers laid out [B, K, E, S] instead (a decode phase's layout on XLA:CPU,
  # `sampling.decode.phase`): the keys' product with the queries then reads them in the
  # layout the CPU's dot kernels take, not transposing every layer's keys on every step.
  keys_ExS: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def max_len(self) -> int:
    v = self.v_LxBxKxSxE
    return v[0].shape[2] if isinstance(v, tuple) else v.shape[3]


def unstack_layers(cache: KVCache) -> KVCache:
  """The cache with per-layer tuples of [B, K, S, E] arrays (one copy)."""
  split = lambda a: tuple(a[i] for i in range(a.shape[0]))
  return cache.replace(k_LxBxKxSxE=split(cache.k_LxBxKxSxE),
                       v_LxBxKxSxE=split(cache.v_LxBxKxSxE))


def unstack_params(params: Params) -> Params:
  """Params whose `layers` is a tuple of per-layer dicts (for `scan_layers=False` loops).

  Params already in that layout are returned as they are.
  """
  stacked = params["layers"]
  if isinstance(stacked, (tuple, list)):
    return params
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  return {**params, "layers": tuple(jax.tree.map(lambda a, i=i: a[i], stacked)
                                    for i in range(num_layers))}


def stack_layers(cache: KVCache) -> KVCache:
  """Inverse of `unstack_layers` (one copy)."""
  return cache.replace(k_LxBxKxSxE=jnp.stack(cache.k_LxBxKxSxE),
                       v_LxBxKxSxE=jnp.stack(cache.v_LxBxKxSxE))


@flax.struct.dataclass
class Prefix:
  """A shared read-only cache that groups of rows attend to before their own cache (forking).

  With R = `cache` rows and a batch of B = R * M rows, row b belongs to prefix row b // M and
  sees that row's entries at positions < `boundaries_B[b]`. The row's own cache then holds what
  follows the boundary: its own position j (entry start + j) is the token at rope position
  boundaries_B[b] + j.
  """
  cache: KVCache
  boundaries_B: jax.Array  # int32


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
  """An empty cache for `batch` rows of up to `max_len` positions."""
  shape = (config.num_layers, batch, config.num_kv_heads, max_len, config.head_dim)
  # Distinct buffers for lengths and starts: a caller may donate the whole cache.
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype),
                 jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), jnp.int32))


def _layer(config: ModelConfig, rules: Rules, p: dict[str, jax.Array], x_BxTxD: jax.Array,
           cos_BxTxE: jax.Array, sin_BxTxE: jax.Array, self_mask_BxTxT: jax.Array,
           kv: tuple[jax.Array, jax.Array] | None, cache_mask_BxTxS: jax.Array | None,
           prefix_kv: tuple[jax.Array, jax.Array] | None, prefix_mask_BxP: jax.Array | None,
           write: Any = None, keys_ExS: bool = False, prefix_keys_ExS: bool = False):
  """One decoder block; returns the new activations and the new tokens' (k, v) [B, T, K, E].

  The new tokens attend to each other where `self_mask` allows, to this layer's cache `kv`
  (k, v) [B, K, S, E] (or None) where `cache_mask` allows, and to this layer's prefix
  `prefix_kv` (k, v) [R, K, P, E] (or None) where `prefix_mask` allows.

  With `write` a pair of functions (cache, new [B, T, K, E]) -> (stored, view), for the keys
  and for the values, the new keys/values are written
  into `kv` first and the tokens attend to the updated layer cache `view` [B, K, S, E] alone
  (`cache_mask` must then show each token its own entry); the `stored` (k, v) are returned
  instead of the new entries (the written buffers, which may hold every layer). With
  `keys_ExS` (`prefix_keys_ExS`) the layer's cached (prefix) keys are laid out [B, K, E, S]
  (`KVCache.keys_ExS`).
  """
  c = config
  h_BxTxD = layers.rms_norm(x_BxTxD, p["attn_norm"], c.rms_norm_eps)
  q_BxTxHxE = jnp.einsum("BTD,DHE->BTHE", h_BxTxD, p["q"])
  k_BxTxKxE = jnp.einsum("BTD,DKE->BTKE", h_BxTxD, p["k"])
  v_BxTxKxE = jnp.einsum("BTD,DKE->BTKE", h_BxTxD, p["v"])
  if c.qkv_bias:
    q_BxTxHxE = q_BxTxHxE + p["q_bias"][None, None]
    k_BxTxKxE = k_BxTxKxE + p["k_bias"][None, None]
    v_BxTxKxE = v_BxTxKxE + p["v_bias"][None, None]
  if c.qk_norm:
    q_BxTxHxE = layers.rms_norm(q_BxTxHxE, p["q_norm"], c.rms_norm_eps)
    k_BxTxKxE = layers.rms_norm(k_BxTxKxE, p["k_norm"], c.rms_norm_eps)
  q_BxTxHxE = layers.apply_rope(q_BxTxHxE, cos_BxTxE, sin_BxTxE)
  k_BxTxKxE = layers.apply_rope(k_BxTxKxE, cos_BxTxE, sin_BxTxE)
  q_BxTxHxE = constrain(q_BxTxHxE, ("batch", "seq", "q_heads", "head_dim"), rules)

  new_kv = (k_BxTxKxE, v_BxTxKxE)
  if write is not None:
    (k_stored, k_view) = write[0](kv[0], k_BxTxKxE)
    (v_stored, v_view) = write[1](kv[1], v_BxTxKxE)
    kv, new_kv = (k_view, v_view), (k_stored, v_stored)
  if kv is None and prefix_kv is None:
    # Positions increase along a row, so the self mask is causal in token order.
    attn_BxTxHxE = layers.attention(q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, self_mask_BxTxT,
                                    causal=True)
  else:
    dtype = q_BxTxHxE.dtype
    parts = []
    if write is None:
      parts.append((jnp.swapaxes(k_BxTxKxE, 1, 2), jnp.swapaxes(v_BxTxKxE, 1, 2),
                    self_mask_BxTxT))
    if kv is not None:
      parts.insert(0, (kv[0].astype(dtype), kv[1].astype(dtype), cache_mask_BxTxS))
    prefix = None
    if prefix_kv is not None:
      prefix = (prefix_kv[0].astype(dtype), prefix_kv[1].astype(dtype), prefix_mask_BxP)
    attn_BxTxHxE = layers.attention_parts(q_BxTxHxE, parts, prefix, first_keys_ExS=keys_ExS,
                                          prefix_keys_ExS=prefix_keys_ExS)
  if "o_EHD" in p:  # the sampler's CPU layout (`sampling.decode.params_in_layout`)
    out_BxTxD = jnp.einsum("BTHE,EHD->BTD", attn_BxTxHxE, p["o_EHD"])
  else:
    out_BxTxD = jnp.einsum("BTHE,HED->BTD", attn_BxTxHxE, p["o"])
  if c.o_bias:
    out_BxTxD = out_BxTxD + p["o_bias"][None, None]
  x_BxTxD = constrain(x_BxTxD + out_BxTxD, ("batch", "seq", "act_embed"), rules)

  h_BxTxD = layers.rms_norm(x_BxTxD, p["mlp_norm"], c.rms_norm_eps)
  x_BxTxD = x_BxTxD + layers.swiglu(h_BxTxD, p["gate"], p["up"], p["down"])
  return constrain(x_BxTxD, ("batch", "seq", "act_embed"), rules), new_kv


def _cast(tree: Any, dtype) -> Any:
  if dtype is None:
    return tree
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                      tree)


def unembed(config: ModelConfig, params: Params, x_BxTxD: jax.Array,
            rules: Rules = TRAIN_RULES) -> jax.Array:
  """Final-normed hidden states -> logits [B, T, V] (tied or untied head)."""
  if config.tie_word_embeddings:
    head_VxD = params["embed"]["embedding"].astype(x_BxTxD.dtype)
    logits_BxTxV = jnp.einsum("BTD,VD->BTV", x_BxTxD, head_VxD)
  else:
    head_DxV = params["lm_head"]["kernel"].astype(x_BxTxD.dtype)
    logits_BxTxV = jnp.einsum("BTD,DV->BTV", x_BxTxD, head_DxV)
  return constrain(logits_BxTxV, ("batch", "seq", "vocab"), rules)


def forward(config: ModelConfig, params: Params, tokens: jax.Array,
            positions: jax.Array | None = None, cache: KVCache | None = None, *,
            compute_dtype=None, rules: Rules = TRAIN_RULES, prefix: Prefix | None = None,
            cache_len: int | None = None, logits_at: jax.Array | None = None,
            return_hidden: bool = False, remat: bool = False, scan_layers: bool = True,
            layer_buffers: bool = False, start_B: jax.Array | None = None,
            write_at: jax.Array | None = None) -> tuple[jax.Array, KVCache | None]:
  """Runs the decoder.

  Args:
    config: the architecture.
    params: the param pytree (`weights.param_specs` structure), f32 or bf16.
    tokens: int32 [B, T].
    positions: int32 [B, T] rope positions; defaults to 0..T-1 without a cache, to
      `cache.lengths_B[:, None] + 0..T-1` with one, and to `prefix.boundaries_B[:, None] +
      cache.lengths_B[:, None] + 0..T-1` (or `prefix.boundaries_B[:, None] + 0..T-1` without a
      cache) with a prefix. Positions of one row must increase.
    cache: a `KVCache` or None. With a cache, the new tokens' keys/values are written at their
      positions' entries and the tokens attend to every cached entry at a position <= their
      own. Without one, tokens attend causally among themselves (right padding is harmless:
      padding comes after the real tokens).
    compute_dtype: dtype activations are computed in; defaults to the params' dtype (each
      layer's weights are cast inside the layer loop, never the whole model at once).
    rules: logical-axis sharding rules for activation constraints under an ambient mesh.
    prefix: a `Prefix`: rows also attend to the prefix's entries before their boundary, and the
      token at position p goes to own-cache entry p - boundary.
    cache_len: a prefill: with no `cache`, return a new cache of `cache_len` (>= T) entries per
      row whose entries 0..T-1 hold the tokens' keys/values (`lengths_B` = T; entries past a
      row's real tokens are garbage its caller must not count).
    logits_at: int32 [B, N] token indices (into T) at which to compute logits; default: every
      token. A prefill needs only each row's last prompt token, and [B, T, V] logits of long
      prompts would not fit in memory.
    return_hidden: return the final-normed hidden states [B, T, D] instead of logits; with
      `unembed` a caller can project them to the vocab a chunk of T at a time (the learner's
      log-probs of long sequences, where [B, T, V] logits would not fit).
    remat: rematerialize each layer in the backward pass (training memory: L layer inputs
      [B, T, D] are stored instead of every activation).
    scan_layers: `lax.scan` over the layers (compile time independent of depth); False unrolls
      them (the same numbers; faster decode steps on XLA:CPU).
    layer_buffers: a prefill (`cache_len`) returns per-layer buffers (`unstack_layers`'s
      layout) instead of stacked arrays, without building the stacked ones first; needs
      scan_layers=False.
    start_B: a left-padded prefill (`cache_len`): int32 [B], row b's real tokens are
      tokens[b, start_B[b]:], at positions 0, 1, ... (after the prefix's boundary, with a
      prefix); nothing attends to the padding before them. They fill entries
      [start_B[b], T) of the new cache, whose `start_B` this becomes: every row ends at
      entry T.
    write_at: with a cache, an int32 [] entry at which every row writes its T new tokens (one
      `dynamic_update_slice` instead of a scatter at each row's own entries). Only the rows
      whose next entry (start + length) it is get a correct cache and correct outputs: the
      rest of the batch must be rows whose outputs and later entries are not used (finished
      rows of a decode loop in lockstep).

  Returns:
    logits [B, T, V] (or [B, N, V] with `logits_at`) in the compute dtype, and the updated
    cache (None without one or `cache_len`) whose `lengths_B` is the maximum of the old lengths
    and the last written entry + 1.
  """
  B, T = tokens.shape
  embedding_VxD = params["embed"]["embedding"]
  dtype = compute_dtype or embedding_VxD.dtype
  if cache is not None and cache_len is not None:
    raise ValueError("forward: cache_len makes a new cache; it cannot be given with a cache")
  if cache_len is not None and cache_len < T:
    raise ValueError(f"forward: cache_len={cache_len} is shorter than the {T} tokens to write")
  if layer_buffers and (scan_layers or cache_len is None):
    raise ValueError("forward: layer_buffers is for a prefill (cache_len) with "
                     "scan_layers=False")
  if start_B is not None and cache_len is None:
    raise ValueError("forward: start_B places a prefill (cache_len) in its new cache")
  if start_B is not None:
    start_B = start_B.astype(jnp.int32)
  if write_at is not None and cache is None:
    raise ValueError("forward: write_at is an entry of the given cache; no cache was given")
  offset_B = prefix.boundaries_B if prefix is not None else jnp.zeros((B,), jnp.int32)
  if positions is None:
    first_B = offset_B + cache.lengths_B if cache is not None else offset_B
    if start_B is not None:  # left padding: the real tokens start at index start_B
      first_B = first_B - start_B
    positions = first_B[:, None] + jnp.arange(T, dtype=jnp.int32)[None, :]
  positions_BxT = positions.astype(jnp.int32)
  cache_start_B = cache.start_B if cache is not None else jnp.zeros((B,), jnp.int32)
  slots_BxT = positions_BxT - offset_B[:, None] + cache_start_B[:, None]  # own-cache entries
  if write_at is not None:  # every row writes at the common entry
    slots_BxT = jnp.broadcast_to(write_at + jnp.arange(T, dtype=jnp.int32), (B, T))

  x_BxTxD = jnp.take(embedding_VxD, tokens, axis=0).astype(dtype)
  x_BxTxD = constrain(x_BxTxD, ("batch", "seq", "act_embed"), rules)
  cos_BxTxE, sin_BxTxE = layers.rope_cos_sin(config, positions_BxT)
  if not scan_layers:
    # Computed once: XLA would otherwise fuse the cos/sin into every unrolled layer's rope
    # and evaluate them L times over (a few % of a small model's decode step on XLA:CPU).
    cos_BxTxE, sin_BxTxE = jax.lax.optimization_barrier((cos_BxTxE, sin_BxTxE))

  self_mask_BxTxT = positions_BxT[:, None, :] <= positions_BxT[:, :, None]
  if start_B is not None:  # no query attends to left padding
    self_mask_BxTxT &= (jnp.arange(T, dtype=jnp.int32)[None, None, :]
                        >= start_B[:, None, None])
  per_layer = cache is not None and isinstance(cache.k_LxBxKxSxE, tuple)
  prefix_per_layer = prefix is not None and isinstance(prefix.cache.k_LxBxKxSxE, tuple)
  if (per_layer or prefix_per_layer) and scan_layers:
    raise ValueError("forward: a cache or prefix of per-layer buffers (`unstack_layers`) needs "
                     "scan_layers=False")
  cache_mask_BxTxS = None
  if cache is not None:
    # Each layer writes the new keys/values into its cache first and then attends to the
    # cache alone: entry s is visible to a query at slot t iff s <= t. Written in place and
    # read after, a buffer needs no defensive copy (reading a cache that is then updated in
    # place makes XLA copy it).
    cache_slots_S = jnp.arange(cache.max_len, dtype=jnp.int32)
    cache_mask_BxTxS = ((cache_slots_S[None, None, :] <= slots_BxT[:, :, None])
                        & (cache_slots_S[None, None, :] >= cache_start_B[:, None, None]))
    rows_Bx1 = jnp.arange(B)[:, None]
  prefix_kv_all, prefix_mask_BxP = None, None
  if prefix is not None:
    prefix_slots_P = jnp.arange(prefix.cache.max_len, dtype=jnp.int32)
    # Prefix row r's start, for its M rows.
    prefix_start_B = jnp.repeat(prefix.cache.start_B, B // prefix.cache.start_B.shape[0])
    prefix_pos_BxP = prefix_slots_P[None, :] - prefix_start_B[:, None]
    prefix_mask_BxP = (prefix_pos_BxP >= 0) & (prefix_pos_BxP < prefix.boundaries_B[:, None])
    prefix_kv_all = (prefix.cache.k_LxBxKxSxE, prefix.cache.v_LxBxKxSxE)

  keys_ExS = cache is not None and cache.keys_ExS
  if keys_ExS and (write_at is None or not per_layer):
    raise ValueError("forward: keys laid out [B, K, E, S] (KVCache.keys_ExS) are for per-layer "
                     "buffers written at a common entry (write_at)")

  def write_keys_ExS(c_BxKxExS, n_BxTxKxE):  # per-layer key buffer [B, K, E, S]
    n_BxKxExT = jnp.transpose(n_BxTxKxE.astype(c_BxKxExS.dtype), (0, 2, 3, 1))
    c_BxKxExS = jax.lax.dynamic_update_slice(c_BxKxExS, n_BxKxExT, (0, 0, 0, write_at))
    return c_BxKxExS, c_BxKxExS

  def write_layer(c_BxKxSxE, n_BxTxKxE):  # per-layer buffer: stored = view
    n_BxTxKxE = n_BxTxKxE.astype(c_BxKxSxE.dtype)
    if write_at is not None:
      c_BxKxSxE = jax.lax.dynamic_update_slice(c_BxKxSxE, jnp.swapaxes(n_BxTxKxE, 1, 2),
                                               (0, 0, write_at, 0))
    else:
      c_BxKxSxE = c_BxKxSxE.at[rows_Bx1, :, slots_BxT].set(n_BxTxKxE, mode="drop")
    return c_BxKxSxE, c_BxKxSxE

  def write_stacked(i, c_LxBxKxSxE, n_BxTxKxE):  # every layer's buffer: store all, view one
    n_BxTxKxE = n_BxTxKxE.astype(c_LxBxKxSxE.dtype)
    if write_at is not None:
      c_LxBxKxSxE = jax.lax.dynamic_update_slice(
          c_LxBxKxSxE, jnp.swapaxes(n_BxTxKxE, 1, 2)[None], (i, 0, 0, write_at, 0))
    else:
      c_LxBxKxSxE = c_LxBxKxSxE.at[i, rows_Bx1, :, slots_BxT].set(n_BxTxKxE, mode="drop")
    return c_LxBxKxSxE, c_LxBxKxSxE[i]

  def layer(x_BxTxD, p, kv, prefix_kv, write):
    write = None if write is None else (write, write)
    if keys_ExS:
      write = (write_keys_ExS, write_layer)
    return _layer(config, rules, _cast(p, dtype), x_BxTxD, cos_BxTxE, sin_BxTxE, self_mask_BxTxT,
                  kv, cache_mask_BxTxS, prefix_kv, prefix_mask_BxP, write, keys_ExS,
                  prefix is not None and prefix.cache.keys_ExS)

  at = lambda kv, i: None if kv is None else (kv[0][i], kv[1][i])
  new_kv = None
  if scan_layers:
    def body(carry, layer_in):
      x_BxTxD, kv_all = carry
      p, i, prefix_kv = layer_in
      write = None if kv_all is None else functools.partial(write_stacked, i)
      x_BxTxD, out = layer(x_BxTxD, p, kv_all, prefix_kv, write)
      # The carry holds the stacked cache (updated in place); a prefill's entries leave as ys.
      return (x_BxTxD, out if kv_all is not None else None), (
          out if cache_len is not None else None)

    if remat:
      # Keep only each layer's input for the backward pass; recompute the rest of the layer
      # (its attention probabilities above all) instead of storing it.
      body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable)
    kv_all = None if cache is None else (cache.k_LxBxKxSxE, cache.v_LxBxKxSxE)
    (x_BxTxD, kv_all), ys = jax.lax.scan(
        body, (x_BxTxD, kv_all),
        (params["layers"], jnp.arange(config.num_layers), prefix_kv_all))
    new_kv = kv_all if cache is not None else ys
  else:
    if remat:
      raise ValueError("forward: remat needs scan_layers=True")
    # Static slices: of the weights, hoisted out of a decode loop; of per-layer cache tuples,
    # free. `params["layers"]` may also be a tuple of per-layer dicts (`unstack_params`).
    stacked = params["layers"]
    kv_all = None if cache is None else (cache.k_LxBxKxSxE, cache.v_LxBxKxSxE)
    outs = []
    for i in range(config.num_layers):
      p = stacked[i] if isinstance(stacked, tuple) else jax.tree.map(lambda a, i=i: a[i], stacked)
      if per_layer:
        x_BxTxD, out = layer(x_BxTxD, p, at(kv_all, i), at(prefix_kv_all, i), write_layer)
      elif cache is not None:
        x_BxTxD, kv_all = layer(x_BxTxD, p, kv_all, at(prefix_kv_all, i),
                                functools.partial(write_stacked, i))
        out = None
      else:
        x_BxTxD, out = layer(x_BxTxD, p, None, at(prefix_kv_all, i), None)
      outs.append(out)
    if per_layer:
      new_kv = (tuple(o[0] for o in outs), tuple(o[1] for o in outs))
    elif cache is not None:
      new_kv = kv_all
    elif cache_len is not None and not layer_buffers:
      new_kv = jax.tree.map(lambda *a: jnp.stack(a), *outs)
    elif cache_len is not None:
      new_kv = (tuple(o[0] for o in outs), tuple(o[1] for o in outs))

  if logits_at is not None:
    x_BxTxD = jnp.take_along_axis(x_BxTxD, logits_at.astype(jnp.int32)[:, :, None], axis=1)
  x_BxTxD = layers.rms_norm(x_BxTxD, params["final_norm"]["scale"].astype(dtype),
                            config.rms_norm_eps)
  if return_hidden:
    logits_BxTxV = x_BxTxD
  else:
    logits_BxTxV = unembed(config, params, x_BxTxD, rules)

  new_cache = None
  if cache_len is not None:
    # Entries 0..T-1 of a fresh cache: one dynamic_update_slice per array (no scatter).
    def fill(n_xBxTxKxE):  # [L, B, T, K, E] stacked, or [B, T, K, E] one layer
      n = jnp.swapaxes(n_xBxTxKxE, -3, -2)
      axes = CACHE_AXES[-n.ndim:]
      empty = jnp.zeros(n.shape[:-2] + (cache_len, n.shape[-1]), n.dtype)
      return jax.lax.dynamic_update_slice(constrain(empty, axes, rules), n, (0,) * n.ndim)
    k, v = new_kv
    if layer_buffers:
      k, v = tuple(map(fill, k)), tuple(map(fill, v))
    else:
      k, v = fill(k), fill(v)
    start_B = jnp.zeros((B,), jnp.int32) if start_B is None else start_B
    new_cache = KVCache(k, v, T - start_B, start_B)
  elif cache is not None:
    new_cache = cache.replace(
        k_LxBxKxSxE=new_kv[0], v_LxBxKxSxE=new_kv[1],
        lengths_B=jnp.maximum(cache.lengths_B, slots_BxT[:, -1] + 1 - cache_start_B))
  return logits_BxTxV, new_cache
