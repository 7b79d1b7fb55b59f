"""Sample-based metrics: pass@k, pass@1, maj@k with bootstrap intervals, token counts and efficiency.

Conventions (those of the MRT and DeepSeek-R1 papers): pass@1 averaged over n samples per
problem; unbiased pass@k = 1 − C(n−c, k)/C(n, k) for n ≥ k (Chen et al. 2021, "Evaluating Large
Language Models Trained on Code", eq. 1 and its numerically stable product form); maj@k with
bootstrap error bars.

maj@k. Each sample's final answer is mapped to a key by a configurable answer-normalizing function
(`default_answer_key` strips whitespace and a trailing period); a sample with no answer (None)
does not vote. The most frequent key wins; TIES GO TO THE SMALLEST KEY in string order, so the vote
depends only on the multiset of answers, not on sample order. The winner is judged by the verdict
of the first sample that carries the winning key; no votes at all counts as wrong. The point
estimate votes among the first k samples of each problem.

Bootstrap (percentile intervals, seeded numpy Generator): problems are resampled with replacement;
for maj@k each drawn problem also votes among a random k-subset of its n >= k samples, so the
interval reflects both which problems and which samples were drawn.

Letters: P problems, R samples per problem, A distinct answer keys of a problem, C points of an
accuracy-vs-tokens curve, S bootstrap resamples.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

_CHUNK = 64  # Bootstrap resamples drawn per step: bounds memory at _CHUNK × P × R.


class Estimate(NamedTuple):
  """A point estimate with a bootstrap confidence interval."""
  value: float
  ci_low: float
  ci_high: float


def pass_at_k(num_samples, num_correct, k: int) -> np.ndarray:
  """Unbiased pass@k per problem, 1 − C(n−c, k)/C(n, k) (Chen et al. 2021).

  Uses the stable product C(n−c, k)/C(n, k) = ∏_{i=n−c+1}^{n} (1 − k/i) (Chen et al. 2021,
  Figure 3), which never forms a large binomial; exactly 1 when n − c < k.

  Args:
    num_samples: int [P] (or a scalar), n samples drawn for each problem.
    num_correct: int [P] (or a scalar), c correct samples among them, 0 <= c <= n.
    k: the k of pass@k, 1 <= k <= n for every problem.

  Returns:
    float64 [P].
  """
  n_P = np.atleast_1d(np.asarray(num_samples, np.int64))
  c_P = np.atleast_1d(np.asarray(num_correct, np.int64))
  if n_P.ndim != 1 or n_P.shape != c_P.shape or n_P.size == 0:
    raise ValueError(f"num_samples has shape {n_P.shape} and num_correct {c_P.shape}; expected "
                     "the same non-empty shape [P]")
  if k < 1:
    raise ValueError(f"k = {k}; expected k >= 1")
  if np.any(n_P < k):
    p = int(np.argmax(n_P < k))
    raise ValueError(f"pass@k with k = {k} > n = {n_P[p]} samples of problem {p}; the unbiased "
                     "estimator needs n >= k samples per problem")
  if np.any((c_P < 0) | (c_P > n_P)):
    p = int(np.argmax((c_P < 0) | (c_P > n_P)))
    raise ValueError(f"num_correct[{p}] = {c_P[p]}; expected 0 <= c <= n = {n_P[p]}")
  i_1xI = np.arange(1, n_P.max() + 1, dtype=np.float64)[None, :]
  in_product_PxI = (i_1xI > (n_P - c_P)[:, None]) & (i_1xI <= n_P[:, None])
  ratio_P = np.prod(np.where(in_product_PxI, 1.0 - k / i_1xI, 1.0), axis=1)
  return np.where(n_P - c_P < k, 1.0, 1.0 - ratio_P)


def pass_at_1(correct_PxR) -> np.ndarray:
  """pass@1 per problem: the fraction of its R samples that are correct.

  Args:
    correct_PxR: [P, R] verdicts (bool or 0/1).

  Returns:
    float64 [P].
  """
  correct_PxR = np.asarray(correct_PxR, np.float64)
  if correct_PxR.ndim != 2 or correct_PxR.shape[1] < 1:
    raise ValueError(f"correct has shape {correct_PxR.shape}; expected [P, R] with R >= 1")
  return correct_PxR.mean(axis=1)


def _percentiles(stats_S: np.ndarray, confidence: float) -> tuple[float, float]:
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(stats_S, [alpha, 1.0 - alpha])
  return float(low), float(high)


def _check_bootstrap(num_resamples: int, confidence: float) -> None:
  if num_resamples < 1:
    raise ValueError(f"num_resamples = {num_resamples}; expected >= 1")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence = {confidence}; expected a level in (0, 1), e.g. 0.95")


def bootstrap_ci(per_problem, *, num_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> Estimate:
  """Mean over problems with a percentile bootstrap interval (problems resampled).

  Args:
    per_problem: [P] per-problem scores, e.g. `pass_at_1(...)` or `pass_at_k(...)`.
    num_resamples: S, bootstrap resamples.
    confidence: two-sided level of the interval.
    seed: seed of the numpy Generator; the same seed gives the same interval.

  Returns:
    Estimate(mean, ci_low, ci_high).
  """
  x_P = np.asarray(per_problem, np.float64)
  if x_P.ndim != 1 or x_P.size == 0:
    raise ValueError(f"per_problem has shape {x_P.shape}; expected [P] with P >= 1")
  _check_bootstrap(num_resamples, confidence)
  idx_SxP = np.random.default_rng(seed).integers(0, x_P.size, size=(num_resamples, x_P.size))
  return Estimate(float(x_P.mean()), *_percentiles(x_P[idx_SxP].mean(axis=1), confidence))


def default_answer_key(answer: str) -> str:
  """Normalizes a final answer for voting: no whitespace, no trailing period."""
  return "".join(answer.split()).rstrip(".")


def _encode(answers_PxR: Sequence[Sequence[str | None]], correct_PxR,
            key: Callable[[str], str]) -> tuple[np.ndarray, np.ndarray]:
  """Answer ids per sample (-1: no answer), ids in sorted key order, and each id's verdict.

  Returns:
    ids_PxR int, and correct_PxA bool: the verdict of the first sample carrying each key.
  """
  correct_PxR = np.asarray(correct_PxR, bool)
  P = len(answers_PxR)
  if correct_PxR.ndim != 2 or correct_PxR.shape[0] != P:
    raise ValueError(f"correct has shape {correct_PxR.shape}; expected [P, R] with P = {P} "
                     "problems as in answers")
  R = correct_PxR.shape[1]
  ids_PxR = np.full((P, R), -1, np.int64)
  correct_PxA = np.zeros((P, R), bool)  # At most R distinct keys per problem.
  for p, row in enumerate(answers_PxR):
    if len(row) != R:
      raise ValueError(f"answers[{p}] has {len(row)} samples; expected R = {R} as in correct")
    keys = [None if a is None else key(a) for a in row]
    ranks = {k: a for a, k in enumerate(sorted({k for k in keys if k is not None}))}
    for r in reversed(range(R)):  # Reversed: the first sample's verdict is written last.
      if keys[r] is not None:
        ids_PxR[p, r] = ranks[keys[r]]
        correct_PxA[p, ranks[keys[r]]] = correct_PxR[p, r]
  return ids_PxR, correct_PxA


def _vote_correct(ids_XxK: np.ndarray, correct_XxA: np.ndarray) -> np.ndarray:
  """Whether the majority answer of each row is correct; ties go to the smallest id (key)."""
  A = correct_XxA.shape[-1]
  counts_XxA = np.stack([(ids_XxK == a).sum(axis=-1) for a in range(A)], axis=-1)
  winner_X = np.argmax(counts_XxA, axis=-1)  # First maximum = smallest key.
  has_votes_X = counts_XxA.max(axis=-1) > 0
  return has_votes_X & np.take_along_axis(correct_XxA, winner_X[..., None], axis=-1)[..., 0]


def _check_k(k: int, R: int) -> None:
  if not 1 <= k <= R:
    raise ValueError(f"maj@k with k = {k} and n = {R} samples per problem; expected 1 <= k <= n")


def majority_vote(answers: Sequence[str | None],
                  key: Callable[[str], str] = default_answer_key) -> int | None:
  """Index of the first sample carrying the majority answer (None when no sample has one).

  Ties go to the smallest key in string order (module docstring).
  """
  keys = [None if a is None else key(a) for a in answers]
  counts: dict[str, int] = {}
  for k in keys:
    if k is not None:
      counts[k] = counts.get(k, 0) + 1
  if not counts:
    return None
  winner = min(counts, key=lambda k: (-counts[k], k))
  return keys.index(winner)


def maj_at_k(answers_PxR: Sequence[Sequence[str | None]], correct_PxR, k: int,
             key: Callable[[str], str] = default_answer_key) -> np.ndarray:
  """maj@k per problem: 1 if the majority answer of the first k samples is correct.

  Args:
    answers_PxR: P rows of R final answers (str, or None for no answer).
    correct_PxR: [P, R] verdict of each sample.
    k: voters per problem, 1 <= k <= R.
    key: answer-normalizing function; answers with equal keys vote together.

  Returns:
    float64 [P] of 0/1.
  """
  ids_PxR, correct_PxA = _encode(answers_PxR, correct_PxR, key)
  _check_k(k, ids_PxR.shape[1])
  return _vote_correct(ids_PxR[:, :k], correct_PxA).astype(np.float64)


def maj_at_k_ci(answers_PxR: Sequence[Sequence[str | None]], correct_PxR, k: int, *,
                key: Callable[[str], str] = default_answer_key, num_resamples: int = 1000,
                confidence: float = 0.95, seed: int = 0) -> Estimate:
  """maj@k averaged over problems, with a bootstrap interval (problems and k-subsets resampled).

  Args:
    answers_PxR, correct_PxR, k, key: as in `maj_at_k`.
    num_resamples: S, bootstrap resamples.
    confidence: two-sided level of the interval.
    seed: seed of the numpy Generator; the same seed gives the same interval.

  Returns:
    Estimate(maj@k of the first k samples averaged over problems, ci_low, ci_high).
  """
  ids_PxR, correct_PxA = _encode(answers_PxR, correct_PxR, key)
  P, R = ids_PxR.shape
  _check_k(k, R)
  if P == 0:
    raise ValueError("answers has no problems; expected P >= 1")
  _check_bootstrap(num_resamples, confidence)
  rng = np.random.default_rng(seed)
  stats = []
  for start in range(0, num_resamples, _CHUNK):
    s = min(_CHUNK, num_resamples - start)
    prob_SxP = rng.integers(0, P, size=(s, P))
    subset_SxPxK = np.argsort(rng.random((s, P, R)), axis=-1)[..., :k]  # Random k-subsets.
    ids_SxPxK = ids_PxR[prob_SxP[..., None], subset_SxPxK]
    stats.append(_vote_correct(ids_SxPxK, correct_PxA[prob_SxP]).mean(axis=-1))
  value = float(maj_at_k(answers_PxR, correct_PxR, k, key).mean())
  return Estimate(value, *_percentiles(np.concatenate(stats), confidence))


def mean_token_counts(thinking_tokens, answer_tokens) -> dict[str, float]:
  """Mean thinking and answer tokens over all samples.

  Args:
    thinking_tokens: [P, R] (any shape) thinking tokens per sample (up to the end of thinking).
    answer_tokens: same shape, tokens after the end of thinking.

  Returns:
    {"mean_thinking_tokens": float, "mean_answer_tokens": float}.
  """
  thinking = np.asarray(thinking_tokens, np.float64)
  answer = np.asarray(answer_tokens, np.float64)
  if thinking.shape != answer.shape or thinking.size == 0:
    raise ValueError(f"thinking_tokens has shape {thinking.shape} and answer_tokens "
                     f"{answer.shape}; expected the same non-empty shape")
  return {"mean_thinking_tokens": float(thinking.mean()),
          "mean_answer_tokens": float(answer.mean())}


def tokens_to_reach(tokens_C, accuracy_C, target: float) -> float | None:
  """Tokens an accuracy-vs-tokens curve needs to first reach `target` (linear interpolation).

  Args:
    tokens_C: [C] mean tokens spent at each point, non-decreasing.
    accuracy_C: [C] accuracy at each point.
    target: accuracy to reach.

  Returns:
    The interpolated token count where the curve first reaches `target`; None if it never does
    (None rather than inf so that it stays valid JSON).
  """
  tokens_C = np.asarray(tokens_C, np.float64)
  acc_C = np.asarray(accuracy_C, np.float64)
  if tokens_C.ndim != 1 or tokens_C.shape != acc_C.shape or tokens_C.size == 0:
    raise ValueError(f"tokens have shape {tokens_C.shape} and accuracy {acc_C.shape}; expected "
                     "the same non-empty shape [C]")
  if np.any(np.diff(tokens_C) < 0):
    i = int(np.argmax(np.diff(tokens_C) < 0))
    raise ValueError(f"tokens[{i + 1}] = {tokens_C[i + 1]:g} < tokens[{i}] = {tokens_C[i]:g}; "
                     "expected a non-decreasing token axis")
  reached_C = acc_C >= target
  if not reached_C.any():
    return None
  i = int(np.argmax(reached_C))
  if i == 0:
    return float(tokens_C[0])
  t = (target - acc_C[i - 1]) / (acc_C[i] - acc_C[i - 1])
  return float(tokens_C[i - 1] + t * (tokens_C[i] - tokens_C[i - 1]))


def token_efficiency(ref_tokens_C, ref_accuracy_C, tokens_C, accuracy_C,
                     target: float | None = None) -> float | None:
  """How many times fewer tokens a model needs than a reference to reach an accuracy.

  Args:
    ref_tokens_C, ref_accuracy_C: the reference (e.g. base model) accuracy-vs-tokens curve.
    tokens_C, accuracy_C: the model's curve.
    target: accuracy to reach; defaults to the reference's best accuracy (MRT paper's token
      efficiency: tokens to match the base model's peak).

  Returns:
    reference tokens / model tokens at `target` (> 1: the model is more efficient), or None if
    either curve never reaches it or the model reaches it at 0 tokens (an unbounded ratio).
  """
  if target is None:
    target = float(np.max(np.asarray(ref_accuracy_C, np.float64)))
  ref = tokens_to_reach(ref_tokens_C, ref_accuracy_C, target)
  ours = tokens_to_reach(tokens_C, accuracy_C, target)
  if ref is None or ours is None or ours == 0:
    return None
  return ref / ours
