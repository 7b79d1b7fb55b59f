"""Plain NumPy/JAX references for the sampler tests."""

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax import models


def random_prompts(lengths, vocab_size, seed=0):
  """Token lists of the given lengths, avoiding the special ids 0-2 of the fixtures."""
  rng = np.random.default_rng(seed)
  return [rng.integers(3, vocab_size, size=n).tolist() for n in lengths]


def processed_probs(logits_V, temperature, top_k, top_p):
  """Temperature, then top-k, then top-p on the renormalized top-k distribution (f64)."""
  z = np.asarray(logits_V, np.float64) / temperature
  order = np.argsort(-z, kind="stable")
  k = top_k if top_k > 0 else len(z)
  p = np.exp(z[order[:k]] - z[order[:k]].max())
  p /= p.sum()
  keep = np.zeros(len(z), bool)
  mass = 0.0
  for rank in range(k):
    if mass >= top_p:
      break
    keep[order[rank]] = True
    mass += p[rank]
  q = np.where(keep, np.exp(z - z.max()), 0.0)
  return q / q.sum()


def full_forward_logprobs(config, params, prompts, generated, temperature):
  """Per row, log softmax(logits / T) of each generated token from one forward over the row's
  prompt + generated tokens (rows right-padded into one batch: causal, so padding is unseen)."""
  seqs = [p + g for p, g in zip(prompts, generated)]
  tokens = np.zeros((len(seqs), max(map(len, seqs))), np.int32)
  for i, s in enumerate(seqs):
    tokens[i, :len(s)] = s
  logits, _ = models.forward(config, params, jnp.asarray(tokens))
  logp = np.asarray(jax.nn.log_softmax(
      logits.astype(jnp.float32) / (temperature if temperature > 0 else 1.0), axis=-1))
  return [logp[i, np.arange(len(p) - 1, len(p) - 1 + len(g)), g]
          for i, (p, g) in enumerate(zip(prompts, generated))]


def first_stop(tokens, stops):
  """Reference stop handling: (tokens up to and including the first stop match, reason)."""
  for end in range(1, len(tokens) + 1):
    if any(tuple(tokens[max(0, end - len(s)):end]) == tuple(s) for s in stops):
      return tokens[:end], "stop"
  return tokens, "length"
