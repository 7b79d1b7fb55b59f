"""`generate`: transformers greedy parity, log-probs, sampled frequencies, sharing, stops, errors.

Most tests use 3 prompts (-> 4 rows), prompts <= 32 tokens and <= 64 new tokens, so they share
the programs compiled for the parity test (compiles dominate the runtime on CPU).
"""

import jax
import numpy as np
import pytest
import torch
from scipy import stats

import hf_fixtures
from mrt_jax import models, sampling
from mrt_jax.sampling import decode
from sampling_reference import (first_stop, full_forward_logprobs, processed_probs,
                                random_prompts)

LOGPROB_TOL = 1e-5  # Max |Δ log-prob| vs a full forward, f32. Never loosen.
LENGTHS = (5, 13, 9)


@pytest.mark.parametrize("family", sorted(hf_fixtures.FAMILIES))
def test_greedy_matches_transformers(checkpoint, family):
  model, config, params, _ = checkpoint(family)
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=1)
  result = sampling.generate(config, params, prompts, max_new_tokens=64, temperature=0.0)
  model.generation_config.eos_token_id = None  # both sides generate the full 64 tokens
  for prompt, tokens, reason in zip(prompts, result.tokens, result.finish_reasons):
    with torch.no_grad():
      ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt)),
                           max_new_tokens=64, do_sample=False, pad_token_id=0)
    assert tokens == ref[0, len(prompt):].tolist()
    assert reason == "length"


def test_logprobs_equal_full_forward(checkpoint):
  _, config, params, _ = checkpoint("qwen3")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=2)
  for temperature in (0.0, 0.8):
    result = sampling.generate(config, params, prompts, max_new_tokens=40,
                               temperature=temperature, top_k=20, top_p=0.9, seed=5)
    refs = full_forward_logprobs(config, params, prompts, result.tokens, temperature)
    for tokens, logprobs, ref in zip(result.tokens, result.logprobs, refs):
      assert len(tokens) == len(logprobs) == 40
      np.testing.assert_allclose(logprobs, ref, rtol=0, atol=LOGPROB_TOL)


def test_first_token_frequencies_match_processed_distribution(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompt = random_prompts([6], config.vocab_size, seed=3)[0]
  temperature, top_k, top_p, draws = 0.8, 12, 0.9, 1024
  result = sampling.generate(config, params, [prompt], max_new_tokens=1, temperature=temperature,
                             top_k=top_k, top_p=top_p, num_samples=draws, seed=11)
  logits, _ = models.forward(config, params, np.asarray([prompt], np.int32))
  expected = processed_probs(np.asarray(logits[0, -1]), temperature, top_k, top_p)
  counts = np.bincount([t[0] for t in result.tokens], minlength=config.vocab_size)
  assert counts[expected == 0].sum() == 0, "sampled a token outside top-k/top-p"
  support = expected > 0
  assert support.sum() >= 3, "too peaked a distribution for a meaningful test"
  _, p = stats.chisquare(counts[support], draws * expected[support])
  assert p > 1e-3, (counts[support], draws * expected[support])


def test_num_samples_equals_explicit_repetition(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts((7, 12), config.vocab_size, seed=4)
  kwargs = dict(max_new_tokens=40, temperature=1.0, top_p=0.95, seed=3)
  shared = sampling.generate(config, params, prompts, num_samples=2, **kwargs)
  repeated = sampling.generate(config, params, [p for p in prompts for _ in range(2)], **kwargs)
  assert shared.tokens == repeated.tokens
  for a, b in zip(shared.logprobs, repeated.logprobs):
    np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
  assert shared.tokens[0] != shared.tokens[1], "samples of one prompt must differ"


def test_stop_sequences_and_finish_reasons(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=5)
  base = sampling.generate(config, params, prompts, max_new_tokens=50, temperature=0.0)
  stop_ids = [base.tokens[1][20]]
  stop_seqs = [base.tokens[0][10:13], [1, 1, 1, 1]]
  result = sampling.generate(config, params, prompts, max_new_tokens=50, temperature=0.0,
                             stop_token_ids=stop_ids, stop_sequences=stop_seqs, keep_cache=True)
  stops = [(t,) for t in stop_ids] + [tuple(s) for s in stop_seqs]
  for i, prompt in enumerate(prompts):
    tokens, reason = first_stop(base.tokens[i], stops)
    assert result.tokens[i] == tokens
    assert result.finish_reasons[i] == reason
    np.testing.assert_allclose(result.logprobs[i], base.logprobs[i][:len(tokens)], atol=1e-6)
  assert result.finish_reasons[:2] == ["stop", "stop"]
  # The cache holds exactly each row's prompt and generated tokens.
  lengths = np.asarray(result.cache.lengths_B)[:len(prompts)]
  assert lengths.tolist() == [len(p) + len(t) for p, t in zip(prompts, result.tokens)]


def test_a_dropped_cache_skips_the_last_forward_pass(checkpoint):
  """Without feed_last a phase ends when every row has emitted its last token (N emits, N - 1
  forward passes after the prefill); with it, it also feeds that token: one more pass, same
  tokens and log-probs, and a complete cache."""
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=5)
  sampler = sampling.Sampler(config)
  rules = sampling.SamplingRules(temperature=0.0).to_arrays(config.vocab_size, 64)
  out = {}
  for feed_last in (False, True):
    cache, first = sampler._prefill(params, prompts, 64)
    B = first.shape[0]
    rows, token_B, _ = decode.start(first, rules, sampler._row_keys(0, np.arange(B)),
                                    np.arange(B) < len(prompts), np.full((B,), 50), rules=())
    cache, rows, tokens, _ = decode.phase(config, params, cache, rows, rules, rules=(),
                                          compute_dtype=None, steps=64, scan_layers=False,
                                          feed_last=feed_last)
    out[feed_last] = (np.asarray(tokens), np.asarray(cache.lengths_B), np.asarray(token_B))
  np.testing.assert_array_equal(out[False][0], out[True][0])
  assert (out[False][0][:len(prompts)] >= 0).sum(axis=1).tolist() == [49] * len(prompts)
  assert out[True][1][:len(prompts)].tolist() == [len(p) + 50 for p in prompts]
  assert out[False][1][:len(prompts)].tolist() == [len(p) + 49 for p in prompts]


def test_suppressed_and_forced_tokens(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=6)
  base = sampling.generate(config, params, prompts, max_new_tokens=40, temperature=0.0)
  common = int(np.bincount(sum(base.tokens, [])).argmax())
  forced = [5, 6, 7]
  result = sampling.generate(config, params, prompts, max_new_tokens=40, temperature=0.0,
                             suppress_token_ids=[common], forced=[(4, forced)])
  for prompt, tokens in zip(prompts, result.tokens):
    assert tokens[4:7] == forced
    assert common not in tokens[:4] + tokens[7:]
  # After the forced tokens, decoding continues as from an explicit prompt that includes them.
  cont = sampling.generate(config, params, [p + t[:7] for p, t in zip(prompts, result.tokens)],
                           max_new_tokens=33, temperature=0.0, suppress_token_ids=[common])
  assert [t[7:] for t in result.tokens] == cont.tokens


def test_compile_count_constant_after_warmup(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  sampler = sampling.Sampler(config)
  sampler.generate(params, random_prompts(LENGTHS, config.vocab_size), max_new_tokens=64,
                   temperature=0.0)
  warm = dict(sampling.TRACES)
  assert warm["prefill"] >= 1 and warm["phase"] >= 1
  # Same buckets (3-4 prompts of <= 32 tokens, 33-64 new tokens, <= 4 stops of <= 4 tokens
  # that never match, so that no row leaves the batch), other lengths and rules.
  for i, lengths in enumerate([(3, 30, 17, 8), (32, 1, 2), (1, 2, 31, 4)]):
    sampler.generate(params, random_prompts(lengths, config.vocab_size, seed=i),
                     max_new_tokens=33 + 10 * i, temperature=0.5 * i, top_k=3 * i, top_p=0.9,
                     suppress_token_ids=[7, 8, 4], stop_token_ids=[7, 8][:i],
                     stop_sequences=[[4, 5]], seed=i)
  assert dict(sampling.TRACES) == warm


def test_bad_inputs_name_the_culprit(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  sampler = sampling.Sampler(config, prompt_buckets=(32,), new_token_buckets=(64,))
  ok = [[3, 4, 5]]
  cases = [
      (dict(prompts=[[3, 4], []]), ValueError, "prompt 1 is empty"),
      (dict(prompts=[]), ValueError, "non-empty list of prompts"),
      (dict(prompts=[[3] * 33]), ValueError,
       r"longest prompt length is 33, longer than the largest bucket 32 \(Sampler.prompt_buckets"),
      (dict(max_new_tokens=0), ValueError, "max_new_tokens must be >= 1, got 0"),
      (dict(max_new_tokens=65), ValueError, "max_new_tokens is 65, longer than the largest "
       r"bucket 64 \(Sampler.new_token_buckets"),
      (dict(prompts=[[3, 211]]), ValueError, r"prompt 0 holds token ids \[211\] outside the vocab"),
      (dict(num_samples=0), ValueError, "num_samples must be >= 1"),
      (dict(stop_token_ids=[-1]), ValueError, "stop_token_ids holds token ids"),
  ]
  for kwargs, error, match in cases:
    call = dict(prompts=ok, max_new_tokens=8) | kwargs
    with pytest.raises(error, match=match):
      sampler.generate(params, call.pop("prompts"), **call)


def test_sampling_is_reproducible_and_seed_dependent(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=7)
  a, b, c = (sampling.generate(config, params, prompts, max_new_tokens=40, seed=s)
             for s in (1, 1, 2))
  assert a.tokens == b.tokens
  assert a.tokens != c.tokens
  assert jax.tree.all(jax.tree.map(np.array_equal, a.logprobs, b.logprobs))
