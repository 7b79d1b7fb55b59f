"""Chunked per-token log-probs equal log-softmax of the full logits (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np

from learner_fixtures import tiny_model
from mrt_jax import models
from mrt_jax.learner.logprobs import token_logprobs


def _reference(config, params, tokens, temperature):
  logits, _ = models.forward(config, params, tokens[:, :-1])
  logp_all = jax.nn.log_softmax(logits / temperature, axis=-1)
  logp = jnp.take_along_axis(logp_all, tokens[:, 1:, None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  pad = jnp.zeros((tokens.shape[0], 1))
  return jnp.concatenate([pad, logp], 1), jnp.concatenate([pad, entropy], 1)


def test_chunked_equals_full_logits():
  config, params = tiny_model()
  tokens = jax.random.randint(jax.random.key(0), (3, 23), 0, config.vocab_size)
  ref_lp, ref_ent = _reference(config, params, tokens, 0.7)
  for chunk in (5, 22, 512):  # Uneven chunks (padding), exact fit, one chunk.
    lp, ent = token_logprobs(config, params, tokens, temperature=0.7, chunk=chunk)
    np.testing.assert_allclose(lp, ref_lp, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ent, ref_ent, rtol=0, atol=1e-5)
  weights = jax.random.normal(jax.random.key(1), tokens.shape)
  # Jitted: op-by-op, the backward pass of the chunk loop takes most of a minute on CPU.
  g_ref = jax.jit(jax.grad(lambda p: jnp.sum(_reference(config, p, tokens, 0.7)[0] * weights)))(
      params)
  g = jax.jit(jax.grad(lambda p: jnp.sum(token_logprobs(config, p, tokens, temperature=0.7,
                                                        chunk=5)[0] * weights)))(params)
  for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
