"""The decoder forward pass: pure function of (config, params, tokens, positions, cache).

Layers are scanned (`lax.scan` over the stacked `layers` params), so compile time does not grow
with depth. The KV cache is an explicit pytree. Inside the scan it is only read: new tokens
attend to the cached entries and to each other (one softmax over both, `layers.attention_parts`),
and their keys/values leave the scan as outputs, written into the cache by one scatter after it.
A jitted caller that donates the cache (or carries it in a loop) updates it in place; nothing
copies the whole cache per layer or per step.

Forking: with a `Prefix`, groups of rows also attend to a shared read-only cache (a trunk of
sequences already processed) up to a per-row boundary, and keep only what follows the boundary
in their own cache; the trunk is read in place, never copied per row.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from mrt_jax.models import layers
from mrt_jax.models.config import ModelConfig
from mrt_jax.models.sharding import TRAIN_RULES, Rules, constrain
from mrt_jax.models.weights import Params

# Logical axes of the cache arrays [L, B, S, K, E].
CACHE_AXES = ("layers", "batch", "cache_seq", "kv_heads", "head_dim")


@flax.struct.dataclass
class KVCache:
  """Keys/values of every layer; row b holds positions [0, lengths[b]) of its sequence.

  Entry s of row b is the key/value of the token at rope position s. Entries at or beyond
  `lengths[b]` are garbage (e.g. right-padding of a prefill) and are never attended to, because
  a query at position p only sees entries s <= p.
  """
  k_LxBxSxKxE: jax.Array
  v_LxBxSxKxE: jax.Array
  lengths_B: jax.Array  # int32

  @property
  def max_len(self) -> int:
    return self.k_LxBxSxKxE.shape[2]


@flax.struct.dataclass
class Prefix:
  """A shared read-only cache that groups of rows attend to before their own cache (forking).

  With R = `cache` rows and a batch of B = R * M rows, row b belongs to prefix row b // M and
  sees that row's entries at positions < `boundaries_B[b]`. The row's own cache then holds what
  follows the boundary: its own entry j is the token at rope position boundaries_B[b] + j.
  """
  cache: KVCache
  boundaries_B: jax.Array  # int32


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
  """An empty cache for `batch` rows of up to `max_len` positions."""
  shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch,), jnp.int32))


def _layer(config: ModelConfig, rules: Rules, p: dict[str, jax.Array], x_BxTxD: jax.Array,
           cos_BxTxE: jax.Array, sin_BxTxE: jax.Array, self_mask_BxTxT: jax.Array,
           kv: tuple[jax.Array, jax.Array] | None, cache_mask_BxTxS: jax.Array | None,
           prefix_kv: tuple[jax.Array, jax.Array] | None, prefix_mask_BxP: jax.Array | None):
  """One decoder block; returns the new activations and the new tokens' (k, v) [B, T, K, E].

  The new tokens attend to each other where `self_mask` allows, to this layer's cache `kv`
  (k, v) [B, S, K, E] (or None) where `cache_mask` allows, and to this layer's prefix
  `prefix_kv` (k, v) [R, P, K, E] (or None) where `prefix_mask` allows.
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

  if kv is None:
    attn_BxTxHxE = layers.attention(q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, self_mask_BxTxT)
  else:
    dtype = q_BxTxHxE.dtype
    parts = [(kv[0].astype(dtype), kv[1].astype(dtype), cache_mask_BxTxS),
             (k_BxTxKxE, v_BxTxKxE, self_mask_BxTxT)]
    prefix = None
    if prefix_kv is not None:
      prefix = (prefix_kv[0].astype(dtype), prefix_kv[1].astype(dtype), prefix_mask_BxP)
    attn_BxTxHxE = layers.attention_parts(q_BxTxHxE, parts, prefix)
  out_BxTxD = jnp.einsum("BTHE,HED->BTD", attn_BxTxHxE, p["o"])
  if c.o_bias:
    out_BxTxD = out_BxTxD + p["o_bias"][None, None]
  x_BxTxD = constrain(x_BxTxD + out_BxTxD, ("batch", "seq", "act_embed"), rules)

  h_BxTxD = layers.rms_norm(x_BxTxD, p["mlp_norm"], c.rms_norm_eps)
  x_BxTxD = x_BxTxD + layers.swiglu(h_BxTxD, p["gate"], p["up"], p["down"])
  return constrain(x_BxTxD, ("batch", "seq", "act_embed"), rules), (k_BxTxKxE, v_BxTxKxE)


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
            logits_at: jax.Array | None = None, return_hidden: bool = False,
            remat: bool = False) -> tuple[jax.Array, KVCache | None]:
  """Runs the decoder.

  Args:
    config: the architecture.
    params: the param pytree (`weights.param_specs` structure), f32 or bf16.
    tokens: int32 [B, T].
    positions: int32 [B, T] rope positions; defaults to 0..T-1 without a cache, to
      `cache.lengths_B[:, None] + 0..T-1` with one, and to `prefix.boundaries_B[:, None] +
      cache.lengths_B[:, None] + 0..T-1` with a prefix. Positions of one row must increase.
    cache: a `KVCache` or None. With a cache, the new tokens' keys/values are written at their
      positions and the tokens attend to every cached entry at a position <= their own. Without
      one, tokens attend causally among themselves (right padding is harmless: padding comes
      after the real tokens).
    compute_dtype: dtype activations are computed in; defaults to the params' dtype (each
      layer's weights are cast inside the scan, never the whole model at once).
    rules: logical-axis sharding rules for activation constraints under an ambient mesh.
    prefix: a `Prefix` (requires `cache`): rows also attend to the prefix's entries before their
      boundary, and the token at position p goes to own-cache entry p - boundary.
    logits_at: int32 [B, N] token indices (into T) at which to compute logits; default: every
      token. A prefill needs only each row's last prompt token, and [B, T, V] logits of long
      prompts would not fit in memory.

    return_hidden: return the final-normed hidden states [B, T, D] instead of logits; with
      `unembed` a caller can project them to the vocab a chunk of T at a time (the learner's
      log-probs of long sequences, where [B, T, V] logits would not fit).

    remat: rematerialize each layer in the backward pass (training memory: L layer inputs
      [B, T, D] are stored instead of every activation).

  Returns:
    logits [B, T, V] (or [B, N, V] with `logits_at`) in the compute dtype, and the updated
    cache (None without one) whose `lengths_B` is the maximum of the old lengths and the last
    written entry + 1.
  """
  B, T = tokens.shape
  embedding_VxD = params["embed"]["embedding"]
  dtype = compute_dtype or embedding_VxD.dtype
  if prefix is not None and cache is None:
    raise ValueError("forward: a prefix needs a cache for the rows' own entries")
  offset_B = prefix.boundaries_B if prefix is not None else jnp.zeros((B,), jnp.int32)
  if positions is None:
    start_B = offset_B + cache.lengths_B if cache is not None else offset_B
    positions = start_B[:, None] + jnp.arange(T, dtype=jnp.int32)[None, :]
  positions_BxT = positions.astype(jnp.int32)
  slots_BxT = positions_BxT - offset_B[:, None]  # own-cache entry of each new token

  x_BxTxD = jnp.take(embedding_VxD, tokens, axis=0).astype(dtype)
  x_BxTxD = constrain(x_BxTxD, ("batch", "seq", "act_embed"), rules)
  cos_BxTxE, sin_BxTxE = layers.rope_cos_sin(config, positions_BxT)

  self_mask_BxTxT = positions_BxT[:, None, :] <= positions_BxT[:, :, None]
  cache_kv_all, cache_mask_BxTxS = None, None
  if cache is not None:
    # A cached entry is visible if it precedes the query's slot and no new token overwrites it.
    cache_slots_S = jnp.arange(cache.max_len, dtype=jnp.int32)
    overwritten_BxS = jnp.any(cache_slots_S[None, None, :] == slots_BxT[:, :, None], axis=1)
    cache_mask_BxTxS = ((cache_slots_S[None, None, :] <= slots_BxT[:, :, None])
                        & ~overwritten_BxS[:, None, :])
    cache_kv_all = (cache.k_LxBxSxKxE, cache.v_LxBxSxKxE)
  prefix_kv_all, prefix_mask_BxP = None, None
  if prefix is not None:
    prefix_pos_P = jnp.arange(prefix.cache.max_len, dtype=jnp.int32)
    prefix_mask_BxP = prefix_pos_P[None, :] < prefix.boundaries_B[:, None]
    prefix_kv_all = (prefix.cache.k_LxBxSxKxE, prefix.cache.v_LxBxSxKxE)

  def body(x_BxTxD, layer_in):
    p, kv, prefix_kv = layer_in
    x_BxTxD, new_kv = _layer(config, rules, _cast(p, dtype), x_BxTxD, cos_BxTxE, sin_BxTxE,
                             self_mask_BxTxT, kv, cache_mask_BxTxS, prefix_kv, prefix_mask_BxP)
    return x_BxTxD, (new_kv if cache is not None else None)

  if remat:
    # Keep only each layer's input for the backward pass; recompute the rest of the layer
    # (its attention probabilities above all) instead of storing it.
    body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable)
  x_BxTxD, new_kv = jax.lax.scan(body, x_BxTxD,
                                 (params["layers"], cache_kv_all, prefix_kv_all))

  if logits_at is not None:
    x_BxTxD = jnp.take_along_axis(x_BxTxD, logits_at.astype(jnp.int32)[:, :, None], axis=1)
  x_BxTxD = layers.rms_norm(x_BxTxD, params["final_norm"]["scale"].astype(dtype),
                            config.rms_norm_eps)
  if return_hidden:
    logits_BxTxV = x_BxTxD
  else:
    logits_BxTxV = unembed(config, params, x_BxTxD, rules)

  new_cache = None
  if cache is not None:
    # All layers' new entries in one scatter at each row's slots (out-of-range writes dropped).
    rows_Bx1 = jnp.arange(B)[:, None]
    k_LxBxSxKxE = cache.k_LxBxSxKxE.at[:, rows_Bx1, slots_BxT].set(
        new_kv[0].astype(cache.k_LxBxSxKxE.dtype), mode="drop")
    v_LxBxSxKxE = cache.v_LxBxSxKxE.at[:, rows_Bx1, slots_BxT].set(
        new_kv[1].astype(cache.v_LxBxSxKxE.dtype), mode="drop")
    lengths_B = jnp.maximum(cache.lengths_B, slots_BxT[:, -1] + 1)
    new_cache = KVCache(k_LxBxSxKxE, v_LxBxSxKxE, lengths_B)
  return logits_BxTxV, new_cache
