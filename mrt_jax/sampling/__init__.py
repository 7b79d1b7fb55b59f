"""Sampling: jitted KV-cache generation and in-place forking of probes from prefixes.

Public API:
  result = generate(config, params, prompts, max_new_tokens=..., temperature=1.0, top_p=1.0,
                    top_k=0, stop_token_ids=(), num_samples=1, seed=0)
  sampler = Sampler(config, ...)            # reusable; compiles once per shape bucket
  result = sampler.generate(params, prompts, ..., keep_cache=True)
  trunk = sampler.prefill(params, sequences)  # or result.cache
  probes = sampler.fork(params, trunk, [Probe(source, boundary, suffix, num_samples)], ...)
"""

from mrt_jax.sampling.decode import TRACES
from mrt_jax.sampling.fork import Probe
from mrt_jax.sampling.rules import SamplingRules
from mrt_jax.sampling.sampler import (FINISH_LENGTH, FINISH_STOP, SampleResult, Sampler, fork,
                                      generate, prefill)

__all__ = ["FINISH_LENGTH", "FINISH_STOP", "Probe", "SampleResult", "Sampler", "SamplingRules",
           "TRACES", "fork", "generate", "prefill"]
