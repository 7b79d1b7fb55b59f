"""Teacher-forced scoring: the log-probability that the sampler would write given tokens.

`Sampler.score` and `Sampler.score_forks` feed a context and a target continuation in one
forward pass (no decoding) and return, per target token, log P(the sampler draws it | the
context and the target tokens before it) under the sampling rules the sampler would apply
(temperature, top-k, top-p, suppression: `rules.drawn_logprob`). exp(sum) is then the
probability that sampling with those rules writes the target exactly.

Contexts are prompts (`score`), or forks of a cached trunk (`score_forks`): trunk row r's tokens
[0, boundary) followed by a suffix, read from the trunk's KV cache in place as `Sampler.fork`
reads them (`fork.py`), so nothing is re-prefilled. The meta-prover's likelihood estimator
scores the reference answer after the termination suffix at every boundary of a step in one
such call (`mrt_jax.mrt.meta_prover`).

Letters (beyond `mrt_jax.models.config`): A target tokens (bucketed).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.sharding import Rules, to_host
from mrt_jax.models.transformer import Prefix, forward, unembed
from mrt_jax.models.weights import Params
from mrt_jax.sampling import buckets, decode
from mrt_jax.sampling.fork import Probe, arrange
from mrt_jax.sampling.rules import RuleArrays, SamplingRules, drawn_logprob


@functools.partial(jax.jit, static_argnames=("config", "rules", "compute_dtype", "scan_layers"))
def score_tokens(config: ModelConfig, params: Params, tokens_BxT: jax.Array,
                 targets_BxA: jax.Array, first_B: jax.Array, rule_arrays: RuleArrays,
                 prefix: Prefix | None = None, *, rules: Rules, compute_dtype: Any,
                 scan_layers: bool) -> jax.Array:
  """Log-probs of the targets: target a of row b is predicted at index first_B[b] + a.

  Args:
    config, params: the model.
    tokens_BxT: right-padded fed tokens (context, then every target token but the last).
    targets_BxA: the target tokens (any id past a row's targets; their entries are garbage).
    first_B: int32 index into T of the token whose logits predict target 0.
    rule_arrays: the sampling rules scored under.
    prefix: with a `Prefix`, the tokens continue the prefix rows at their boundaries (forks).
    rules, compute_dtype, scan_layers: as in `decode.prefill`.

  Returns:
    f32 [B, A] log-probs (`rules.drawn_logprob`).
  """
  decode.TRACES["score"] += 1
  B, T = tokens_BxT.shape
  A = targets_BxA.shape[1]
  if prefix is not None:
    prefix = prefix.replace(cache=decode.in_layout(prefix.cache, scan_layers))
  hidden_BxTxD, _ = forward(config, params, tokens_BxT, prefix=prefix,
                            compute_dtype=compute_dtype, rules=rules, return_hidden=True,
                            scan_layers=scan_layers)
  at_BxA = jnp.minimum(first_B.astype(jnp.int32)[:, None] + jnp.arange(A, dtype=jnp.int32)[None],
                       T - 1)
  hidden_AxBx1xD = jnp.swapaxes(jnp.take_along_axis(hidden_BxTxD, at_BxA[:, :, None], axis=1),
                                0, 1)[:, :, None, :]

  def one(args):
    # One target position at a time: [B, V] logits, as a decode step holds them.
    h_Bx1xD, target_B = args
    logits_BxV = unembed(config, params, h_Bx1xD, rules)[:, 0]
    return drawn_logprob(logits_BxV, rule_arrays, target_B)

  return jnp.swapaxes(jax.lax.map(one, (hidden_AxBx1xD, jnp.swapaxes(targets_BxA, 0, 1))), 0, 1)


def _rules(temperature, top_p, top_k, suppress_token_ids, vocab_size) -> RuleArrays:
  return SamplingRules(temperature, top_p, top_k,
                       suppress_token_ids=suppress_token_ids).to_arrays(vocab_size, 1)


def _targets(targets: Sequence[Sequence[int]], count: int, vocab_size: int) -> list[list[int]]:
  if len(targets) != count:
    raise ValueError(f"got {len(targets)} targets for {count} contexts; expected one target "
                     "continuation per context")
  return buckets.check_sequences(targets, vocab_size, "target")


def _results(logprobs_BxA: jax.Array, rows: np.ndarray, lengths: Sequence[int]):
  lp = to_host(logprobs_BxA)[rows]
  return [lp_i[:n].astype(np.float32) for lp_i, n in zip(lp, lengths)]


def score_prompts(sampler, params: Params, prompts: Sequence[Sequence[int]],
                  targets: Sequence[Sequence[int]], *, temperature: float, top_p: float,
                  top_k: int, suppress_token_ids: Sequence[int]) -> list[np.ndarray]:
  """`Sampler.score` (its docstring)."""
  vocab = sampler.config.vocab_size
  prompts = buckets.check_sequences(prompts, vocab, "prompt")
  targets = _targets(targets, len(prompts), vocab)
  fed = [p + t[:-1] for p, t in zip(prompts, targets)]
  width = buckets.bucket(max(len(s) for s in fed), sampler.prompt_buckets,
                         "the longest prompt + target length", "prompt_buckets")
  A = buckets.pow2_at_least(max(len(t) for t in targets))
  B = buckets.batch_rows(len(prompts), sampler._batch_multiple())
  tokens = np.zeros((B, width), np.int32)
  targets_BxA = np.zeros((B, A), np.int32)
  first = np.zeros((B,), np.int32)
  for i, (p, f, t) in enumerate(zip(prompts, fed, targets)):
    tokens[i, :len(f)] = f
    targets_BxA[i, :len(t)] = t
    first[i] = len(p) - 1
  with sampler._context():
    out = score_tokens(sampler.config, params, sampler._put(tokens, ("batch", "seq")),
                       sampler._put(targets_BxA, ("batch", None)),
                       sampler._put(first, ("batch",)),
                       _rules(temperature, top_p, top_k, suppress_token_ids, vocab),
                       rules=sampler.rules, compute_dtype=sampler.compute_dtype,
                       scan_layers=sampler.scan_layers)
    return _results(out, np.arange(len(prompts)), [len(t) for t in targets])


def score_forks(sampler, params: Params, trunk, forks: Sequence[Probe],
                targets: Sequence[Sequence[int]], *, temperature: float, top_p: float,
                top_k: int, suppress_token_ids: Sequence[int]) -> list[np.ndarray]:
  """`Sampler.score_forks` (its docstring)."""
  vocab = sampler.config.vocab_size
  forks = [p if isinstance(p, Probe) else Probe(*p) for p in forks]
  targets = _targets(targets, len(forks), vocab)
  forks = [Probe(p.source, p.boundary, p.suffix + tuple(t[:-1]), 1)
           for p, t in zip(forks, targets)]
  suffix_lens = [len(p.suffix) - len(t) + 1 for p, t in zip(forks, targets)]
  layout = arrange(forks, to_host(trunk.lengths_B), vocab)
  width = buckets.bucket(max(len(p.suffix) for p in forks), sampler.suffix_buckets,
                         "the longest fork suffix + target length", "suffix_buckets")
  A = buckets.pow2_at_least(max(len(t) for t in targets))
  B = len(layout.suffixes)
  tokens = np.zeros((B, width), np.int32)
  targets_BxA = np.zeros((B, A), np.int32)
  first = np.zeros((B,), np.int32)
  for row, n, t in zip(layout.order, suffix_lens, targets):
    fed = layout.suffixes[row]
    tokens[row, :len(fed)] = fed
    targets_BxA[row, :len(t)] = t
    first[row] = n - 1
  with sampler._context():
    prefix = Prefix(decode.in_layout(trunk, sampler.scan_layers),
                    sampler._put(layout.boundaries_B, ("batch",)))
    out = score_tokens(sampler.config, params, sampler._put(tokens, ("batch", "seq")),
                       sampler._put(targets_BxA, ("batch", None)),
                       sampler._put(first, ("batch",)),
                       _rules(temperature, top_p, top_k, suppress_token_ids, vocab), prefix,
                       rules=sampler.rules, compute_dtype=sampler.compute_dtype,
                       scan_layers=sampler.scan_layers)
    return _results(out, layout.order, [len(t) for t in targets])
