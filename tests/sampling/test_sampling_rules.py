"""Logit rules in isolation: sampled frequencies (chi-square), truncation, stops, forcing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sampling_reference import processed_probs
from mrt_jax.sampling import SamplingRules
from mrt_jax.sampling import rules as rules_lib

V = 11  # Small prime vocab: every token gets enough draws for a chi-square test.
DRAWS = 20000
P_VALUE = 1e-3  # Fixed seed, so deterministic; a bug shifts mass far beyond this.


def _draw(logits_V, rules: SamplingRules, draws=DRAWS, seed=0):
  arrays = rules.to_arrays(V, 16)
  logits_BxV = jnp.broadcast_to(jnp.asarray(logits_V, jnp.float32)[None, :], (draws, V))
  keys_B = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.arange(draws))
  return jax.jit(rules_lib.choose)(logits_BxV, arrays, keys_B, jnp.int32(0))


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, 0, 1.0), (0.7, 4, 1.0), (1.3, 0, 0.8), (1.2, 5, 0.85)])
def test_sampled_frequencies_match_processed_distribution(temperature, top_k, top_p):
  logits_V = np.random.default_rng(3).normal(size=V) * 0.7
  tokens, logprobs = _draw(logits_V, SamplingRules(temperature, top_p, top_k))
  expected = processed_probs(logits_V, temperature, top_k, top_p)
  counts = np.bincount(np.asarray(tokens), minlength=V)
  assert counts[expected == 0].sum() == 0, "sampled a token outside top-k/top-p"
  support = expected > 0
  _, p = stats.chisquare(counts[support], DRAWS * expected[support])
  assert p > P_VALUE, (counts, DRAWS * expected)
  # Log-probs are of the temperature-scaled distribution before truncation.
  full = jax.nn.log_softmax(jnp.asarray(logits_V, jnp.float32) / temperature)
  np.testing.assert_allclose(np.asarray(logprobs), np.asarray(full)[np.asarray(tokens)],
                             rtol=0, atol=1e-6)


def test_greedy_suppress_and_forced():
  logits_V = np.arange(V, dtype=np.float32)
  rules = SamplingRules(temperature=0.0, suppress_token_ids=[V - 1], forced=[(2, [4, 5])])
  arrays = rules.to_arrays(V, 8)
  keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(0), jnp.arange(1))
  choose = jax.jit(rules_lib.choose)
  got = [int(choose(jnp.asarray(logits_V)[None], arrays, keys, jnp.int32(i))[0][0])
         for i in range(5)]
  assert got == [V - 2, V - 2, 4, 5, V - 2]  # argmax is suppressed; indices 2, 3 are forced
  assert np.asarray(arrays.forced_N).tolist() == [-1, -1, 4, 5, -1, -1, -1, -1]


def test_truncate_keeps_ties_and_at_least_one_token():
  logits = jnp.asarray([[3.0, 1.0, 3.0, 0.0, -1.0]])
  kept = rules_lib.truncate(logits, jnp.int32(1), jnp.float32(1.0))
  assert np.isfinite(np.asarray(kept)).tolist() == [[True, False, True, False, False]]
  kept = rules_lib.truncate(logits, jnp.int32(0), jnp.float32(1e-6))
  assert np.isfinite(np.asarray(kept)).sum() == 2  # the top logit (tied) always survives


def _sorted_cut(logits_V, top_k, top_p):
  """Reference truncation by a descending sort (f64): the kept mask, ties at a cut kept."""
  z = np.asarray(logits_V, np.float64)
  desc = np.sort(z)[::-1]
  k = min(top_k, len(z)) if top_k > 0 else len(z)
  in_k = z >= desc[k - 1]
  w = np.where(in_k, np.exp(z - z.max()), 0.0)
  w_desc = np.sort(w)[::-1] / w.sum()
  # The smallest prefix of the sorted (renormalized) weights whose mass reaches top_p.
  rank = min(int(np.searchsorted(np.cumsum(w_desc), top_p)), int(in_k.sum()) - 1)
  return z >= desc[rank] if top_p < 1 else in_k


@pytest.mark.parametrize("top_k,top_p", [(0, 0.9), (40, 1.0), (40, 0.5), (3, 0.99), (0, 0.3),
                                         (1000, 0.95), (1, 1e-6)])
def test_truncate_equals_a_sort(top_k, top_p):
  # 64 rows of 500 logits, with ties (rounded values) and suppressed (-inf) entries.
  rng = np.random.default_rng(7)
  logits_BxV = np.round(rng.normal(size=(64, 500)) * 3, 1).astype(np.float32)
  logits_BxV[rng.random(logits_BxV.shape) < 0.1] = -np.inf
  kept = np.isfinite(np.asarray(jax.jit(rules_lib.truncate)(
      jnp.asarray(logits_BxV), jnp.int32(top_k), jnp.float32(top_p))))
  want = np.stack([_sorted_cut(row, top_k, top_p) & np.isfinite(row) for row in logits_BxV])
  np.testing.assert_array_equal(kept, want)
  assert kept.sum(axis=1).min() >= 1


def test_inverse_cdf_over_several_blocks():
  # Blocks of 4 over 11 tokens (the last block padded), a zero-weight token and a whole
  # zero-weight block: frequencies follow the weights and zero weights are never drawn.
  weights_V = np.random.default_rng(5).random(V).astype(np.float32) + 0.2
  weights_V[[1, 4, 5, 6, 7]] = 0.0
  keys_B = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(2), jnp.arange(DRAWS))
  weights_BxV = jnp.broadcast_to(jnp.asarray(weights_V)[None], (DRAWS, V))
  tokens = np.asarray(jax.jit(rules_lib.inverse_cdf_sample, static_argnames="block")(
      keys_B, weights_BxV, block=4))
  counts = np.bincount(tokens, minlength=V)
  assert counts[weights_V == 0].sum() == 0
  support = weights_V > 0
  expected = weights_V[support].astype(np.float64)
  _, p = stats.chisquare(counts[support], DRAWS * expected / expected.sum())
  assert p > P_VALUE, counts


def test_argmax_is_the_first_maximum():
  x = jnp.asarray([[1.0, 3.0, 3.0, 0.0], [-np.inf, -np.inf, -1.0, -1.0], [2.0, 2.0, 2.0, 2.0]])
  assert np.asarray(rules_lib._argmax(x)).tolist() == [1, 2, 0]


def test_stop_matching_uses_the_newest_tokens():
  arrays = SamplingRules(stop_token_ids=[7], stop_sequences=[[3, 4, 5]]).to_arrays(V, 8)
  windows = jnp.asarray([[-1, 3, 4, 5], [3, 4, 5, 1], [-1, -1, -1, 7], [-1, -1, -1, -1],
                         [9, 4, 5, 5]], jnp.int32)
  assert np.asarray(rules_lib.stop_matched(windows, arrays)).tolist() == [
      True, False, True, False, False]
  # No stops at all: padding rows of the table must never match.
  empty = SamplingRules().to_arrays(V, 8)
  assert not np.asarray(rules_lib.stop_matched(windows, empty)).any()


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_k=-2), "top_k must be >= 0"),
    (dict(stop_sequences=[[1], []]), r"stop_sequences\[1\] is empty"),
    (dict(forced=[(-1, [2])]), r"forced\[0\]"),
])
def test_bad_rules(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SamplingRules(**kwargs)


def test_rule_token_ids_outside_vocab():
  with pytest.raises(ValueError, match=r"stop_token_ids holds token ids \[11\] outside the vocab"):
    SamplingRules(stop_token_ids=[11]).to_arrays(V, 8)
  with pytest.raises(ValueError, match="suppresses the whole vocab"):
    SamplingRules(suppress_token_ids=range(V)).to_arrays(V, 8)
