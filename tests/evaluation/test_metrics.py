"""pass@k against brute-force subset enumeration, maj@k on constructed votes, bootstrap intervals,
token counts and token efficiency, and bad input."""

import itertools

import numpy as np
import pytest

from mrt_jax.evaluation import (bootstrap_ci, maj_at_k, maj_at_k_ci, majority_vote,
                                mean_token_counts, pass_at_1, pass_at_k, token_efficiency,
                                tokens_to_reach)


def _brute_force_pass_at_k(n, c, k):
  """Fraction of the k-subsets of n samples (the first c correct) holding a correct one."""
  subsets = list(itertools.combinations(range(n), k))
  return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_pass_at_k_equals_brute_force(k):
  cases = [(n, c) for n in (k, k + 1, 7, 11, 13) if n >= k for c in range(n + 1)]
  n_P, c_P = np.array(cases).T
  expected_P = [_brute_force_pass_at_k(n, c, k) for n, c in cases]
  np.testing.assert_allclose(pass_at_k(n_P, c_P, k), expected_P, rtol=0, atol=1e-12)


def test_pass_at_k_scalar_large_n_and_pass_at_1():
  np.testing.assert_allclose(pass_at_k(200, 3, 100), 1 - (100 * 99 * 98) / (200 * 199 * 198),
                             rtol=0, atol=1e-12)
  correct_PxR = np.array([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
  np.testing.assert_allclose(pass_at_1(correct_PxR), [0.6, 0.0, 1.0], rtol=0, atol=1e-12)
  np.testing.assert_allclose(pass_at_k([5, 5, 5], correct_PxR.sum(1), 1), pass_at_1(correct_PxR),
                             rtol=0, atol=1e-12)


def test_pass_at_k_bad_input():
  with pytest.raises(ValueError, match=r"k = 5 > n = 4 samples of problem 1"):
    pass_at_k([8, 4], [1, 1], 5)
  with pytest.raises(ValueError, match=r"num_correct\[0\] = 9; expected 0 <= c <= n = 8"):
    pass_at_k([8], [9], 2)
  with pytest.raises(ValueError, match="k = 0; expected k >= 1"):
    pass_at_k([8], [1], 0)


# Four problems, four samples each; answers are normalized (whitespace, trailing period).
ANSWERS = [["42", " 4 2.", "41", None],  # "42" twice: correct.
           ["7", "8", "8", "7"],         # Tie 7 vs 8: the smallest key "7" wins, judged wrong.
           [None, None, None, None],     # No votes: wrong.
           ["x", "y", "z", "y"]]         # "y" wins, judged by its first sample: correct.
CORRECT = [[True, True, False, False],
           [False, True, True, False],
           [False, False, False, False],
           [False, True, False, False]]


def test_maj_at_k_constructed():
  np.testing.assert_array_equal(maj_at_k(ANSWERS, CORRECT, 4), [1, 0, 0, 1])
  # First k samples only: with k = 3, problem 1 votes 7, 8, 8 → "8" (correct) and problem 3
  # votes x, y, z → three-way tie, "x" (wrong).
  np.testing.assert_array_equal(maj_at_k(ANSWERS, CORRECT, 3), [1, 1, 0, 0])
  np.testing.assert_array_equal(maj_at_k(ANSWERS, CORRECT, 1), [1, 0, 0, 0])
  # A coarser key merges answers: under str.lower "x" ties "y" 2-2 and wins as the smaller key;
  # under str.strip "x" and "X" are distinct and "y" wins with 2 votes.
  answers, correct = [["x", "X", "y", "y"]], [[True, True, False, False]]
  np.testing.assert_array_equal(maj_at_k(answers, correct, 4, key=str.lower), [1])
  np.testing.assert_array_equal(maj_at_k(answers, correct, 4, key=str.strip), [0])


def test_majority_vote_ties_do_not_depend_on_order():
  for perm in itertools.permutations(["b", "a", "b", "a", None]):
    winner = majority_vote(perm)
    assert perm[winner] == "a"
  assert majority_vote([None, None]) is None
  assert majority_vote(["3 ", "1", "3."]) == 0


def test_maj_at_k_bad_input():
  with pytest.raises(ValueError, match="k = 5 and n = 4 samples"):
    maj_at_k(ANSWERS, CORRECT, 5)
  with pytest.raises(ValueError, match=r"answers\[1\] has 3 samples; expected R = 4"):
    maj_at_k([["1"] * 4, ["1"] * 3], [[True] * 4] * 2, 2)


def _random_votes(P, R, seed):
  rng = np.random.default_rng(seed)
  answers_PxR = rng.integers(0, 3, (P, R))
  correct_PxR = answers_PxR == 0
  return [[str(a) for a in row] for row in answers_PxR], correct_PxR


def test_bootstrap_ci_contains_estimate_and_is_seeded():
  x_P = np.random.default_rng(1).random(31)
  est = bootstrap_ci(x_P, num_resamples=500, seed=3)
  assert est.ci_low <= est.value <= est.ci_high and est.ci_low < est.ci_high
  assert est.value == pytest.approx(x_P.mean(), abs=1e-12)
  assert bootstrap_ci(x_P, num_resamples=500, seed=3) == est
  assert bootstrap_ci(x_P, num_resamples=500, seed=4) != est
  with pytest.raises(ValueError, match="confidence = 1.5"):
    bootstrap_ci(x_P, confidence=1.5)


@pytest.mark.parametrize("R, k", [(5, 5), (11, 4)])
def test_maj_at_k_ci_contains_estimate_and_is_seeded(R, k):
  answers_PxR, correct_PxR = _random_votes(29, R, seed=R)
  est = maj_at_k_ci(answers_PxR, correct_PxR, k, num_resamples=300, seed=7)
  assert est.value == pytest.approx(maj_at_k(answers_PxR, correct_PxR, k).mean(), abs=1e-12)
  assert est.ci_low <= est.value <= est.ci_high and est.ci_low < est.ci_high
  assert maj_at_k_ci(answers_PxR, correct_PxR, k, num_resamples=300, seed=7) == est


def test_maj_at_k_ci_degenerate():
  # Every problem's majority is correct whatever is resampled: the interval collapses.
  est = maj_at_k_ci([["1", "1", "2"]] * 6, [[True, True, False]] * 6, 3, num_resamples=100)
  assert tuple(est) == (1.0, 1.0, 1.0)


def test_token_counts_and_efficiency():
  assert mean_token_counts([[100, 300], [200, 0]], [[10, 20], [30, 40]]) == {
      "mean_thinking_tokens": 150.0, "mean_answer_tokens": 25.0}
  tokens_C, acc_C = [100, 200, 400], [0.2, 0.5, 0.7]
  assert tokens_to_reach(tokens_C, acc_C, 0.6) == pytest.approx(300, abs=1e-9)
  assert tokens_to_reach(tokens_C, acc_C, 0.1) == 100
  assert tokens_to_reach(tokens_C, acc_C, 0.7) == 400
  assert tokens_to_reach(tokens_C, acc_C, 0.8) is None
  # Reaching the reference's peak 0.7 at 200 tokens instead of 400: twice as efficient.
  assert token_efficiency(tokens_C, acc_C, tokens_C, [0.3, 0.7, 0.75]) == pytest.approx(2.0)
  assert token_efficiency(tokens_C, acc_C, tokens_C, [0.1, 0.2, 0.3]) is None
  with pytest.raises(ValueError, match=r"tokens\[2\] = 150 < tokens\[1\] = 200"):
    tokens_to_reach([100, 200, 150], acc_C, 0.5)
