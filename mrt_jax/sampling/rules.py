"""Logit rules and token choice: temperature, top-k, top-p, suppression, forcing, stops.

Host side, `SamplingRules` holds validated settings and turns them into `RuleArrays`: device
arrays of bucketed shapes, so a new temperature, stop list or forcing schedule reuses the
compiled sampler. Device side, `choose` picks each row's next token and its log-prob, and
`stop_matched` tests each row's window of recent tokens against the stop sequences.

Log-prob convention: the log-prob returned with a token is log softmax(logits / T), the
temperature-scaled model distribution *before* suppression and top-k/top-p truncation. That is
what the learner recomputes from a forward pass (truncation is a property of the sampler, not of
the policy, and truncated tokens would get -inf). Greedy decoding (T = 0) reports
log softmax(logits). Forced tokens get their log-prob under the same distribution.

Extra letters (beyond `mrt_jax.models.config`): X stop sequences, W stop window (the longest
stop sequence), N new-token buffer.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.sampling import buckets

# Minimum padded sizes of the stop-sequence table, so short stop lists share one compile.
_MIN_STOPS = 4
_MIN_WINDOW = 4


@flax.struct.dataclass
class RuleArrays:
  """Device form of `SamplingRules` (traced values: changing them does not recompile)."""
  temperature: jax.Array    # f32 []; 0 = greedy
  top_p: jax.Array          # f32 []; 1 = off
  top_k: jax.Array          # i32 []; 0 = off
  stops_XxW: jax.Array      # i32; right-aligned stop sequences, -1 = padding
  suppress_V: jax.Array     # bool; True = never sampled
  forced_N: jax.Array       # i32; token forced at each generated index, -1 = none


def _int_tuple(xs, what: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in xs)
  except TypeError as e:
    raise TypeError(f"{what} must be a sequence of token ids, got {xs!r}") from e


@dataclasses.dataclass(frozen=True)
class SamplingRules:
  """How tokens are chosen and when a sequence stops.

  Attributes:
    temperature: softmax temperature T; 0 means greedy (argmax).
    top_p: nucleus sampling: keep the smallest set of most likely tokens whose probability
      (after top-k) reaches `top_p`; 1 disables it.
    top_k: keep the `top_k` most likely tokens; 0 disables it. Ties at the cut are all kept.
    stop_token_ids: a sequence finishes (reason 'stop') right after emitting one of these.
    stop_sequences: token sequences (e.g. a multi-token end-of-thinking tag) that finish a
      sequence once its generated tokens end with one. Stops match generated tokens only (forced
      ones included), never the prompt. The stop token(s) are kept in the output.
    suppress_token_ids: tokens that are never sampled (budget forcing keeps a model thinking by
      suppressing its end-of-thinking token).
    forced: (index, tokens) pairs: generated tokens index, index + 1, ... are `tokens` instead
      of sampled ones (budget forcing appends e.g. a termination suffix at a token budget).
  """
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  stop_token_ids: tuple[int, ...] = ()
  stop_sequences: tuple[tuple[int, ...], ...] = ()
  suppress_token_ids: tuple[int, ...] = ()
  forced: tuple[tuple[int, tuple[int, ...]], ...] = ()

  def __post_init__(self):
    # Accept lists from callers; store tuples so the rules stay hashable.
    set_ = lambda name, value: object.__setattr__(self, name, value)
    set_("stop_token_ids", _int_tuple(self.stop_token_ids, "stop_token_ids"))
    set_("stop_sequences", tuple(_int_tuple(s, "stop_sequences[i]")
                                 for s in self.stop_sequences))
    set_("suppress_token_ids", _int_tuple(self.suppress_token_ids, "suppress_token_ids"))
    set_("forced", tuple((int(at), _int_tuple(toks, "forced tokens"))
                         for at, toks in self.forced))
    if not self.temperature >= 0:
      raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
    for i, seq in enumerate(self.stop_sequences):
      if not seq:
        raise ValueError(f"stop_sequences[{i}] is empty")
    for i, (at, toks) in enumerate(self.forced):
      if at < 0 or not toks:
        raise ValueError(f"forced[{i}] = ({at}, {toks}): expected a generated-token index >= 0 "
                         f"and a non-empty token sequence")

  def check_vocab(self, vocab_size: int) -> None:
    """Raises if a token id of the rules is outside [0, vocab_size)."""
    groups = {"stop_token_ids": self.stop_token_ids,
              "stop_sequences": [t for s in self.stop_sequences for t in s],
              "suppress_token_ids": self.suppress_token_ids,
              "forced": [t for _, toks in self.forced for t in toks]}
    for name, ids in groups.items():
      bad = [t for t in ids if not 0 <= t < vocab_size]
      if bad:
        raise ValueError(f"{name} holds token ids {bad[:5]} outside the vocab [0, {vocab_size})")
    if len(set(self.suppress_token_ids)) >= vocab_size:
      raise ValueError(f"suppress_token_ids suppresses the whole vocab of {vocab_size} tokens")

  def to_arrays(self, vocab_size: int, new_tokens: int) -> RuleArrays:
    """Device arrays; `new_tokens` is the (bucketed) length N of the output buffer."""
    self.check_vocab(vocab_size)
    seqs = [(t,) for t in self.stop_token_ids] + list(self.stop_sequences)
    num_x = buckets.pow2_at_least(len(seqs), _MIN_STOPS)
    width = buckets.pow2_at_least(max((len(s) for s in seqs), default=1), _MIN_WINDOW)
    stops_XxW = np.full((num_x, width), -1, np.int32)
    for i, s in enumerate(seqs):
      stops_XxW[i, width - len(s):] = s
    suppress_V = np.zeros((vocab_size,), bool)
    suppress_V[list(self.suppress_token_ids)] = True
    forced_N = np.full((new_tokens,), -1, np.int32)
    for at, toks in self.forced:
      for j, t in enumerate(toks[:max(0, new_tokens - at)]):
        forced_N[at + j] = t
    return RuleArrays(
        temperature=jnp.float32(self.temperature), top_p=jnp.float32(self.top_p),
        top_k=jnp.int32(self.top_k), stops_XxW=jnp.asarray(stops_XxW),
        suppress_V=jnp.asarray(suppress_V), forced_N=jnp.asarray(forced_N))


def truncate(logits_BxV: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
  """Sets logits outside the top-k, then outside the top-p nucleus, to -inf.

  Top-p is computed on the top-k-renormalized distribution (the order Hugging Face and vLLM
  use). One descending sort serves both; the cut is a threshold logit, so ties at the cut are
  all kept.
  """
  V = logits_BxV.shape[-1]
  sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)
  k = jnp.where(top_k > 0, jnp.minimum(top_k, V), V)
  in_k_BxV = (jnp.arange(V) < k)[None, :]
  probs_BxV = jax.nn.softmax(jnp.where(in_k_BxV, sorted_BxV, -jnp.inf), axis=-1)
  # A rank is kept while the mass strictly before it is < top_p: the smallest prefix whose
  # mass reaches top_p (rank 0 is always kept).
  mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
  keep_BxV = in_k_BxV & (mass_before_BxV < top_p)
  num_keep_B = jnp.maximum(jnp.sum(keep_BxV, axis=-1), 1)
  threshold_Bx1 = jnp.take_along_axis(sorted_BxV, (num_keep_B - 1)[:, None], axis=-1)
  return jnp.where(logits_BxV >= threshold_Bx1, logits_BxV, -jnp.inf)


def inverse_cdf_sample(keys_B: jax.Array, logits_BxV: jax.Array) -> jax.Array:
  """One token per row from softmax(logits) (-inf logits never chosen), one uniform per row.

  Inverse-CDF sampling: the first token whose cumulative probability exceeds u * total. It
  draws one random number per row where Gumbel-max (`jax.random.categorical`) draws V, which
  on CPU costs more than the rest of a small model's decode step.
  """
  probs_BxV = jax.nn.softmax(logits_BxV, axis=-1)
  cdf_BxV = jnp.cumsum(probs_BxV, axis=-1)
  u_B = jax.vmap(jax.random.uniform)(keys_B) * cdf_BxV[:, -1]
  token_B = jnp.sum(cdf_BxV <= u_B[:, None], axis=-1, dtype=jnp.int32)
  # Rounding can leave u at the very top of the cdf: fall back to the last allowed token.
  V = logits_BxV.shape[-1]
  last_B = V - 1 - jnp.argmax((probs_BxV > 0)[:, ::-1], axis=-1).astype(jnp.int32)
  return jnp.minimum(token_B, last_B)


def choose(logits_BxV: jax.Array, rules: RuleArrays, row_keys_B: jax.Array,
           step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Next token of each row at generated index `step`, and its log-prob (module docstring).

  Row b's randomness is `fold_in(row_keys_B[b], step)`: it depends on the row's identity and
  the step only, never on the batch it is computed in.
  """
  logits_BxV = logits_BxV.astype(jnp.float32)
  t = rules.temperature
  scaled_BxV = logits_BxV / jnp.where(t > 0, t, 1.0)
  logprobs_BxV = jax.nn.log_softmax(scaled_BxV, axis=-1)
  allowed_BxV = jnp.where(rules.suppress_V[None, :], -jnp.inf, scaled_BxV)

  def sample():
    # The sort behind top-k/top-p costs O(V log V) per row; skip it when both are off.
    kept_BxV = jax.lax.cond((rules.top_k > 0) | (rules.top_p < 1), truncate,
                            lambda x, k, p: x, allowed_BxV, rules.top_k, rules.top_p)
    keys_B = jax.vmap(jax.random.fold_in, (0, None))(row_keys_B, step)
    return inverse_cdf_sample(keys_B, kept_BxV)

  def greedy():
    return jnp.argmax(allowed_BxV, axis=-1).astype(jnp.int32)

  token_B = jax.lax.cond(t > 0, sample, greedy)
  forced = rules.forced_N.at[step].get(mode="fill", fill_value=-1)
  token_B = jnp.where(forced >= 0, forced, token_B)
  logprob_B = jnp.take_along_axis(logprobs_BxV, token_B[:, None], axis=-1)[:, 0]
  return token_B, logprob_B


def stop_matched(window_BxW: jax.Array, rules: RuleArrays) -> jax.Array:
  """bool [B]: the row's last emitted tokens (`window`, newest last) end with a stop sequence."""
  stops_XxW = rules.stops_XxW
  same_BxXxW = (stops_XxW[None] == window_BxW[:, None, :]) | (stops_XxW[None] < 0)
  valid_X = jnp.any(stops_XxW >= 0, axis=-1)
  return jnp.any(jnp.all(same_BxXxW, axis=-1) & valid_X[None, :], axis=-1)
