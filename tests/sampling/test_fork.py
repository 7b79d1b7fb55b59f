"""Probes forked from a trunk cache equal decoding from explicitly built prefixes."""

import numpy as np
import pytest

from mrt_jax import sampling
from sampling_reference import random_prompts

LOGPROB_TOL = 1e-5  # f32. Never loosen.
LENGTHS = (5, 13, 9)


@pytest.fixture(scope="module")
def trunk(checkpoint):
  """Greedy traces of 3 prompts, their cache, and the full token sequences (prompt + trace)."""
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=8)
  result = sampling.generate(config, params, prompts, max_new_tokens=40, temperature=0.0,
                             keep_cache=True)
  seqs = [p + t for p, t in zip(prompts, result.tokens)]
  return config, params, result.cache, seqs


def _probes(seqs):
  """Boundaries inside the prompt, at its end, mid-trace, at 0 and at the very end."""
  return [sampling.Probe(0, 3, (7,)),
          sampling.Probe(0, 5 + 11, (8, 9, 10)),
          sampling.Probe(1, 13, (4,)),
          sampling.Probe(1, len(seqs[1]), (11, 12)),
          sampling.Probe(2, 0, (5, 6)),
          sampling.Probe(2, 20, (3, 4, 5, 6, 7, 8))]


def _explicit(config, params, seqs, probes, **kwargs):
  """The reference: re-prefill tokens[:boundary] + suffix for every probe."""
  prompts = [seqs[p.source][:p.boundary] + list(p.suffix) for p in probes]
  return sampling.generate(config, params, prompts, **kwargs)


def test_greedy_probe_equals_decoding_from_explicit_prefix(trunk):
  config, params, cache, seqs = trunk
  probes = _probes(seqs)
  got = sampling.fork(config, params, cache, probes, max_new_tokens=40, temperature=0.0)
  ref = _explicit(config, params, seqs, probes, max_new_tokens=40, temperature=0.0)
  assert got.tokens == ref.tokens
  assert got.finish_reasons == ref.finish_reasons
  for a, b in zip(got.logprobs, ref.logprobs):
    np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
  # A trunk prefilled from token lists serves the same probes.
  prefilled = sampling.prefill(config, params, seqs)
  again = sampling.fork(config, params, prefilled, probes, max_new_tokens=40, temperature=0.0)
  assert again.tokens == ref.tokens


def test_sampled_probes_follow_the_seed_convention(trunk):
  config, params, cache, seqs = trunk
  probes = [sampling.Probe(0, 10, (7, 8), num_samples=2), sampling.Probe(1, 20, (9,), 2),
            sampling.Probe(2, 12, (4, 5, 6), 2)]
  kwargs = dict(max_new_tokens=40, temperature=1.0, top_p=0.95, seed=4,
                stop_token_ids=[seqs[0][12]])
  got = sampling.fork(config, params, cache, probes, **kwargs)
  ref = _explicit(config, params, seqs, probes, num_samples=2, **kwargs)
  assert got.tokens == ref.tokens
  assert got.finish_reasons == ref.finish_reasons
  for a, b in zip(got.logprobs, ref.logprobs):
    np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
  assert got.tokens[0] != got.tokens[1]


def test_bad_probes_name_the_culprit(trunk):
  config, params, cache, seqs = trunk
  n = len(seqs[1])
  cases = [
      (sampling.Probe(1, n + 1, (3,)),
       f"probe 0: boundary {n + 1} is beyond the length {n} of trunk row 1"),
      (sampling.Probe(9, 2, (3,)), "probe 0: source row 9 is not a row of the trunk cache"),
      (sampling.Probe(0, 2, ()), "probe 0: suffix is empty"),
      (sampling.Probe(0, 2, (3, 500)), r"probe 0: suffix holds token ids \[500\] outside"),
      (sampling.Probe(0, 2, (3,), num_samples=0), "probe 0: num_samples must be >= 1"),
  ]
  for probe, match in cases:
    with pytest.raises(ValueError, match=match):
      sampling.fork(config, params, cache, [probe], max_new_tokens=8)
  with pytest.raises(ValueError, match="at least one probe"):
    sampling.fork(config, params, cache, [], max_new_tokens=8)


def test_scanned_and_unrolled_layer_loops_agree(trunk):
  """Scanned layers over a stacked cache and unrolled ones over per-layer buffers (the
  default) give the same tokens and log-probs, also forking from the other's trunk."""
  config, params, _, seqs = trunk
  prompts = [s[:LENGTHS[i]] for i, s in enumerate(seqs)]
  kwargs = dict(max_new_tokens=24, temperature=1.0, top_k=50, seed=3)
  probes = [sampling.Probe(0, 4, (7, 8), 2), sampling.Probe(2, 11, (5,), 3)]
  samplers = {scan: sampling.Sampler(config, scan_layers=scan) for scan in (True, False)}
  assert not sampling.Sampler(config).scan_layers
  out = {}
  for scan, sampler in samplers.items():
    gen = sampler.generate(params, prompts, num_samples=2, keep_cache=True, **kwargs)
    assert isinstance(gen.cache.k_LxBxKxSxE, tuple) == (not scan)
    assert isinstance(gen.cache.v_LxBxKxSxE, tuple) == (not scan)
    out[scan] = (gen, sampler.fork(params, gen.cache, probes, **kwargs),
                 samplers[not scan].fork(params, gen.cache, probes, **kwargs))
  for got, ref in zip(out[True], out[False]):
    assert got.tokens == ref.tokens
    for a, b in zip(got.logprobs, ref.logprobs):
      np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
  assert out[True][1].tokens == out[True][2].tokens


def test_probe_grid_is_padded_finely_and_shares_suffix_prefills():
  """9 boundaries x 4 samples per trunk row: 10 probe slots of 4 rows (40, not 64 rows)."""
  from mrt_jax.sampling.fork import arrange
  probes = [sampling.Probe(r, b, (5,), 4) for r in range(2) for b in range(9)]
  layout = arrange(probes, np.array([20, 20]), vocab_size=32)
  assert (layout.rows_per_source, layout.samples_per_slot) == (40, 4)
  assert layout.live_B.sum() == 72 and len(layout.live_B) == 80
  # Mixed sample counts cannot share a prefill slot.
  mixed = arrange(probes[:2] + [sampling.Probe(1, 3, (5,), 3)], np.array([20, 20]), 32)
  assert (mixed.rows_per_source, mixed.samples_per_slot) == (8, 1)
