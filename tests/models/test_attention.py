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
