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


# PROGRESS's present blocks (a trained token carries the id): rows 0 and 1 both blocks, row 2
# only block 1 (its block 2 has no token), so the group's blocks are 0.5, −0.25, 0, 0.25, 1.
P_MEAN = 0.3                                        # 1.5 / 5
P_STD = np.sqrt((0.04 + 0.3025 + 0.09 + 0.0025 + 0.49) / 4)  # unbiased, squared deviations


@pytest.mark.parametrize("progress_norm,p_tilde", [
    ("center", [[0.5 - P_MEAN, -0.25 - P_MEAN], [-P_MEAN, 0.25 - P_MEAN], [1.0 - P_MEAN, 0.0]]),
    ("standardize", [[(0.5 - P_MEAN) / P_STD, (-0.25 - P_MEAN) / P_STD],
                     [-P_MEAN / P_STD, (0.25 - P_MEAN) / P_STD], [(1.0 - P_MEAN) / P_STD, 0.0]]),
])
def test_progress_norms_hand_computed(progress_norm, p_tilde):
  # As test_mrt_hand_computed with p replaced by p̃ (row 2's absent block 2 is never read).
  a, b = 2 / 3, -1 / 3
  q = np.array(p_tilde)
  expected = [[a + q[0, 0] / 2, a + q[0, 0] / 2, a + q[0, 1] / 2, a, a],
              [b + q[1, 0] / 2, b + q[1, 1] / 2, b + q[1, 1] / 2, b + q[1, 1] / 2, b],
              [b + q[2, 0] / 2, b + q[2, 0] / 2, b, b, 0.0]]
  np.testing.assert_allclose(_adv("mrt", outcome_norm="dr_grpo", progress_norm=progress_norm),
                             expected, rtol=1e-6, atol=1e-6)


def _numpy_progress_norm(p, ids, mask, G, norm, eps):
  """p̃ in float64: statistics over the blocks of a group that own a trained token."""
  B, N = p.shape
  present = np.array([[np.any(mask[b] & (ids[b] == j + 1)) for j in range(N)] for b in range(B)])
  out = p.astype(np.float64).copy()
  for g in range(B // G):
    rows = slice(g * G, (g + 1) * G)
    vals = p[rows][present[rows]].astype(np.float64)
    out[rows] = p[rows] - vals.mean()
    if norm == "standardize":
      out[rows] /= vals.std(ddof=1) + eps
  return out


def _random_groups(seed, P=3, G=5, N=6, T=17):
  """Outcomes r [B], progress p [B, N] (standard normal), sorted block ids [B, T] in 0..N and a
  mask dropping about 30% of the tokens, for B = P·G."""
  rng = np.random.default_rng(seed)
  B = P * G
  r = rng.integers(0, 2, size=B).astype(np.float32)
  p = rng.normal(size=(B, N)).astype(np.float32)
  ids = np.sort(rng.integers(0, N + 1, size=(B, T)), axis=1).astype(np.int32)
  return r, p, ids, rng.random((B, T)) > 0.3


@pytest.mark.parametrize("norm", ["center", "standardize"])
def test_progress_norms_match_numpy_reference(norm):
  G = 5
  r, p, ids, mask = _random_groups(5, G=G)
  adv = mrt_advantages(r, p, ids, mask, group_size=G, alpha=0.4, progress_norm=norm)
  expected = _numpy_mrt(r, _numpy_progress_norm(p, ids, mask, G, norm, 1e-6), ids, mask, G,
                        0.4, 1e-6)
  np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-5, atol=1e-5)


def test_centered_progress_makes_a_zero_progress_block_cost():
  # One group: rollout 0 checks two useful blocks, rollout 1 a useful block and a re-check
  # (p = 0); same outcome. Under "none" the re-check gets A_out alone; centered, less.
  p = np.array([[0.4, 0.4], [0.4, 0.0]], np.float32)
  ids = np.array([[1, 2, 0], [1, 2, 0]], np.int32)
  kw = {"group_size": 2, "alpha": 1.0}
  args = (np.array([1.0, 1.0], np.float32), p, ids, np.ones((2, 3), bool))
  none = np.asarray(mrt_advantages(*args, **kw))
  centered = np.asarray(mrt_advantages(*args, progress_norm="center", **kw))
  assert none[1, 1] == 0.0 and centered[1, 1] == pytest.approx(-0.3)
  assert centered[0, 1] == pytest.approx(0.1) and centered[1, 2] == 0.0  # answer: A_out only


def test_flat_price_charges_only_the_flat_blocks_of_right_traces():
  # One group of 4: the group's present blocks are 0.4, 0.0, 0.4, 0.01, 0.4, 0.0, 0.0, 0.3
  # (mean 0.18875). Rows 0 and 1 end right, rows 2 and 3 wrong. τ = 0.02: row 0's re-check
  # (0.0) and row 1's near-flat block (0.01 <= τ) are charged the mean; row 2's flat block
  # is not (its trace fails), nor any block that makes progress (0.3, 0.4 > τ).
  p = np.array([[0.4, 0.0], [0.4, 0.01], [0.4, 0.0], [0.0, 0.3]], np.float32)
  ids = np.array([[1, 2, 0], [1, 2, 0], [1, 2, 0], [1, 2, 0]], np.int32)
  r = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
  kw = {"group_size": 4, "alpha": 2.0, "outcome_norm": "dr_grpo", "progress_norm": "flat_price",
        "flat_threshold": 0.02}
  adv = np.asarray(mrt_advantages(r, p, ids, np.ones((4, 3), bool), **kw))
  m = (0.4 * 3 + 0.01 + 0.3) / 8
  p_tilde = [[0.4, -m], [0.4, 0.01 - m], [0.4, 0.0], [0.0, 0.3]]
  a_out = [0.5, 0.5, -0.5, -0.5]
  expected = [[a_out[i] + 2.0 * p_tilde[i][0], a_out[i] + 2.0 * p_tilde[i][1], a_out[i]]
              for i in range(4)]
  np.testing.assert_allclose(adv, expected, rtol=1e-6, atol=1e-6)
  # Row 3's first block (p = 0 <= τ) is flat, but its trace fails: plain progress there.
  assert adv[3, 0] == pytest.approx(-0.5)
  # τ below 0 leaves no block flat: exactly the plain ("none") advantages.
  plain = np.asarray(mrt_advantages(r, p, ids, np.ones((4, 3), bool),
                                    **{**kw, "progress_norm": "none"}))
  below = np.asarray(mrt_advantages(r, p, ids, np.ones((4, 3), bool),
                                    **{**kw, "flat_threshold": -1.0}))
  np.testing.assert_array_equal(below, plain)


def test_flat_price_stop_charges_a_decision_to_continue_only_when_nothing_follows():
  # One right trace (and a wrong one, so the group has outcome contrast): blocks of 2 tokens
  # with p = 0.4, 0.0, 0.4, 0.0. Block 2, a re-check before the last useful block, is charged
  # on its content only; block 4, after it, on both tokens, its first (the decision to go on
  # thinking) included. Under flat_price both are charged on every token.
  p = np.array([[0.4, 0.0, 0.4, 0.0], [0.2, 0.0, 0.0, 0.0]], np.float32)
  ids = np.array([[1, 1, 2, 2, 3, 3, 4, 4, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0]], np.int32)
  mask = np.ones((2, 9), bool)
  r = np.array([1.0, 0.0], np.float32)
  kw = {"group_size": 2, "alpha": 1.0, "outcome_norm": "dr_grpo"}
  m = (0.4 + 0.0 + 0.4 + 0.0 + 0.2) / 5  # the group's present blocks
  stop = np.asarray(mrt_advantages(r, p, ids, mask, progress_norm="flat_price_stop", **kw))
  block = np.asarray(mrt_advantages(r, p, ids, mask, progress_norm="flat_price", **kw))
  a = 0.5
  np.testing.assert_allclose(stop[0], [a + 0.4, a + 0.4, a, a - m, a + 0.4, a + 0.4, a - m,
                                       a - m, a], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(block[0], [a + 0.4, a + 0.4, a - m, a - m, a + 0.4, a + 0.4,
                                        a - m, a - m, a], rtol=1e-6, atol=1e-6)
  # The wrong trace is never charged: plain progress, under both.
  np.testing.assert_allclose(stop[1], [-a + 0.2, -a + 0.2] + [-a] * 7, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(stop[1], block[1])


@pytest.mark.parametrize("norm", ["flat_price", "flat_price_stop"])
def test_flat_price_matches_numpy_reference(norm):
  G = 5
  r, p, ids, mask = _random_groups(11, G=G)
  p = np.round(p / 10, 2).astype(np.float32)  # about 6 blocks in 10 flat at τ = 0.03
  B, N = p.shape
  T = ids.shape[1]
  tau = 0.03
  mean = _numpy_progress_norm(p, ids, mask, G, "center", 1e-6) - p  # −mean, broadcast
  price = np.maximum(-mean, 0.0) * ((r[:, None] > 0) & (p <= np.float32(tau)))
  adv = mrt_advantages(r, p, ids, mask, group_size=G, alpha=1.5, progress_norm=norm,
                       flat_threshold=tau)
  expected = _numpy_mrt(r, p - price, ids, mask, G, 1.5, 1e-6)
  if norm == "flat_price_stop":  # a block's first token: charged only if nothing follows
    present = np.array([[np.any(mask[b] & (ids[b] == j + 1)) for j in range(N)]
                        for b in range(B)])
    for b in range(B):
      for t in range(T):
        j = ids[b, t]
        if j > 0 and (t == 0 or ids[b, t - 1] != j) and mask[b, t]:
          rest = p[b, j - 1:][present[b, j - 1:]].astype(np.float64).sum()
          if rest > tau:
            expected[b, t] += 1.5 * price[b, j - 1]
  np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "center", "standardize"])
def test_a_group_of_equal_progress_normalizes_to_exactly_zero(norm):
  B, G = 6, 3
  adv = mrt_advantages(np.ones(B, np.float32), np.full((B, 2), 0.25, np.float32),
                       np.ones((B, 4), np.int32), np.ones((B, 4), bool), group_size=G,
                       alpha=1.0, eps=0.0, progress_norm=norm)
  expected = 0.25 if norm == "none" else 0.0
  assert np.all(np.asarray(adv) == np.float32(expected))


def _numpy_mrt(r, p, ids, mask, G, alpha, eps):
  """The dense MRT advantage in float64: GRPO outcome advantage (unbiased std) + α·p of the block."""
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
  if estimator.startswith("termination"):  # no group baseline: J equal to r gives zero
    extra = {"success": np.full((B, 3), value, np.float32)}
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
  with pytest.raises(ValueError, match="progress_norm='z' is unknown"):
    call(progress_norm="z")
  with pytest.raises(ValueError, match="flat_threshold=nan; expected a finite number"):
    call(progress_norm="flat_price", flat_threshold=float("nan"))
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


def _termination_reference(r_B, success_BxN1, ids_BxT, mask_BxT, dense):
  """NumPy loops: r − J_0 per rollout, or r − J_{j−1} in block j and r − J_N on the answer."""
  B, T = ids_BxT.shape
  out = np.zeros((B, T))
  for b in range(B):
    n = max([ids_BxT[b, t] for t in range(T) if mask_BxT[b, t]] + [0])
    for t in range(T):
      if mask_BxT[b, t]:
        j = ids_BxT[b, t]
        col = 0 if not dense else (j - 1 if j > 0 else n)
        out[b, t] = r_B[b] - success_BxN1[b, col]
  return out


@pytest.mark.parametrize("estimator", ["termination", "termination_dense"])
def test_termination_baselines_match_numpy(estimator):
  rng = np.random.default_rng(11)
  G, P, T = 3, 2, 13
  B = G * P
  r = rng.integers(0, 2, size=B).astype(np.float32)
  num_blocks = np.array([3, 1, 0, 2, 3, 2])
  ids = np.zeros((B, T), np.int32)
  for b, n in enumerate(num_blocks):  # blocks 1..n of 2-4 tokens, then answer tokens
    t = 0
    for j in range(1, n + 1):
      width = int(rng.integers(2, 5))
      ids[b, t:t + width] = j
      t += width
  mask = np.arange(T)[None, :] < rng.integers(T - 2, T + 1, size=(B, 1))
  success = rng.random((B, 4)).astype(np.float32)
  success[num_blocks[:, None] < np.arange(4)[None, :]] = 7.0  # past N: never read
  adv = np.asarray(mrt_advantages(r, np.zeros((B, 3), np.float32), ids, mask, group_size=G,
                                  alpha=0.5, estimator=estimator, success=success))
  ref = _termination_reference(r, success, ids, mask, estimator == "termination_dense")
  np.testing.assert_allclose(adv, ref, rtol=0, atol=1e-6)
  if estimator == "termination":
    np.testing.assert_array_equal(adv[:, 0], r - success[:, 0])


def test_termination_needs_success_and_mrt_prefix_needs_a_terminated_rollout():
  kwargs = dict(group_size=2, alpha=1.0)
  r, p = np.array([1, 0, 1, 1], np.float32), np.zeros((4, 2), np.float32)
  ids, mask = np.ones((4, 3), np.int32), np.ones((4, 3), bool)
  with pytest.raises(ValueError, match="success is missing"):
    mrt_advantages(r, p, ids, mask, estimator="termination", **kwargs)
  with pytest.raises(ValueError, match=r"success has shape \(4, 2\); expected \[B, N\+1\]"):
    mrt_advantages(r, p, ids, mask, estimator="termination", success=p, **kwargs)
  with pytest.raises(ValueError, match="success is given"):
    mrt_advantages(r, p, ids, mask, estimator="mrt", success=np.zeros((4, 3)), **kwargs)
  with pytest.raises(ValueError, match=r"terminated: group 1 \(rows 2...3\) has no terminated"):
    mrt_advantages(r, p, ids, mask, estimator="mrt_prefix",
                   terminated=np.array([True, False, False, False]), **kwargs)
