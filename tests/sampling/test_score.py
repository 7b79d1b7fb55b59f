"""Teacher-forced scoring equals the sampling distribution on an explicit full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax import models, sampling
from sampling_reference import processed_probs, random_prompts

LOGPROB_TOL = 1e-5  # f32 log-probs against a full forward over the explicit context. Never loosen.


@pytest.fixture(scope="module")
def trunk(checkpoint):
  """Sampled traces of 3 prompts, their cache, and the full sequences (prompt + trace)."""
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts((6, 11, 9), config.vocab_size, seed=3)
  result = sampling.generate(config, params, prompts, max_new_tokens=24, temperature=1.0,
                             seed=1, keep_cache=True)
  return config, params, result.cache, [p + t for p, t in zip(prompts, result.tokens)]


_forward = jax.jit(models.forward, static_argnums=0)


def _last_logits(config, params, contexts):
  """f64 [B, T, V] logits of right-padded contexts, one jitted forward (causal: padding unseen)."""
  tokens = np.zeros((len(contexts), 64), np.int32)
  for i, c in enumerate(contexts):
    tokens[i, :len(c)] = c
  return np.asarray(_forward(config, params, jnp.asarray(tokens))[0], np.float64)


def _reference(config, params, contexts, targets, temperature, top_p, top_k=0):
  """Per row, log P(draw target a | context + target[:a]) from one forward over the row's
  explicit tokens, with temperature/top-k/top-p applied by the NumPy reference (sorting)."""
  logits_BxTxV = _last_logits(config, params, [c + t for c, t in zip(contexts, targets)])
  out = []
  for logits_TxV, context, target in zip(logits_BxTxV, contexts, targets):
    lp = []
    for a, token in enumerate(target):
      probs = processed_probs(logits_TxV[len(context) - 1 + a], temperature, top_k, top_p)
      lp.append(np.log(probs[token]) if probs[token] > 0 else -np.inf)
    out.append(np.array(lp))
  return out


@pytest.mark.parametrize("top_p,top_k", [(1.0, 0), (0.9, 0), (0.97, 40)])
def test_forks_score_like_a_full_forward_over_the_explicit_prefix(trunk, top_p, top_k):
  config, params, cache, seqs = trunk
  rng = np.random.default_rng(0)
  forks = [sampling.Probe(0, 6, (7, 8)), sampling.Probe(0, 14, (7, 8)),
           sampling.Probe(1, 11, (9,)), sampling.Probe(1, 25, (9,)),
           sampling.Probe(1, len(seqs[1]), (4, 5, 6)), sampling.Probe(2, 0, (5,)),
           sampling.Probe(2, 20, (3, 4))]
  targets = [rng.integers(3, config.vocab_size, size=n).tolist() for n in (1, 3, 2, 4, 2, 3, 1)]
  kwargs = dict(temperature=0.7, top_p=top_p, top_k=top_k)
  got = sampling.Sampler(config).score_forks(params, cache, forks, targets, **kwargs)
  contexts = [seqs[f.source][:f.boundary] + list(f.suffix) for f in forks]
  ref = _reference(config, params, contexts, targets, 0.7, top_p, top_k)
  truncated = 0
  for g, r, t in zip(got, ref, targets):
    assert g.shape == (len(t),) and g.dtype == np.float32
    assert np.array_equal(np.isinf(g), np.isinf(r))
    truncated += np.isinf(r).sum()
    finite = np.isfinite(r)
    np.testing.assert_allclose(g[finite], r[finite], rtol=0, atol=LOGPROB_TOL)
    if finite.all():  # the likelihood J = exp(sum)
      np.testing.assert_allclose(np.exp(g.sum()), np.exp(r.sum()), rtol=LOGPROB_TOL, atol=0)
  if top_p == 1.0 and top_k == 0:
    assert truncated == 0
  # Scoring the explicit prompts gives the same numbers.
  again = sampling.Sampler(config).score(params, contexts, targets, **kwargs)
  for g, a in zip(got, again):
    np.testing.assert_allclose(g, a, rtol=0, atol=LOGPROB_TOL)


def test_greedy_scores_the_argmax_only(trunk):
  config, params, cache, seqs = trunk
  context = seqs[0][:10]
  best = int(np.argmax(_last_logits(config, params, [context])[0, len(context) - 1]))
  got = sampling.Sampler(config).score(params, [context, context], [[best], [(best + 1) % 64]],
                                       temperature=0.0)
  assert got[0].tolist() == [0.0] and got[1].tolist() == [-np.inf]


def test_one_token_answer_likelihood_matches_4096_sampled_probes(trunk):
  """J by likelihood = P(the probe writes answer then stop) = the mean verdict of sampled
  probes whose verifier accepts exactly that token string, within 3 sigma of 4096 probes."""
  config, params, cache, seqs = trunk
  sampler = sampling.Sampler(config)
  kwargs = dict(temperature=0.2, top_p=0.8)  # peaked: J far from 0 and 1 on a random model
  # A one-row trunk: the fork grid is then 4096 rows, not 4096 per trunk row.
  one_row = sampler.prefill(params, [seqs[2]])
  fork = sampling.Probe(0, 17, (7, 8))
  # The likeliest answer token and the likeliest token after it.
  context = seqs[2][:fork.boundary] + list(fork.suffix)
  answer = int(np.argmax(_last_logits(config, params, [context])[0, len(context) - 1]))
  stop = int(np.argmax(_last_logits(config, params, [context + [answer]])[0, len(context)]))
  lp = sampler.score_forks(params, one_row, [fork], [[answer, stop]], **kwargs)[0]
  j = float(np.exp(lp.sum()))
  n = 4096
  probes = sampler.fork(params, one_row, [sampling.Probe(0, fork.boundary, fork.suffix, n)],
                        max_new_tokens=2, stop_token_ids=[stop], seed=5, **kwargs)
  verdicts = np.array([t == [answer, stop] for t in probes.tokens], np.float64)
  sigma = np.sqrt(j * (1 - j) / n)
  assert 0.05 < j < 0.95
  assert abs(verdicts.mean() - j) < 3 * sigma, (verdicts.mean(), j, sigma)


def test_bad_targets_name_the_culprit(trunk):
  config, params, cache, _ = trunk
  sampler = sampling.Sampler(config)
  with pytest.raises(ValueError, match="got 1 targets for 2 contexts"):
    sampler.score(params, [[3, 4], [5]], [[6]])
  with pytest.raises(ValueError, match="target 0 is empty"):
    sampler.score_forks(params, cache, [sampling.Probe(0, 3, (5,))], [[]])
  with pytest.raises(ValueError, match=r"target 0 holds token ids \[999\]"):
    sampler.score(params, [[3]], [[999]])
