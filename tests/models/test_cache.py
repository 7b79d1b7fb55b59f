"""Decoding token by token through the KV cache reproduces the full forward (f32, 1e-5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax import models

TOL = 1e-5  # Max |Δlogit|, f32. Never loosen.


def _params(config, seed):
  """Random params with O(1) logits: std-0.02 init rescaled to ~1/sqrt(fan-in)."""
  params = models.init_params(config, jax.random.key(seed))
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p if "norm" in jax.tree_util.keystr(path) else p * 5.0, params)


def _config(**kw):
  base = dict(architectures=["Qwen3ForCausalLM"], vocab_size=131, hidden_size=48,
              intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
              num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-6, rope_theta=10000.0,
              max_position_embeddings=64)
  base.update(kw)
  return models.config_from_hf_dict(base)


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"])
def test_token_by_token_decode_matches_full_forward(arch):
  config = _config(architectures=[arch])
  params = _params(config, 0)
  T, prefill = 13, 4
  tokens = jax.random.randint(jax.random.key(1), (3, T), 0, config.vocab_size)
  full, _ = jax.jit(models.forward, static_argnums=0)(config, params, tokens)

  step = jax.jit(models.forward, static_argnums=0, donate_argnames="cache")
  cache = models.init_cache(config, batch=3, max_len=T + 3)
  logits, cache = step(config, params, tokens[:, :prefill], cache=cache)
  pieces = [logits]
  for t in range(prefill, T):
    logits, cache = step(config, params, tokens[:, t:t + 1], cache=cache)
    pieces.append(logits)
  np.testing.assert_array_equal(np.asarray(cache.lengths_B), [T] * 3)
  assert np.abs(np.asarray(full)).max() > 1.0
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=TOL)


def test_rows_decode_at_their_own_positions():
  """Right-padded prefill with per-row lengths, then one step per row at its own position."""
  config = _config()
  params = _params(config, 2)
  lengths = [7, 3, 5]
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, config.vocab_size, size=n + 1) for n in lengths]
  padded = np.zeros((3, max(lengths)), np.int32)
  for i, (s, n) in enumerate(zip(seqs, lengths)):
    padded[i, :n] = s[:n]
  cache = models.init_cache(config, batch=3, max_len=16)
  _, cache = models.forward(config, params, jnp.asarray(padded), cache=cache)
  cache = cache.replace(lengths_B=jnp.asarray(lengths, jnp.int32))
  nxt = jnp.asarray([[s[n]] for s, n in zip(seqs, lengths)], jnp.int32)
  step_logits, cache = models.forward(config, params, nxt, cache=cache)
  np.testing.assert_array_equal(np.asarray(cache.lengths_B), [n + 1 for n in lengths])
  for i, s in enumerate(seqs):
    ref, _ = models.forward(config, params, jnp.asarray(s[None], jnp.int32))
    np.testing.assert_allclose(step_logits[i, 0], ref[0, -1], rtol=0, atol=TOL)


def test_bf16_forward_is_close_to_f32():
  """The bf16 policy runs end to end and stays near f32 (a smoke bound, not a parity claim)."""
  config = _config()
  params = _params(config, 3)
  tokens = jax.random.randint(jax.random.key(4), (2, 9), 0, config.vocab_size)
  f32, _ = models.forward(config, params, tokens)
  bf16, _ = models.forward(config, params, tokens, compute_dtype=jnp.bfloat16)
  assert bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf16, np.float32), f32, rtol=0, atol=0.05)
