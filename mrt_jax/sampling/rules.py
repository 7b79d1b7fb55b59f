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
`drawn_logprob` gives the other quantity, the log-probability of the draw itself (truncation
and suppression applied): what teacher-forced scoring (`score.py`) needs.

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
# Tokens per block of the two-level cumulative sum of `inverse_cdf_sample`.
_CDF_BLOCK = 128


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


def _order_keys(x: jax.Array) -> jax.Array:
  """uint32 keys with the order of the f32 values x (-inf < ... < -0 < +0 < ... < +inf)."""
  bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  sign = jnp.uint32(0x80000000)
  return jnp.where(bits >= sign, ~bits, bits | sign)


def _largest_cut(keys_BxV: jax.Array, holds, low_B: jax.Array, high_B: jax.Array,
                 enabled: jax.Array) -> jax.Array:
  """Per row, the largest key t in [low, high) such that holds(keys >= t) (bool [B]).

  `holds` must be monotone (true for a set, true for every larger set), true at `low` and
  false at `high`.
  A bisection over the 2^32 keys: 32 passes over [B, V], each a compare and a row reduction;
  none (the result is `low`) when `enabled` is False. A loop of 0 or 32 trips, not a
  `lax.cond`: XLA:CPU's conditional costs more than a pass over [B, V].
  """
  def halve(_, bounds):
    low_B, high_B = bounds
    mid_B = low_B + (high_B - low_B) // 2
    ok_B = holds(keys_BxV >= mid_B[:, None])
    return jnp.where(ok_B, mid_B, low_B), jnp.where(ok_B, high_B, mid_B)
  return jax.lax.fori_loop(0, jnp.where(enabled, 32, 0), halve, (low_B, high_B))[0]


def _nucleus_cut(keys_BxV: jax.Array, weights_BxV: jax.Array, top_k: jax.Array,
                 top_p: jax.Array) -> jax.Array:
  """Per row, the smallest key kept by top-k and then top-p (see `truncate`).

  Args:
    keys_BxV: `_order_keys` of the logits.
    weights_BxV: exp(logits - max): unnormalized probabilities (0 for -inf logits).
    top_k, top_p: as in `RuleArrays` (0 and 1 switch them off).
  """
  B, V = keys_BxV.shape
  # Every row's search spans all keys: nothing is below key 0 and nothing reaches 2^32 - 1
  # (NaNs aside), so the bounds need no pass over the row.
  low_B = jnp.zeros((B,), jnp.uint32)
  high_B = jnp.full((B,), 0xFFFFFFFF, jnp.uint32)
  k = jnp.minimum(top_k, V)
  cut_k_B = _largest_cut(keys_BxV, lambda in_BxV: jnp.sum(in_BxV, -1, dtype=jnp.int32) >= k,
                         low_B, high_B, top_k > 0)
  weights_BxV = jnp.where(keys_BxV >= cut_k_B[:, None], weights_BxV, 0.0)
  target_B = top_p * jnp.sum(weights_BxV, axis=-1)  # top-p of the top-k-renormalized mass
  mass_reaches_p = lambda in_BxV: jnp.sum(jnp.where(in_BxV, weights_BxV, 0.0), -1) >= target_B
  return _largest_cut(keys_BxV, mass_reaches_p, cut_k_B, high_B, top_p < 1)


def truncate(logits_BxV: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
  """Sets logits outside the top-k, then outside the top-p nucleus, to -inf.

  Top-k keeps every logit >= the k-th largest; top-p is then computed on the
  top-k-renormalized distribution (the order Hugging Face and vLLM use) and keeps the smallest
  set of largest logits whose mass reaches top_p (at least the largest). Both cuts are
  threshold logits, so ties at a cut are all kept.

  The thresholds are found by bisection over the logits' bit patterns (`_largest_cut`), not by
  sorting: a sort of every row's V logits per step cost far more than the rest of a decode
  step on CPU (B = 256, V = 8192: ~0.43 s per step; the bisection ~26 ms, same cuts).
  """
  keys_BxV = _order_keys(logits_BxV)
  weights_BxV = jnp.exp(logits_BxV - jnp.max(logits_BxV, axis=-1, keepdims=True))
  cut_B = _nucleus_cut(keys_BxV, weights_BxV, top_k, top_p)
  return jnp.where(keys_BxV >= cut_B[:, None], logits_BxV, -jnp.inf)


def inverse_cdf_sample(keys_B: jax.Array, weights_BxV: jax.Array,
                       block: int = _CDF_BLOCK) -> jax.Array:
  """One token per row, token v with probability weights[v] / sum(weights); one uniform each.

  Inverse-CDF sampling: the first token whose cumulative weight exceeds u * total. It draws
  one random number per row where Gumbel-max (`jax.random.categorical`) draws V, which on CPU
  costs more than the rest of a small model's decode step. The cumulative sum is taken in two
  levels, over the sums of blocks of `block` tokens and then inside the one block the draw
  falls in: a cumsum over all V tokens is a slow scan on CPU (~70% of this function at V =
  8192), sums over V / block and block entries are not. Tokens of weight 0 are never chosen.
  """
  B, V = weights_BxV.shape
  num_blocks = -(-V // block)
  weights_BxNxC = jnp.pad(weights_BxV, ((0, 0), (0, num_blocks * block - V))).reshape(
      B, num_blocks, block)
  sums_BxN = jnp.sum(weights_BxNxC, axis=-1)
  cdf_BxN = jnp.cumsum(sums_BxN, axis=-1)
  u_B = jax.vmap(jax.random.uniform)(keys_B) * cdf_BxN[:, -1]
  # Rounding can leave u at the very top of the cdf: then the last block (and the last token)
  # of positive weight.
  last_positive = lambda positive_BxX: (positive_BxX.shape[1] - 1 - jnp.argmax(
      positive_BxX[:, ::-1], axis=-1)).astype(jnp.int32)
  block_B = jnp.sum(cdf_BxN <= u_B[:, None], axis=-1, dtype=jnp.int32)
  block_B = jnp.minimum(block_B, last_positive(sums_BxN > 0))
  before_BxN = jnp.pad(cdf_BxN[:, :-1], ((0, 0), (1, 0)))  # the weight of earlier blocks
  before_B = jnp.take_along_axis(before_BxN, block_B[:, None], axis=-1)[:, 0]
  weights_BxC = jnp.take_along_axis(weights_BxNxC, block_B[:, None, None], axis=1)[:, 0]
  cdf_BxC = before_B[:, None] + jnp.cumsum(weights_BxC, axis=-1)
  within_B = jnp.sum(cdf_BxC <= u_B[:, None], axis=-1, dtype=jnp.int32)
  within_B = jnp.minimum(within_B, last_positive(weights_BxC > 0))
  return block_B * block + within_B


def _argmax(x_BxV: jax.Array) -> jax.Array:
  """First index of each row's maximum (`jnp.argmax`, as two plain reductions: XLA:CPU's
  variadic argmax reduction is several times slower)."""
  V = x_BxV.shape[-1]
  at_max_BxV = x_BxV == jnp.max(x_BxV, axis=-1, keepdims=True)
  return jnp.min(jnp.where(at_max_BxV, jnp.arange(V, dtype=jnp.int32), V), axis=-1)


def _kept(logits_BxV: jax.Array, rules: RuleArrays):
  """What `choose` draws from: the scaled logits, the allowed ones (suppression applied),
  their unnormalized weights exp(allowed - max), and the tokens kept by top-k/top-p."""
  logits_BxV = logits_BxV.astype(jnp.float32)
  t = rules.temperature
  scaled_BxV = logits_BxV / jnp.where(t > 0, t, 1.0)
  allowed_BxV = jnp.where(rules.suppress_V[None, :], -jnp.inf, scaled_BxV)
  weights_BxV = jnp.exp(allowed_BxV - jnp.max(allowed_BxV, axis=-1, keepdims=True))
  keys_BxV = _order_keys(allowed_BxV)
  cut_B = _nucleus_cut(keys_BxV, weights_BxV, rules.top_k, rules.top_p)
  return scaled_BxV, allowed_BxV, weights_BxV, keys_BxV >= cut_B[:, None]


def choose(logits_BxV: jax.Array, rules: RuleArrays, row_keys_B: jax.Array,
           step_B: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Next token of each row at generated index `step_B` ([] or per row), and its log-prob.

  Log-probs follow the module docstring's convention. Row b's randomness is
  `fold_in(row_keys_B[b], step_B[b])`: it depends on the row's identity and the index only,
  never on the batch it is computed in. Greedy and sampled tokens are both
  computed and one is selected (no `lax.cond`: XLA:CPU's conditional costs more than the
  sampling it would skip); top-k/top-p cost nothing when switched off (`_largest_cut`).
  """
  t = rules.temperature
  scaled_BxV, allowed_BxV, weights_BxV, kept_BxV = _kept(logits_BxV, rules)
  logsumexp_B = jax.nn.logsumexp(scaled_BxV, axis=-1)
  step_B = jnp.broadcast_to(step_B, row_keys_B.shape)
  step_keys_B = jax.vmap(jax.random.fold_in)(row_keys_B, step_B)
  sampled_B = inverse_cdf_sample(step_keys_B, jnp.where(kept_BxV, weights_BxV, 0.0))
  token_B = jnp.where(t > 0, sampled_B, _argmax(allowed_BxV))
  forced_B = rules.forced_N.at[step_B].get(mode="fill", fill_value=-1)
  token_B = jnp.where(forced_B >= 0, forced_B, token_B)
  logprob_B = jnp.take_along_axis(scaled_BxV, token_B[:, None], axis=-1)[:, 0] - logsumexp_B
  return token_B, logprob_B


def drawn_logprob(logits_BxV: jax.Array, rules: RuleArrays, token_B: jax.Array) -> jax.Array:
  """log P(`choose` draws token_B[b]): the distribution the sampler draws from, truncation
  and suppression included (unlike the log-prob `choose` reports, module docstring).

  With T > 0: log(w_v / sum of the kept w), w = exp(allowed - max), -inf for a token that
  top-k/top-p or suppression removes. Greedy (T = 0): 0 for the argmax (the first maximum, as
  `choose` takes), -inf for every other token. Forcing is not applied: the caller scores the
  tokens it gives.
  """
  _, allowed_BxV, weights_BxV, kept_BxV = _kept(logits_BxV, rules)
  token_Bx1 = token_B[:, None]
  kept_B = jnp.take_along_axis(kept_BxV, token_Bx1, axis=-1)[:, 0]
  top_B = jnp.max(allowed_BxV, axis=-1)
  mass_B = jnp.sum(jnp.where(kept_BxV, weights_BxV, 0.0), axis=-1)
  sampled_B = jnp.take_along_axis(allowed_BxV, token_Bx1, axis=-1)[:, 0] - top_B - jnp.log(mass_B)
  sampled_B = jnp.where(kept_B, sampled_B, -jnp.inf)
  greedy_B = jnp.where(token_B == _argmax(allowed_BxV), 0.0, -jnp.inf)
  return jnp.where(rules.temperature > 0, sampled_B, greedy_B)


def stop_matched(window_BxW: jax.Array, rules: RuleArrays) -> jax.Array:
  """bool [B]: the row's last emitted tokens (`window`, newest last) end with a stop sequence."""
  stops_XxW = rules.stops_XxW
  same_BxXxW = (stops_XxW[None] == window_BxW[:, None, :]) | (stops_XxW[None] < 0)
  valid_X = jnp.any(stops_XxW >= 0, axis=-1)
  return jnp.any(jnp.all(same_BxXxW, axis=-1) & valid_X[None, :], axis=-1)
