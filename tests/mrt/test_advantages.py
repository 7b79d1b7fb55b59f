"""Advantage estimators: hand-computed values, a NumPy reference, the group invariants and
bad-input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrt_jax
from mrt_jax.mrt import ESTIMATORS, mrt_advantages

S3 = np.sqrt(1.0 / 3.0)  # unbiased std of (1, 0, 0)
OUTCOME = np.array([1.0, 0.0, 0.0], np.float32)
PROGRESS = np.array([[0.5, -0.25], [0.0, 0.25], [1.0, 0.0]], np.float32)
IDS = np.array([[1, 1, 2, 0, 0], [1, 2, 2, 2, 0], [1, 1, 0, 0, 0]], np.int32)
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)


def _adv(estimator, **kw):
  kw = {"group_size": 3, "alpha": 0.5, "eps": 0.0, **kw}
  return np.asarray(mrt_advantages(OUTCOME, PROGRESS, IDS, MASK, estimator=estimator, **kw))


def _rows(values, mask=MASK):
  return np.where(mask, np.array(values, np.float32).reshape(-1, 1), 0.0)


@pytest.mark.parametrize("estimator,kw,per_rollout", [
    ("grpo", {}, [2 / 3 / S3, -1 / 3 / S3, -1 / 3 / S3]),
    ("grpo", {"std": "biased"}, [np.sqrt(2), -np.sqrt(0.5), -np.sqrt(0.5)]),
    ("dr_grpo", {}, [2 / 3, -1 / 3, -1 / 3]),
    ("rloo", {}, [1.0, -0.5, -0.5]),                        # r_i − mean of the other two
])
def test_outcome_estimators_hand_computed(estimator, kw, per_rollout):
  np.testing.assert_allclose(_adv(estimator, **kw), _rows(per_rollout), rtol=1e-6, atol=1e-6)


def test_grpo_eps_is_added_to_the_std():
  np.testing.assert_allclose(_adv("grpo", eps=0.1)[:, 0], [2 / 3 / (S3 + 0.1), -1 / 3 / (S3 + 0.1),
                                                          -1 / 3 / (S3 + 0.1)], rtol=1e-6)


def test_mrt_hand_computed():
  # A = A_out + α·p_{block}; answer tokens (id 0) get A_out; α = 0.5, dr_grpo outcome.
  a, b = 2 / 3, -1 / 3
  expected = [[a + 0.25, a + 0.25, a - 0.125, a, a],
              [b, b + 0.125, b + 0.125, b + 0.125, b],
              [b + 0.5, b + 0.5, b, b, 0.0]]
  np.testing.assert_allclose(_adv("mrt", outcome_norm="dr_grpo"), expected, rtol=1e-6, atol=1e-6)
  grpo = _adv("mrt")  # default grpo-style outcome: only the outcome part changes
  np.testing.assert_allclose(grpo - _adv("grpo"), np.array(expected) - _rows([a, b, b]),
                             rtol=0, atol=1e-6)


def test_mrt_prefix_hand_computed():
  # One prefix, G = 4: rollouts 0, 1 terminated (J̄_term = 0.5), 2, 3 continued.
  # r' = [1, 0, 1 + 1·(1 − 0.5), 0 + 1·(0 − 0.5)] = [1, 0, 1.5, −0.5]; dr_grpo: r' − 0.5.
  adv = mrt_advantages(np.array([1, 0, 1, 0], np.float32), np.zeros((4, 2), np.float32),
                       np.zeros((4, 3), np.int32), np.ones((4, 3), bool), group_size=4,
                       alpha=1.0, estimator="mrt_prefix", outcome_norm="dr_grpo",
                       terminated=np.array([True, True, False, False]))
  np.testing.assert_allclose(np.asarray(adv), _rows([0.5, -0.5, 1.0, -1.0], np.ones((4, 3))),
                             rtol=1e-6, atol=1e-6)


def _numpy_mrt(r, p, ids, mask, G, alpha, eps):
  """DESIGN.md §1 in float64: GRPO outcome advantage (unbiased std) plus α·p of the block."""
  r_PxG = r.astype(np.float64).reshape(-1, G)
  a_out = ((r_PxG - r_PxG.mean(1, keepdims=True)) / (r_PxG.std(1, ddof=1, keepdims=True) + eps))
  a_out = a_out.reshape(-1)
  adv = np.zeros(ids.shape)
  for b in range(ids.shape[0]):
    for t in range(ids.shape[1]):
      j = ids[b, t]
      adv[b, t] = (a_out[b] + (alpha * p[b, j - 1] if j > 0 else 0.0)) if mask[b, t] else 0.0
  return adv


def test_mrt_matches_numpy_reference_on_prime_shapes():
  rng = np.random.default_rng(1)
  P, G, N, T = 3, 7, 5, 11
  B = P * G
  r = rng.random(B).astype(np.float32)
  p = rng.normal(size=(B, N)).astype(np.float32)
  ids = rng.integers(0, N + 1, size=(B, T)).astype(np.int32)
  mask = rng.random((B, T)) > 0.2
  adv = mrt_advantages(r, p, ids, mask, group_size=G, alpha=0.3)
  np.testing.assert_allclose(np.asarray(adv), _numpy_mrt(r, p, ids, mask, G, 0.3, 1e-6),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo"])
def test_outcome_advantages_sum_to_zero_within_groups(estimator):
  rng = np.random.default_rng(2)
  B, G = 35, 5
  r = rng.random(B).astype(np.float32)
  adv = mrt_advantages(r, np.zeros((B, 1), np.float32), np.zeros((B, 3), np.int32),
                       np.ones((B, 3), bool), group_size=G, alpha=0.0, estimator=estimator)
  sums_P = np.asarray(adv)[:, 0].reshape(-1, G).sum(1)
  np.testing.assert_allclose(sums_P, np.zeros(B // G), rtol=0, atol=1e-5)


def test_tokens_of_one_block_share_one_progress_term():
  rng = np.random.default_rng(3)
  B, G, N, T = 6, 3, 4, 13
  r = rng.integers(0, 2, size=B).astype(np.float32)
  p = rng.normal(size=(B, N)).astype(np.float32)
  ids = np.sort(rng.integers(0, N + 1, size=(B, T)), axis=1)[:, ::-1].astype(np.int32)
  mask = np.ones((B, T), bool)
  dense = np.asarray(mrt_advantages(r, p, ids, mask, group_size=G, alpha=0.7))
  outcome = np.asarray(mrt_advantages(r, p, ids, mask, group_size=G, alpha=0.7,
                                      estimator="grpo"))
  bonus = dense - outcome
  for b in range(B):
    for j in range(N + 1):
      in_block = bonus[b][ids[b] == j]
      assert np.all(in_block == in_block[:1])  # one shared value per block, exactly
      if in_block.size:
        np.testing.assert_allclose(in_block[0], 0.7 * p[b, j - 1] if j else 0.0, atol=1e-6)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("value", [0.1, 0.7, 1.0, 1 / 3])
def test_all_equal_group_gets_exactly_zero(estimator, value):
  G = 7
  B = 2 * G
  r = np.full(B, value, np.float32)
  extra = {"terminated": np.arange(B) % 2 == 0} if estimator == "mrt_prefix" else {}
  adv = mrt_advantages(r, np.zeros((B, 2), np.float32), np.ones((B, 5), np.int32),
                       np.ones((B, 5), bool), group_size=G, alpha=0.5, estimator=estimator,
                       **extra)
  assert np.all(np.asarray(adv) == 0.0)


@pytest.mark.parametrize("estimator", ["grpo", "mrt"])
def test_masked_tokens_get_exactly_zero(estimator):
  rng = np.random.default_rng(4)
  B, T = 4, 7
  mask = rng.random((B, T)) > 0.5
  adv = np.asarray(mrt_advantages(np.array([1, 0, 0, 1], np.float32),
                                  rng.normal(size=(B, 3)).astype(np.float32),
                                  rng.integers(0, 4, size=(B, T)), mask, group_size=2,
                                  alpha=1.0, estimator=estimator))
  assert np.all(adv[~mask] == 0.0) and np.all(adv[mask] != 0.0)


def test_usable_inside_jit_and_from_the_top_level():
  assert mrt_jax.mrt_advantages is mrt_advantages

  @jax.jit
  def f(r, p, ids, m):
    return mrt_advantages(r, p, ids, m, group_size=3, alpha=0.5, eps=0.0)

  np.testing.assert_allclose(np.asarray(f(jnp.asarray(OUTCOME), PROGRESS, IDS, MASK)),
                             _adv("mrt"), rtol=1e-6, atol=1e-6)


def test_bad_input_errors():
  def call(**kw):
    args = {"outcome": OUTCOME, "progress": PROGRESS, "token_block_ids": IDS,
            "token_mask": MASK, "group_size": 3, "alpha": 0.5}
    args.update(kw)
    return mrt_advantages(**args)

  with pytest.raises(ValueError, match="group_size=2 does not divide the batch size B=3"):
    call(group_size=2)
  with pytest.raises(ValueError, match="alpha=-0.1; expected alpha >= 0"):
    call(alpha=-0.1)
  with pytest.raises(ValueError, match="estimator='ppo' is unknown"):
    call(estimator="ppo")
  with pytest.raises(ValueError, match="std='sample' is unknown"):
    call(std="sample")
  with pytest.raises(ValueError, match="outcome_norm='z' is unknown"):
    call(outcome_norm="z")
  with pytest.raises(ValueError, match=r"progress has shape \(2, 2\)"):
    call(progress=PROGRESS[:2])
  with pytest.raises(ValueError, match=r"token_block_ids has shape \(3, 4\)"):
    call(token_block_ids=IDS[:, :4])
  with pytest.raises(ValueError, match=r"token_block_ids\[0, 2\]=3 is outside \[0, N\]"):
    call(token_block_ids=np.where(IDS == 2, 3, IDS))
  with pytest.raises(ValueError, match="terminated is missing"):
    call(estimator="mrt_prefix")
  with pytest.raises(ValueError, match="group_size=1; expected >= 2"):
    call(group_size=1)
