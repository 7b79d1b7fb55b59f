"""Pure building blocks of the decoder: RMSNorm, rotary embeddings, GQA attention, SwiGLU MLP.

Numerics follow Hugging Face transformers so that f32 logits agree to 1e-4:
- RMSNorm statistics are computed in f32; the normalized value is cast back to the input dtype
  before the scale multiplies it (HF `LlamaRMSNorm`).
- Rotary frequencies and cos/sin are computed in f32 and cast to the activation dtype (HF
  `rotate_half` convention: the head dim is split in two halves, not interleaved).
- Attention logits and softmax are f32; probabilities are cast back to the value dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models.config import ModelConfig

# Large negative bias for masked attention logits; finite so fully masked rows (padding) give a
# uniform distribution instead of NaN.
_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


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
  emb_BxTxE = jnp.concatenate([freqs_BxTxE2, freqs_BxTxE2], axis=-1)
  return jnp.cos(emb_BxTxE), jnp.sin(emb_BxTxE)


def apply_rope(x_BxTxNxE: jax.Array, cos_BxTxE: jax.Array, sin_BxTxE: jax.Array) -> jax.Array:
  """Rotates each head of x by position (HF `rotate_half` layout)."""
  cos = cos_BxTxE[:, :, None, :].astype(x_BxTxNxE.dtype)
  sin = sin_BxTxE[:, :, None, :].astype(x_BxTxNxE.dtype)
  half = x_BxTxNxE.shape[-1] // 2
  rotated = jnp.concatenate([-x_BxTxNxE[..., half:], x_BxTxNxE[..., :half]], axis=-1)
  return x_BxTxNxE * cos + rotated * sin


def attention(q_BxTxHxE: jax.Array, k_BxSxKxE: jax.Array, v_BxSxKxE: jax.Array,
              mask_BxTxS: jax.Array) -> jax.Array:
  """Grouped-query attention; `mask` is True where a query may attend to a key."""
  B, T, H, E = q_BxTxHxE.shape
  K = k_BxSxKxE.shape[2]
  q_BxTxKxGxE = q_BxTxHxE.reshape(B, T, K, H // K, E)
  logits_BxKxGxTxS = jnp.einsum("BTKGE,BSKE->BKGTS", q_BxTxKxGxE, k_BxSxKxE,
                                preferred_element_type=jnp.float32) / math.sqrt(E)
  logits_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], logits_BxKxGxTxS, _MASK_VALUE)
  probs = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(v_BxSxKxE.dtype)
  out_BxTxKxGxE = jnp.einsum("BKGTS,BSKE->BTKGE", probs, v_BxSxKxE)
  return out_BxTxKxGxE.reshape(B, T, H, E)


def attention_with_prefix(q_BxTxHxE: jax.Array, k_BxSxKxE: jax.Array, v_BxSxKxE: jax.Array,
                          mask_BxTxS: jax.Array, k_RxPxKxE: jax.Array, v_RxPxKxE: jax.Array,
                          mask_BxP: jax.Array) -> jax.Array:
  """Attention over a shared prefix cache and each row's own cache, as one softmax.

  Rows are grouped by prefix row: row b = r * M + m (M = B // R) reads prefix row r. The prefix
  is read once per group, never copied per row: the einsum batches over R and the M rows of a
  group share each prefix key. Logits of both parts are concatenated before one f32 softmax, so
  this equals `attention` over the concatenation [prefix entries, own entries].

  Args:
    q_BxTxHxE: queries.
    k_BxSxKxE, v_BxSxKxE: each row's own keys/values; `mask_BxTxS` is True where visible.
    k_RxPxKxE, v_RxPxKxE: the shared prefix keys/values; `mask_BxP` is True where row b may see
      prefix entry p (the same for all of the row's queries).
  """
  B, T, H, E = q_BxTxHxE.shape
  R, P, K, _ = k_RxPxKxE.shape
  M, G = B // R, H // K
  q_RxMxTxKxGxE = q_BxTxHxE.reshape(R, M, T, K, G, E)
  pre_RxMxKxGxTxP = jnp.einsum("RMTKGE,RPKE->RMKGTP", q_RxMxTxKxGxE, k_RxPxKxE,
                               preferred_element_type=jnp.float32) / math.sqrt(E)
  own_BxKxGxTxS = jnp.einsum("BTKGE,BSKE->BKGTS", q_BxTxHxE.reshape(B, T, K, G, E), k_BxSxKxE,
                             preferred_element_type=jnp.float32) / math.sqrt(E)
  pre_BxKxGxTxP = jnp.where(mask_BxP[:, None, None, None, :],
                            pre_RxMxKxGxTxP.reshape(B, K, G, T, P), _MASK_VALUE)
  own_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], own_BxKxGxTxS, _MASK_VALUE)
  probs = jax.nn.softmax(jnp.concatenate([pre_BxKxGxTxP, own_BxKxGxTxS], axis=-1), axis=-1)
  probs_pre_RxMxKxGxTxP = probs[..., :P].reshape(R, M, K, G, T, P).astype(v_RxPxKxE.dtype)
  probs_own_BxKxGxTxS = probs[..., P:].astype(v_BxSxKxE.dtype)
  out_RxMxTxKxGxE = jnp.einsum("RMKGTP,RPKE->RMTKGE", probs_pre_RxMxKxGxTxP, v_RxPxKxE)
  out_BxTxKxGxE = jnp.einsum("BKGTS,BSKE->BTKGE", probs_own_BxKxGxTxS, v_BxSxKxE)
  return (out_RxMxTxKxGxE.reshape(B, T, K, G, E) + out_BxTxKxGxE).reshape(B, T, H, E)


def swiglu(x_BxTxD: jax.Array, gate_DxF: jax.Array, up_DxF: jax.Array,
           down_FxD: jax.Array) -> jax.Array:
  """down(silu(gate(x)) * up(x))."""
  gate_BxTxF = jnp.einsum("BTD,DF->BTF", x_BxTxD, gate_DxF)
  up_BxTxF = jnp.einsum("BTD,DF->BTF", x_BxTxD, up_DxF)
  return jnp.einsum("BTF,FD->BTD", jax.nn.silu(gate_BxTxF) * up_BxTxF, down_FxD)
