"""Pure building blocks of the decoder: RMSNorm, rotary embeddings, GQA attention, SwiGLU MLP.

Numerics follow Hugging Face transformers so that f32 logits agree to 1e-4:
- RMSNorm statistics are computed in f32; the normalized value is cast back to the input dtype
  before the scale multiplies it (HF `LlamaRMSNorm`).
- Rotary frequencies and cos/sin are computed in f32 and cast to the activation dtype (HF
  `rotate_half` convention: the head dim is split in two halves, not interleaved).
- Attention logits and softmax are f32; probabilities are cast back to the value dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models.config import ModelConfig

# Large negative bias for masked attention logits; finite so fully masked rows (padding) give a
# uniform distribution instead of NaN.
_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
# Queries per chunk of `attention` over long sequences (prefills, training forward passes).
QUERY_CHUNK = 1024
# Causal `attention` of up to QUERY_CHUNK queries runs them in blocks of at least this many
# (at most CAUSAL_MAX_BLOCKS blocks), each reading only the keys up to its last query.
CAUSAL_BLOCK = 64
CAUSAL_MAX_BLOCKS = 8


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
  """RMSNorm over the last axis (HF: normalize in f32, cast, then scale)."""
  x32 = x.astype(jnp.float32)
  normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return _lead(scale, x.ndim).astype(x.dtype) * normed.astype(x.dtype)


def _lead(a: jax.Array, ndim: int) -> jax.Array:
  """`a` with leading unit axes up to `ndim` (explicit broadcasting; rank promotion is off)."""
  return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """Inverse rotary frequencies [E/2] in f32, with llama3 scaling if configured."""
  E = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, E, 2, dtype=np.int64).astype(np.float32)
                                          / E))
  inv_freq = inv_freq.astype(np.float32)
  rs = config.rope_scaling
  if rs is None:
    return inv_freq
  # Llama 3.1 scaling (HF `_compute_llama3_parameters`): long wavelengths are divided by
  # `factor`, short ones kept, and the band between is interpolated smoothly.
  low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor
  high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq)
  smooth = ((rs.original_max_position_embeddings / wavelen - rs.low_freq_factor)
            / (rs.high_freq_factor - rs.low_freq_factor))
  smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(config: ModelConfig, positions_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos, sin [B, T, E] in f32 for integer positions."""
  inv_freq = jnp.asarray(rope_inv_freq(config))
  freqs_BxTxE2 = positions_BxT.astype(jnp.float32)[..., None] * inv_freq[None, None, :]
  # Each frequency once (the two halves of E repeat them).
  cos_BxTxE2, sin_BxTxE2 = jnp.cos(freqs_BxTxE2), jnp.sin(freqs_BxTxE2)
  return (jnp.concatenate([cos_BxTxE2, cos_BxTxE2], axis=-1),
          jnp.concatenate([sin_BxTxE2, sin_BxTxE2], axis=-1))


def apply_rope(x_BxTxNxE: jax.Array, cos_BxTxE: jax.Array, sin_BxTxE: jax.Array) -> jax.Array:
  """Rotates each head of x by position (HF `rotate_half` layout)."""
  cos = cos_BxTxE[:, :, None, :].astype(x_BxTxNxE.dtype)
  sin = sin_BxTxE[:, :, None, :].astype(x_BxTxNxE.dtype)
  half = x_BxTxNxE.shape[-1] // 2
  rotated = jnp.concatenate([-x_BxTxNxE[..., half:], x_BxTxNxE[..., :half]], axis=-1)
  return x_BxTxNxE * cos + rotated * sin


def attention(q_BxTxHxE: jax.Array, k_BxSxKxE: jax.Array, v_BxSxKxE: jax.Array,
              mask_BxTxS: jax.Array, query_chunk: int = QUERY_CHUNK,
              causal: bool = False) -> jax.Array:
  """Grouped-query attention; `mask` is True where a query may attend to a key.

  `causal` promises self-attention (S = T) whose mask shows no query a key after it (key
  index > query index). Up to `query_chunk` queries then run in blocks of about CAUSAL_BLOCK
  queries, each reading only the keys up to its last query: the masked upper triangle is
  mostly skipped (a 272-token pass does 62% of the scores and values' work in 4 blocks), and
  the results are those of one pass up to summation order, except for queries that may attend
  to no key (left padding), which average the values of their block's keys instead of all.

  With more than `query_chunk` queries, the queries are processed `query_chunk` at a time
  in a `lax.map` whose body is rematerialized in the backward pass: the [B, H, T, S] f32
  logits and probabilities of a long sequence are never live at once, only those of one
  chunk (a 4096-token prefill of the 7B config held 14 GiB of them per device). Every query
  still sees every key, so the results are those of one pass. The last chunk is padded with
  queries that see nothing and are dropped.
  """
  B, T, H, E = q_BxTxHxE.shape
  if causal and k_BxSxKxE.shape[1] != T:
    raise ValueError(f"attention(causal=True) is self-attention: {T} queries but "
                     f"{k_BxSxKxE.shape[1]} keys (k {k_BxSxKxE.shape})")
  if T <= query_chunk:
    if causal:
      return _causal_blocks(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_BxTxS)
    return _attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_BxTxS)
  n, S = -(-T // query_chunk), k_BxSxKxE.shape[1]
  pad = n * query_chunk - T
  q_BxPxHxE = jnp.pad(q_BxTxHxE, ((0, 0), (0, pad), (0, 0), (0, 0)))
  mask_BxPxS = jnp.pad(mask_BxTxS, ((0, 0), (0, pad), (0, 0)))
  q_NxBxCxHxE = jnp.moveaxis(q_BxPxHxE.reshape(B, n, query_chunk, H, E), 1, 0)
  mask_NxBxCxS = jnp.moveaxis(mask_BxPxS.reshape(B, n, query_chunk, S), 1, 0)
  chunk = jax.checkpoint(lambda qm: _attention(qm[0], k_BxSxKxE, v_BxSxKxE, qm[1]))
  out_NxBxCxHxE = jax.lax.map(chunk, (q_NxBxCxHxE, mask_NxBxCxS))
  return jnp.moveaxis(out_NxBxCxHxE, 0, 1).reshape(B, n * query_chunk, H, E)[:, :T]


def _causal_blocks(q_BxTxHxE: jax.Array, k_BxTxKxE: jax.Array, v_BxTxKxE: jax.Array,
                   mask_BxTxT: jax.Array) -> jax.Array:
  """Causal `attention` in blocks of queries, block i reading keys [0, end of block i)."""
  T = q_BxTxHxE.shape[1]
  size = -(-T // max(1, min(CAUSAL_MAX_BLOCKS, T // CAUSAL_BLOCK)))
  outs = [_attention(q_BxTxHxE[:, s:s + size], k_BxTxKxE[:, :s + size],
                     v_BxTxKxE[:, :s + size], mask_BxTxT[:, s:s + size, :s + size])
          for s in range(0, T, size)]
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)


def _attention(q_BxTxHxE: jax.Array, k_BxSxKxE: jax.Array, v_BxSxKxE: jax.Array,
               mask_BxTxS: jax.Array) -> jax.Array:
  """`attention` in one pass over all queries.

  The products take their operands heads-major ([B, K, G, T, E] and [B, K, S, E]): the
  transposes are of the small q/k/v, and XLA:CPU's dots on the [B, T, K, E] layout ran at half
  the speed.
  """
  B, T, H, E = q_BxTxHxE.shape
  K = k_BxSxKxE.shape[2]
  q_BxKxGxTxE = q_BxTxHxE.reshape(B, T, K, H // K, E).transpose(0, 2, 3, 1, 4)
  k_BxKxSxE = jnp.swapaxes(k_BxSxKxE, 1, 2)
  v_BxKxSxE = jnp.swapaxes(v_BxSxKxE, 1, 2)
  logits_BxKxGxTxS = jnp.einsum("BKGTE,BKSE->BKGTS", q_BxKxGxTxE, k_BxKxSxE,
                                preferred_element_type=jnp.float32) / math.sqrt(E)
  logits_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], logits_BxKxGxTxS, _MASK_VALUE)
  probs = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(v_BxSxKxE.dtype)
  out_BxKxGxTxE = jnp.einsum("BKGTS,BKSE->BKGTE", probs, v_BxKxSxE)
  return out_BxKxGxTxE.transpose(0, 3, 1, 2, 4).reshape(B, T, H, E)


def attention_parts(q_BxTxHxE: jax.Array,
                    parts: Sequence[tuple[jax.Array, jax.Array, jax.Array]],
                    prefix: tuple[jax.Array, jax.Array, jax.Array] | None = None,
                    first_keys_ExS: bool = False, prefix_keys_ExS: bool = False) -> jax.Array:
  """Grouped-query attention over several key/value sets as one softmax over their union.

  Equals `attention` over the concatenated keys/values, without materializing the
  concatenation: a decode step reads its cache and its own new keys in place, and forked rows
  read a shared prefix in place. Keys/values are laid out head-major ([.., K, S, E], the KV
  cache's layout), so each head's keys are one contiguous matrix.

  Args:
    q_BxTxHxE: queries.
    parts: per-row (k_BxKxSxE, v_BxKxSxE, mask_BxTxS) sets (S may differ between parts); mask
      is True where a query may attend to a key.
    prefix: (k_RxKxPxE, v_RxKxPxE, mask_BxP) shared by groups of rows: row b = r * M + m
      (M = B // R) reads prefix row r where mask_BxP[b] is True (for all of the row's queries).
      The einsum batches over R, so the M rows of a group share each prefix key: the prefix is
      never copied per row.
    first_keys_ExS: the first part's keys are laid out [B, K, E, S] (`KVCache.keys_ExS`).
    prefix_keys_ExS: the prefix's keys are laid out [R, K, E, P].
  """
  B, T, H, E = q_BxTxHxE.shape
  K = parts[0][0].shape[1]
  G = H // K
  scale = 1.0 / math.sqrt(E)
  q_BxKxGxTxE = jnp.transpose(q_BxTxHxE.reshape(B, T, K, G, E), (0, 2, 3, 1, 4))
  # Each part's logits stay in its own layout; only per-query statistics [B, K, G, T] and
  # outputs [B, K, G, T, E] are brought together (a softmax over the union in two passes).
  logits = []
  for i, (k_BxKxSxE, _, mask_BxTxS) in enumerate(parts):
    keys = "BKES" if i == 0 and first_keys_ExS else "BKSE"
    logits_BxKxGxTxS = jnp.einsum(f"BKGTE,{keys}->BKGTS", q_BxKxGxTxE, k_BxKxSxE,
                                  preferred_element_type=jnp.float32) * scale
    logits.append(jnp.where(mask_BxTxS[:, None, None], logits_BxKxGxTxS, _MASK_VALUE))
  if prefix is not None:
    k_RxKxPxE, v_RxKxPxE, mask_BxP = prefix
    R = k_RxKxPxE.shape[0]
    M = B // R
    # [R, K, M*G*T, E]: a group's queries against its prefix row, one matrix per head.
    to_group = lambda a: jnp.transpose(a.reshape((R, M) + a.shape[1:]),
                                       (0, 2, 1, 3, 4, 5)).reshape(R, K, M * G * T, -1)
    from_group = lambda a: jnp.transpose(a.reshape(R, K, M, G, T),
                                         (0, 2, 1, 3, 4)).reshape(B, K, G, T)
    mask_RxKxMGTxP = to_group(jnp.broadcast_to(mask_BxP[:, None, None, None, :],
                                               (B, K, G, T, mask_BxP.shape[1])))
    keys = "RKEP" if prefix_keys_ExS else "RKPE"
    prefix_logits_RxKxQxP = jnp.einsum(f"RKQE,{keys}->RKQP", to_group(q_BxKxGxTxE), k_RxKxPxE,
                                       preferred_element_type=jnp.float32) * scale
    prefix_logits_RxKxQxP = jnp.where(mask_RxKxMGTxP, prefix_logits_RxKxQxP, _MASK_VALUE)
  max_BxKxGxT = functools.reduce(jnp.maximum, [jnp.max(a, axis=-1) for a in logits])
  if prefix is not None:
    max_BxKxGxT = jnp.maximum(max_BxKxGxT, from_group(jnp.max(prefix_logits_RxKxQxP, axis=-1)))
  sum_BxKxGxT = jnp.zeros((B, K, G, T), jnp.float32)
  out_BxKxGxTxE = jnp.zeros((B, K, G, T, E), jnp.float32)
  for (_, v_BxKxSxE, _), logits_BxKxGxTxS in zip(parts, logits):
    exp_BxKxGxTxS = jnp.exp(logits_BxKxGxTxS - max_BxKxGxT[..., None])
    sum_BxKxGxT += jnp.sum(exp_BxKxGxTxS, axis=-1)
    out_BxKxGxTxE += jnp.einsum("BKGTS,BKSE->BKGTE", exp_BxKxGxTxS.astype(v_BxKxSxE.dtype),
                                v_BxKxSxE, preferred_element_type=jnp.float32)
  if prefix is not None:
    max_RxKxQ = to_group(max_BxKxGxT[..., None])[..., 0]
    exp_RxKxQxP = jnp.exp(prefix_logits_RxKxQxP - max_RxKxQ[..., None])
    sum_BxKxGxT += from_group(jnp.sum(exp_RxKxQxP, axis=-1))
    out_RxKxQxE = jnp.einsum("RKQP,RKPE->RKQE", exp_RxKxQxP.astype(v_RxKxPxE.dtype), v_RxKxPxE,
                             preferred_element_type=jnp.float32)
    out_BxKxGxTxE += jnp.transpose(out_RxKxQxE.reshape(R, K, M, G, T, E),
                                   (0, 2, 1, 3, 4, 5)).reshape(B, K, G, T, E)
  out_BxKxGxTxE = out_BxKxGxTxE / sum_BxKxGxT[..., None]
  out_BxTxHxE = jnp.transpose(out_BxKxGxTxE, (0, 3, 1, 2, 4)).reshape(B, T, H, E)
  return out_BxTxHxE.astype(q_BxTxHxE.dtype)


def swiglu(x_BxTxD: jax.Array, gate_DxF: jax.Array, up_DxF: jax.Array,
           down_FxD: jax.Array) -> jax.Array:
  """down(silu(gate(x)) * up(x))."""
  gate_BxTxF = jnp.einsum("BTD,DF->BTF", x_BxTxD, gate_DxF)
  up_BxTxF = jnp.einsum("BTD,DF->BTF", x_BxTxD, up_DxF)
  return jnp.einsum("BTF,FD->BTD", jax.nn.silu(gate_BxTxF) * up_BxTxF, down_FxD)
