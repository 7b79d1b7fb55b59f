"""Phased decoding (growing windows, rows leaving, queued rows joining) equals the static batch.

The static batch (`Sampler(phased=False)`) decodes every row over the whole new-token bucket
until the last row finishes. Short phases (`min_phase_tokens=16`) make a 40-token budget run
over three windows, with rows leaving after 3 tokens.
"""

import jax
import numpy as np
import pytest

from mrt_jax import sampling
from mrt_jax.models.transformer import unstack_params
from mrt_jax.sampling import decode, schedule
from sampling_reference import random_prompts

LOGPROB_TOL = 1e-5  # f32; a smaller batch or window changes reduction order only. Never loosen.
LENGTHS = (5, 13, 9, 7, 11)
BUDGETS = (3, 40, 3, 17, 40)  # ragged: rows leave after 3 and 17 tokens, others run to 40


def _assert_same(got, ref):
  assert got.tokens == ref.tokens
  assert got.finish_reasons == ref.finish_reasons
  for a, b in zip(got.logprobs, ref.logprobs):
    np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)


@pytest.fixture(scope="module")
def setup(checkpoint):
  _, config, params, _ = checkpoint("qwen2")
  prompts = random_prompts(LENGTHS, config.vocab_size, seed=11)
  static = sampling.Sampler(config, phased=False)
  base = static.generate(params, prompts, max_new_tokens=40, temperature=0.0)
  # A stop token that row 3 emits at index 5 (and the others wherever they emit it).
  stop = [base.tokens[3][5]]
  return config, params, prompts, static, stop


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_ragged_rows_equal_the_static_batch(setup, temperature):
  config, params, prompts, static, stop = setup
  kwargs = dict(max_new_tokens=BUDGETS, temperature=temperature, top_p=0.9,
                stop_token_ids=stop, num_samples=2, seed=3)
  ref = static.generate(params, prompts, **kwargs)
  got = sampling.Sampler(config, min_phase_tokens=16).generate(params, prompts, **kwargs)
  _assert_same(got, ref)
  lengths = [len(t) for t in got.tokens]
  assert max(lengths) == 40 and max(lengths[:2]) <= 3
  if temperature == 0:
    assert got.finish_reasons[6] == "stop" and lengths[6] <= 6


def test_more_sequences_than_slots_equal_all_at_once(setup):
  """4 slots for 10 sequences: a prompt's 2 samples join when 2 slots are free."""
  config, params, prompts, static, stop = setup
  kwargs = dict(max_new_tokens=BUDGETS, temperature=1.0, stop_token_ids=stop, num_samples=2,
                seed=4)
  ref = static.generate(params, prompts, **kwargs)
  for slots in (2, 4):
    sampler = sampling.Sampler(config, max_batch_rows=slots, min_phase_tokens=16)
    _assert_same(sampler.generate(params, prompts, **kwargs), ref)


def test_phase_compiles_are_bounded_by_phases_times_batch_buckets(setup):
  config, params, _, _, _ = setup
  sampler = sampling.Sampler(config, min_phase_tokens=16)
  # Prompt width 32, budget 40 (bucket 64): phases of a quarter of the window, at least 16
  # steps: windows 32+16=48, 48+16=64, 64+16=80 -> 3 phases, for 3 rows in batch buckets 4,
  # 2, 1: at most 9 programs, whatever the prompt lengths and stops.
  windows, emitted = [32], 1
  while emitted < 40:
    steps = schedule.phase_steps(windows[-1], 40 - emitted, 16, 64)
    windows.append(windows[-1] + steps)
    emitted += steps
  assert windows == [32, 48, 64, 80]
  bound = (len(windows) - 1) * 3
  before = sampling.TRACES["phase"]
  kwargs = dict(max_new_tokens=(3, 40, 17), temperature=0.0)
  first = sampler.generate(params, random_prompts((20, 31, 3), config.vocab_size), **kwargs)
  assert [len(t) for t in first.tokens] == [3, 40, 17]
  compiled = sampling.TRACES["phase"] - before
  assert 1 <= compiled <= bound  # programs shared with earlier tests are not counted
  sampler.generate(params, random_prompts((30, 2, 17), config.vocab_size, seed=1),
                   max_new_tokens=(3, 40, 17), temperature=1.0, stop_token_ids=[5, 6, 7])
  assert sampling.TRACES["phase"] - before <= bound


def test_forked_probes_equal_the_static_batch(setup):
  config, params, prompts, static, _ = setup
  trunk = static.generate(params, prompts[:3], max_new_tokens=40, temperature=0.0,
                          keep_cache=True)
  phased = sampling.Sampler(config, min_phase_tokens=16)
  again = phased.generate(params, prompts[:3], max_new_tokens=40, temperature=0.0,
                          keep_cache=True)
  assert again.tokens == trunk.tokens
  np.testing.assert_array_equal(np.asarray(again.cache.lengths_B)[:3],
                                np.asarray(trunk.cache.lengths_B)[:3])
  probes = [sampling.Probe(0, 12, (7, 8), 2), sampling.Probe(1, 20, (9,)),
            sampling.Probe(2, 30, (4, 5, 6))]
  kwargs = dict(max_new_tokens=24, temperature=1.0, seed=2)
  ref = static.fork(params, trunk.cache, probes, **kwargs)
  # Probes decode in phases, from a trunk whose entries sit elsewhere in a longer cache.
  assert again.cache.max_len != trunk.cache.max_len
  _assert_same(phased.fork(params, again.cache, probes, **kwargs), ref)


def test_kept_cache_parks_finished_rows_and_equals_the_static_batch(setup, monkeypatch):
  """keep_cache with ragged rows: the rows that finish leave the working batch (parked), and
  the returned cache still holds every sequence in its row, forking as the static one does."""
  config, params, prompts, static, stop = setup
  kwargs = dict(max_new_tokens=BUDGETS, temperature=1.0, stop_token_ids=stop, num_samples=2,
                seed=6, keep_cache=True)
  ref = static.generate(params, prompts, **kwargs)
  batches = []  # the working batch of every phase
  real_phase = decode.phase

  def counting_phase(config, params, cache, rows, *args, **kw):
    batches.append(rows.token_B.shape[0])
    return real_phase(config, params, cache, rows, *args, **kw)
  monkeypatch.setattr(decode, "phase", counting_phase)
  got = sampling.Sampler(config, min_phase_tokens=16).generate(params, prompts, **kwargs)
  _assert_same(got, ref)
  # 10 rows (bucket 16): 4 stop within 3 tokens, so later phases run a smaller batch.
  assert batches[0] == 16 and min(batches) < 16, batches
  lengths = np.asarray(got.cache.lengths_B)[:10]
  np.testing.assert_array_equal(lengths, np.asarray(ref.cache.lengths_B)[:10])
  np.testing.assert_array_equal(
      lengths, [len(prompts[r // 2]) + len(t) for r, t in enumerate(got.tokens)])
  probes = [sampling.Probe(r, int(b), (7, 8), 2)
            for r, b in ((0, lengths[0]), (3, lengths[3] // 2), (6, 9), (9, lengths[9] - 1))]
  fork_kwargs = dict(max_new_tokens=12, temperature=1.0, seed=2)
  _assert_same(static.fork(params, got.cache, probes, **fork_kwargs),
               static.fork(params, ref.cache, probes, **fork_kwargs))


def test_cpu_layouts_give_the_same_tokens(setup, monkeypatch):
  """Decoding in XLA:CPU's layouts (`Sampler.cpu_layouts`, the default on CPU: keys [B, K, E,
  S] in the phases, the output projection [E, H, D]) against the usual ones: the same tokens
  and log-probs for ragged rows, the same kept cache (it leaves a phase in the usual layout)
  and the same forked probes."""
  config, params, prompts, _, stop = setup
  assert sampling.Sampler(config)._cpu_layouts() == (jax.default_backend() == "cpu")
  assert not sampling.Sampler(config, scan_layers=True)._cpu_layouts()
  kwargs = dict(max_new_tokens=BUDGETS, temperature=1.0, top_p=0.9, stop_token_ids=stop,
                num_samples=2, seed=8, keep_cache=True)
  seen = []  # each phase's keys_ExS
  real_phase = decode.phase
  monkeypatch.setattr(decode, "phase", lambda *a, **kw: seen.append(kw["keys_ExS"])
                      or real_phase(*a, **kw))
  runs = {}
  for flag in (False, True):
    sampler = sampling.Sampler(config, min_phase_tokens=16, cpu_layouts=flag)
    assert sampler._cpu_layouts() is flag
    got = sampler.generate(params, prompts, **kwargs)
    probes = [sampling.Probe(0, 2, (7, 8), 2), sampling.Probe(3, 9, (9,))]
    runs[flag] = got, sampler.fork(params, got.cache, probes, max_new_tokens=24,
                                   temperature=1.0, seed=2)
    assert seen and set(seen) == {flag}  # generate's and the fork's phases
    seen.clear()
  _assert_same(runs[True][0], runs[False][0])
  assert not runs[True][0].cache.keys_ExS
  for a, b in zip(jax.tree.leaves(runs[True][0].cache), jax.tree.leaves(runs[False][0].cache)):
    np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
  _assert_same(runs[True][1], runs[False][1])
  split = decode.params_in_layout(params, scan_layers=False, o_EHD=True)["layers"]
  assert all("o" not in p for p in split)
  np.testing.assert_array_equal(split[1]["o_EHD"], np.transpose(params["layers"]["o"][1],
                                                                (1, 0, 2)))


def test_bad_settings_name_the_field(setup):
  config, params, prompts, _, _ = setup
  for n in (3, 0):
    with pytest.raises(ValueError, match=f"max_batch_rows must be a power of two.*got {n}"):
      sampling.Sampler(config, max_batch_rows=n)
  with pytest.raises(ValueError, match="min_phase_tokens must be >= 1"):
    sampling.Sampler(config, min_phase_tokens=0)
  with pytest.raises(ValueError, match="cpu_layouts=True .* needs scan_layers=False"):
    sampling.Sampler(config, cpu_layouts=True, scan_layers=True)
  with pytest.raises(ValueError, match="keys_ExS lays out per-layer key buffers"):
    decode.phase(config, params, None, None, None, rules=None, compute_dtype=None, steps=0,
                 scan_layers=True, keys_ExS=True)
  sampler = sampling.Sampler(config, max_batch_rows=2)
  with pytest.raises(ValueError, match="num_samples=4 is more than the max_batch_rows=2"):
    sampler.generate(params, prompts, max_new_tokens=8, num_samples=4)
  with pytest.raises(ValueError, match="keep_cache returns one cache of all 5 sequences"):
    sampler.generate(params, prompts, max_new_tokens=8, keep_cache=True)
  with pytest.raises(ValueError, match="max_new_tokens holds 2 budgets for 5 prompts"):
    sampler.generate(params, prompts, max_new_tokens=[8, 9])
  with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
    sampler.generate(params, prompts, max_new_tokens=[8, 0, 1, 2, 3])


def test_a_call_splits_the_stacked_weights_once_for_all_its_phases(setup, monkeypatch):
  """Unrolled layers read per-layer weights: a call splits the stacked ones once, not per phase
  (each phase would copy every weight); pre-split params are used as they are."""
  config, params, prompts, static, stop = setup
  splits = []
  split = decode._split_layers
  monkeypatch.setattr(decode, "_split_layers", lambda p, **kw: splits.append(1) or split(p, **kw))
  sampler = sampling.Sampler(config, min_phase_tokens=16)
  kwargs = dict(max_new_tokens=BUDGETS, temperature=1.0, stop_token_ids=stop, num_samples=2,
                seed=5, keep_cache=True)
  got = sampler.generate(params, prompts, **kwargs)
  assert len(splits) == 1  # three windows (module docstring), one split
  _assert_same(got, static.generate(params, prompts, **kwargs))
  layered = decode.params_in_layout(params, scan_layers=False)
  assert isinstance(layered["layers"], tuple) and len(layered["layers"]) == config.num_layers
  assert decode.params_in_layout(layered, scan_layers=False) is layered
  assert unstack_params(layered) is layered
  assert decode.params_in_layout(params, scan_layers=True) is params
  splits.clear()
  _assert_same(sampler.generate(layered, prompts, **kwargs), got)
  assert not splits
  probes = [sampling.Probe(0, 2, (7, 8), 2), sampling.Probe(3, 9, (9,))]
  forked = sampler.fork(params, got.cache, probes, max_new_tokens=24, temperature=1.0, seed=2)
  assert len(splits) == 1  # one for the fork's prefill and phases
  _assert_same(forked, static.fork(params, got.cache, probes, max_new_tokens=24,
                                   temperature=1.0, seed=2))
