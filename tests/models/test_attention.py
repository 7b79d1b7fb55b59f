"""Query-chunked attention (long prefills and training passes) equals one pass over all queries."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models import layers

TOL = 1e-6  # f32: each query's softmax is computed alike; only fusion order may differ.


def _inputs(B=2, T=16, H=4, K=2, E=8, seed=0):
  q, k, v = (jax.random.normal(key, (B, T, n, E), jnp.float32)
             for key, n in zip(jax.random.split(jax.random.key(seed), 3), (H, K, K)))
  positions = jnp.arange(T)
  mask_BxTxS = jnp.broadcast_to(positions[None, :] <= positions[:, None], (B, T, T))
  mask_BxTxS = mask_BxTxS & (positions[None, None, :] >= jnp.asarray([0, 5])[:, None, None])
  return q, k, v, mask_BxTxS


def test_chunked_attention_equals_one_pass():
  q, k, v, mask = _inputs()
  want = layers._attention(q, k, v, mask)
  got = jax.jit(functools.partial(layers.attention, query_chunk=4))(q, k, v, mask)
  np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
  # Not a multiple of the chunk: the last chunk is padded.
  got = jax.jit(functools.partial(layers.attention, query_chunk=5))(q, k, v, mask)
  np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
  # No more queries than a chunk: one pass.
  np.testing.assert_array_equal(layers.attention(q, k, v, mask, query_chunk=16), want)


def test_chunked_attention_gradients_equal_one_pass():
  q, k, v, mask = _inputs(seed=1)
  cotangent = jax.random.normal(jax.random.key(9), q.shape)
  loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v, mask) * cotangent)
  want = jax.grad(loss(layers._attention), argnums=(0, 1, 2))(q, k, v)
  chunked = functools.partial(layers.attention, query_chunk=5)  # 4 chunks, the last padded
  got = jax.jit(jax.grad(loss(chunked), argnums=(0, 1, 2)))(q, k, v)
  # k/v gradients add the chunks' contributions in another order (gradients up to ~5 here).
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=0, atol=2e-6)


def test_causal_blocks_equal_one_pass():
  # 150 queries: 2 blocks of 75 (CAUSAL_BLOCK 64); 272: 4 blocks of 68; 40: one block.
  for T, seed in ((150, 2), (272, 3), (40, 4)):
    q, k, v, mask = _inputs(T=T, seed=seed)
    want = layers._attention(q, k, v, mask)
    got = jax.jit(functools.partial(layers.attention, causal=True))(q, k, v, mask)
    # Row 1's first 5 queries (left padding) may attend to no key: they average the values
    # their block reads instead of all of them, and nothing reads them.
    padding = ~jnp.any(mask, axis=-1)
    assert int(jnp.sum(padding)) == 5 and bool(jnp.all(jnp.isfinite(got)))
    got, want = (jnp.where(padding[..., None, None], 0.0, x) for x in (got, want))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=f"T={T}")
    cotangent = jax.random.normal(jax.random.key(seed), q.shape)
    cotangent = jnp.where(padding[..., None, None], 0.0, cotangent)
    loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v, mask) * cotangent)
    grads_want = jax.grad(loss(layers._attention), argnums=(0, 1, 2))(q, k, v)
    causal = functools.partial(layers.attention, causal=True)
    grads = jax.jit(jax.grad(loss(causal), argnums=(0, 1, 2)))(q, k, v)
    for g, w in zip(grads, grads_want):  # k/v sum the blocks' contributions in another order
      np.testing.assert_allclose(g, w, rtol=0, atol=2e-6, err_msg=f"T={T}")


def test_causal_blocks_read_only_earlier_keys():
  # Keys after a block's last query are not read: NaNs there leave the outputs finite, and the
  # rows' outputs before the NaN keys are those of the clean inputs.
  q, k, v, mask = _inputs(T=272, seed=5)
  want = layers.attention(q, k, v, mask, causal=True)
  k_nan, v_nan = k.at[:, 200:].set(jnp.nan), v.at[:, 200:].set(jnp.nan)
  got = layers.attention(q, k_nan, v_nan, mask, causal=True)
  np.testing.assert_array_equal(got[:, :136], want[:, :136])  # blocks 1-2 end at key 136
  assert bool(jnp.all(jnp.isnan(layers._attention(q, k_nan, v_nan, mask)[:, :136])))


def test_causal_attention_refuses_cross_attention():
  q, k, v, mask = _inputs(T=16)
  with np.testing.assert_raises_regex(ValueError, "self-attention: 8 queries but 16 keys"):
    layers.attention(q[:, :8], k, v, mask[:, :8], causal=True)
