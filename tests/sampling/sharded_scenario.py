"""One sampler workload, run both unsharded (in the test) and on 8 devices (in a subprocess)."""

import dataclasses

import numpy as np

from mrt_jax import sampling
from sampling_reference import random_prompts


def run(sampler: sampling.Sampler, params) -> dict:
  """Greedy and sampled generation, then probes forked from the greedy cache."""
  vocab = sampler.config.vocab_size
  prompts = random_prompts((5, 13, 9), vocab, seed=9)
  greedy = sampler.generate(params, prompts, max_new_tokens=40, temperature=0.0,
                            keep_cache=True)
  sampled = sampler.generate(params, prompts[:2], max_new_tokens=40, temperature=1.0,
                             top_p=0.9, num_samples=2, seed=1)
  probes = [sampling.Probe(0, 12, (7, 8), 2), sampling.Probe(1, 20, (9,)),
            sampling.Probe(2, 9, (4, 5, 6))]
  forked = sampler.fork(params, greedy.cache, probes, max_new_tokens=40, temperature=1.0,
                        seed=2)
  # 4 slots for 6 sequences of ragged budgets, short phases: rows leave and queued ones join.
  queued = dataclasses.replace(sampler, max_batch_rows=4, min_phase_tokens=8).generate(
      params, prompts, max_new_tokens=(3, 40, 17), temperature=1.0, num_samples=2, seed=5)
  # Ragged rows with the cache kept: finished rows leave the working batch (parked), and the
  # returned cache still holds every row for probes.
  short = dataclasses.replace(sampler, min_phase_tokens=8)
  parked = short.generate(params, prompts, max_new_tokens=(3, 40, 17), temperature=1.0,
                          num_samples=2, seed=6, keep_cache=True)
  parked_forks = short.fork(params, parked.cache, [sampling.Probe(0, 6, (7, 8)),
                                                   sampling.Probe(3, 20, (9,), 2)],
                            max_new_tokens=16, temperature=1.0, seed=7)
  out = {"parked_lengths": np.asarray(parked.cache.lengths_B)[:6].tolist()}
  for name, r in (("greedy", greedy), ("sampled", sampled), ("forked", forked),
                  ("queued", queued), ("parked", parked), ("parked_forks", parked_forks)):
    out[f"{name}_tokens"] = r.tokens
    out[f"{name}_reasons"] = r.finish_reasons
    out[f"{name}_logprobs"] = [np.asarray(lp).tolist() for lp in r.logprobs]
  k = greedy.cache.k_LxBxKxSxE
  if isinstance(k, tuple):  # per-layer buffers [B, K, S, E]: L, then one layer's shard
    shards = {tuple(a.addressable_shards[0].data.shape) for a in k}
    assert len(shards) == 1, shards
    out["cache_shard_shape"] = [len(k), *shards.pop()]
  else:
    out["cache_shard_shape"] = list(k.addressable_shards[0].data.shape)
  return out
