"""Logits parity with Hugging Face transformers (PyTorch CPU), f32, tolerance 1e-4."""

import jax.numpy as jnp
import numpy as np
import pytest

import hf_fixtures
from mrt_jax import models

TOL = 1e-4  # Max |Δlogit|, f32. Never loosen.
LENGTHS = (17, 11, 5)


def _batch(rng, vocab):
  seqs = [rng.integers(3, vocab, size=n).tolist() for n in LENGTHS]
  tokens = np.zeros((len(seqs), max(LENGTHS)), np.int32)
  for i, s in enumerate(seqs):
    tokens[i, :len(s)] = s
  return seqs, tokens


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family", sorted(hf_fixtures.FAMILIES))
def test_logits_match_transformers(tmp_path, family, seed):
  model = hf_fixtures.make_checkpoint(family, str(tmp_path), seed=seed)
  config, params = models.load_hf(tmp_path, dtype=jnp.float32)
  seqs, tokens = _batch(np.random.default_rng(seed), config.vocab_size)
  logits, cache = models.forward(config, params, jnp.asarray(tokens))
  assert cache is None
  assert logits.shape == (len(seqs), max(LENGTHS), config.vocab_size)
  for i, s in enumerate(seqs):
    ref = hf_fixtures.torch_logits(model, s)
    assert np.abs(ref).max() > 1.0, "logits too small for a meaningful tolerance"
    np.testing.assert_allclose(np.asarray(logits[i, :len(s)]), ref, rtol=0, atol=TOL)
