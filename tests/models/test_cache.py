"""Decoding token by token through the KV cache reproduces the full forward (f32, 1e-5)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax import models
from mrt_jax.models import transformer

TOL = 1e-5  # Max |Δlogit|, f32. Never loosen.


def _params(config, seed):
  """Random params with O(1) logits: std-0.02 init rescaled to ~1/sqrt(fan-in)."""
  params = models.init_params(config, jax.random.key(seed))
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p if "norm" in jax.tree_util.keystr(path) else p * 5.0, params)


# The per-row references (the full forward of one row's own sequence), jitted: op by op, each
# of their many lengths would compile every op again.
_full_forward = jax.jit(models.forward, static_argnums=0)


def _config(**kw):
  base = dict(architectures=["Qwen3ForCausalLM"], vocab_size=131, hidden_size=48,
              intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
              num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-6, rope_theta=10000.0,
              max_position_embeddings=64)
  base.update(kw)
  return models.config_from_hf_dict(base)


# How the cache is built and the layers looped: scanned over a stacked cache (accelerators),
# unrolled over a stacked cache, unrolled over per-layer buffers (the CPU decode loop); the
# first chunk is written into an existing cache or prefilled into a fresh one (`cache_len`).
MODES = {"scan": (True, False), "unrolled": (False, False), "per_layer": (False, True)}


# Every family in the accelerator mode; the other modes on Qwen2 (biases) / Qwen3 (q/k norm).
CASES = ([(arch, False, "scan") for arch in ("LlamaForCausalLM", "Qwen2ForCausalLM",
                                              "Qwen3ForCausalLM")]
         + [("Qwen2ForCausalLM", True, "scan"), ("Qwen3ForCausalLM", False, "unrolled"),
            ("Qwen2ForCausalLM", True, "per_layer")])


@pytest.mark.parametrize("arch,fresh,mode", CASES)
def test_token_by_token_decode_matches_full_forward(arch, fresh, mode):
  scan_layers, per_layer = MODES[mode]
  config = _config(architectures=[arch])
  params = _params(config, 0)
  T, prefill = 13, 4
  tokens = jax.random.randint(jax.random.key(1), (3, T), 0, config.vocab_size)
  full, _ = jax.jit(models.forward, static_argnums=0)(config, params, tokens)

  kw = dict(scan_layers=scan_layers)
  step = jax.jit(functools.partial(models.forward, **kw), static_argnums=0,
                 donate_argnames="cache")
  if fresh:
    logits, cache = jax.jit(functools.partial(models.forward, cache_len=T + 3, **kw),
                            static_argnums=0)(config, params, tokens[:, :prefill])
  else:
    cache = models.init_cache(config, batch=3, max_len=T + 3)
    if per_layer:
      cache = transformer.unstack_layers(cache)
    logits, cache = step(config, params, tokens[:, :prefill], cache=cache)
  if per_layer:
    cache = transformer.unstack_layers(cache) if fresh else cache
    assert isinstance(cache.k_LxBxKxSxE, tuple)
  pieces = [logits]
  for t in range(prefill, T):
    logits, cache = step(config, params, tokens[:, t:t + 1], cache=cache)
    pieces.append(logits)
  assert isinstance(cache.k_LxBxKxSxE, tuple) == per_layer
  np.testing.assert_array_equal(np.asarray(cache.lengths_B), [T] * 3)
  assert np.abs(np.asarray(full)).max() > 1.0
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=TOL)
  # The cache holds every token's keys: a fresh full-sequence prefill writes the same entries.
  _, ref = models.forward(config, params, tokens, cache_len=T + 3)
  got = transformer.stack_layers(cache) if per_layer else cache
  np.testing.assert_allclose(got.k_LxBxKxSxE[:, :, :, :T], ref.k_LxBxKxSxE[:, :, :, :T],
                             rtol=0, atol=TOL)


def test_prefill_into_layer_buffers_equals_the_stacked_prefill():
  """`layer_buffers=True` builds the per-layer buffers of the stacked prefill directly."""
  config = _config(architectures=["Qwen3ForCausalLM"])
  params = _params(config, 0)
  tokens = jax.random.randint(jax.random.key(2), (2, 7), 0, config.vocab_size)
  kw = dict(cache_len=11, scan_layers=False)
  ref_logits, ref = models.forward(config, params, tokens, **kw)
  logits, got = models.forward(config, params, tokens, layer_buffers=True, **kw)
  assert isinstance(got.k_LxBxKxSxE, tuple) and len(got.v_LxBxKxSxE) == config.num_layers
  assert got.k_LxBxKxSxE[0].shape == ref.k_LxBxKxSxE.shape[1:]
  np.testing.assert_array_equal(logits, ref_logits)
  for a, b in zip(jax.tree.leaves(transformer.stack_layers(got)), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="layer_buffers is for a prefill"):
    models.forward(config, params, tokens, layer_buffers=True, cache_len=11)
  with pytest.raises(ValueError, match="layer_buffers is for a prefill"):
    models.forward(config, params, tokens, layer_buffers=True, scan_layers=False)


def test_per_layer_cache_needs_unrolled_layers():
  config = _config()
  cache = transformer.unstack_layers(models.init_cache(config, batch=1, max_len=4))
  with pytest.raises(ValueError, match="scan_layers=False"):
    models.forward(config, _params(config, 0), jnp.zeros((1, 1), jnp.int32), cache=cache)
  prefix = transformer.Prefix(cache, jnp.ones((1,), jnp.int32))
  with pytest.raises(ValueError, match="prefix of per-layer buffers"):
    models.forward(config, _params(config, 0), jnp.zeros((1, 1), jnp.int32), prefix=prefix)


def test_cache_len_shorter_than_the_tokens_is_an_error():
  config = _config()
  with pytest.raises(ValueError, match="cache_len=2 is shorter than the 3 tokens"):
    models.forward(config, _params(config, 0), jnp.zeros((1, 3), jnp.int32), cache_len=2)


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
    ref, _ = _full_forward(config, params, jnp.asarray(s[None], jnp.int32))
    np.testing.assert_allclose(step_logits[i, 0], ref[0, -1], rtol=0, atol=TOL)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_end_aligned_prefill_then_steps_at_a_common_entry(scan_layers):
  """Rows of lengths 7, 3, 5 left-padded to 7 (`start_B`), prefilled, then two tokens each
  decoded at entries 7 and 8 (`write_at`, one dynamic_update_slice): the prefill and every
  step equal the full forward of the row's own sequence, and the scatter path (no
  `write_at`) gives the same."""
  config = _config()
  params = _params(config, 2)
  lengths = np.array([7, 3, 5])
  rng = np.random.default_rng(1)
  seqs = [rng.integers(0, config.vocab_size, size=n + 2) for n in lengths]
  padded = np.full((3, 7), 99, np.int32)  # the padding's value must not matter
  for i, (s, n) in enumerate(zip(seqs, lengths)):
    padded[i, 7 - n:] = s[:n]
  kw = dict(scan_layers=scan_layers)
  p = params if scan_layers else transformer.unstack_params(params)
  prefill_logits, cache = models.forward(config, p, jnp.asarray(padded), cache_len=12,
                                         start_B=jnp.asarray(7 - lengths),
                                         layer_buffers=not scan_layers, **kw)
  np.testing.assert_array_equal(cache.start_B, 7 - lengths)
  np.testing.assert_array_equal(cache.lengths_B, lengths)
  for i, s in enumerate(seqs):
    full, _ = _full_forward(config, params, jnp.asarray(s[None, :lengths[i]]))
    np.testing.assert_allclose(prefill_logits[i, 7 - lengths[i]:], full[0], rtol=0, atol=TOL)
  scattered = cache
  for j in range(2):
    nxt = jnp.asarray([[s[n + j]] for s, n in zip(seqs, lengths)], jnp.int32)
    logits, cache = models.forward(config, p, nxt, cache=cache, write_at=jnp.int32(7 + j), **kw)
    ref_logits, scattered = models.forward(config, p, nxt, cache=scattered, **kw)
    np.testing.assert_array_equal(cache.lengths_B, lengths + j + 1)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=TOL)
    for i, s in enumerate(seqs):
      full, _ = _full_forward(config, params, jnp.asarray(s[None, :lengths[i] + j + 1]))
      np.testing.assert_allclose(logits[i, 0], full[0, -1], rtol=0, atol=TOL)
  for a, b in zip(jax.tree.leaves(cache), jax.tree.leaves(scattered)):
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_keys_laid_out_ExS_decode_as_the_usual_layout():
  """Per-layer key buffers held [B, K, E, S] (`KVCache.keys_ExS`, the CPU decode loop's
  layout): three steps at a common entry give the logits of the usual [B, K, S, E] buffers and
  the same keys, transposed; values are untouched."""
  config = _config()
  p = transformer.unstack_params(_params(config, 4))
  rng = np.random.default_rng(2)
  lengths = np.array([6, 2, 4])
  padded = jnp.asarray(rng.integers(0, config.vocab_size, size=(3, 6)), jnp.int32)
  _, cache = models.forward(config, p, padded, cache_len=10, start_B=jnp.asarray(6 - lengths),
                            layer_buffers=True, scan_layers=False)
  swapped = cache.replace(k_LxBxKxSxE=tuple(jnp.swapaxes(k, 2, 3) for k in cache.k_LxBxKxSxE),
                          keys_ExS=True)
  assert swapped.max_len == cache.max_len == 10
  for j in range(3):
    nxt = jnp.asarray(rng.integers(0, config.vocab_size, size=(3, 1)), jnp.int32)
    kw = dict(scan_layers=False, write_at=jnp.int32(6 + j))
    ref_logits, cache = models.forward(config, p, nxt, cache=cache, **kw)
    logits, swapped = models.forward(config, p, nxt, cache=swapped, **kw)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=TOL)
  assert swapped.keys_ExS
  for a, b in zip(swapped.k_LxBxKxSxE, cache.k_LxBxKxSxE):
    np.testing.assert_array_equal(jnp.swapaxes(a, 2, 3), b)
  for a, b in zip(swapped.v_LxBxKxSxE, cache.v_LxBxKxSxE):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(swapped.lengths_B, cache.lengths_B)
  # The layout is for per-layer buffers written at a common entry only.
  with pytest.raises(ValueError, match=r"keys laid out \[B, K, E, S\].*write_at"):
    models.forward(config, p, nxt, cache=swapped, scan_layers=False)


def test_start_and_write_entry_need_their_kind_of_call():
  config = _config()
  params = _params(config, 0)
  tokens = jnp.zeros((1, 3), jnp.int32)
  with pytest.raises(ValueError, match="start_B places a prefill"):
    models.forward(config, params, tokens, start_B=jnp.zeros((1,), jnp.int32))
  with pytest.raises(ValueError, match="write_at is an entry of the given cache"):
    models.forward(config, params, tokens, write_at=jnp.int32(0))


def test_bf16_forward_is_close_to_f32():
  """The bf16 policy runs end to end and stays near f32 (a smoke bound, not a parity claim)."""
  config = _config()
  params = _params(config, 3)
  tokens = jax.random.randint(jax.random.key(4), (2, 9), 0, config.vocab_size)
  f32, _ = models.forward(config, params, tokens)
  bf16, _ = models.forward(config, params, tokens, compute_dtype=jnp.bfloat16)
  assert bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf16, np.float32), f32, rtol=0, atol=0.05)
