"""Policy losses, aggregations, KL and SFT: NumPy references of the published formulas (values
and gradients), micro-batch invariance, invariants and bad-input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrt_jax.learner import (AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, LossConfig,
                             combine_metrics, kl_divergence, normalizer, policy_loss, sft_loss)

B, T = 7, 11


def _batch(seed=0, b=B, t=T):
  rng = np.random.default_rng(seed)
  lp = -rng.uniform(0.1, 3.0, size=(b, t))
  data = {
      "logprobs": lp, "old_logprobs": lp + 0.3 * rng.normal(size=(b, t)),
      "advantages": rng.normal(size=(b, t)), "mask": rng.random((b, t)) > 0.3,
      "ref_logprobs": lp + 0.2 * rng.normal(size=(b, t)),
      "sampler_logprobs": lp + 0.3 * rng.normal(size=(b, t)) + 0.1 * rng.normal(size=(b, t)),
      "entropy": rng.uniform(0.0, 2.0, size=(b, t)),
  }
  data["mask"][2] = False  # an all-padding row: not a sequence for the seq_mean aggregations
  return {k: v if k == "mask" else v.astype(np.float32) for k, v in data.items()}


_NP_KL = {"k1": (lambda d: d, lambda d: np.ones_like(d)),
          "k2": (lambda d: 0.5 * d * d, lambda d: d),
          "k3": (lambda d: np.exp(-d) + d - 1.0, lambda d: 1.0 - np.exp(-d))}


def _numpy_loss(cfg, logprobs, old_logprobs, advantages, mask, ref_logprobs, sampler_logprobs,
                entropy):
  """Published formulas in float64: (loss, d loss / d logprobs, clip fractions)."""
  lp, old, a = (x.astype(np.float64) for x in (logprobs, old_logprobs, advantages))
  m = mask.astype(np.float64)
  length = m.sum(1, keepdims=True)
  if cfg.policy_loss == "gspo":  # s_b = exp(mean_t log-ratio); d s_{b,t}/d lp_t = s_b
    log_s = ((lp - old) * m).sum(1, keepdims=True) / np.maximum(length, 1)
    ratio = np.broadcast_to(np.exp(log_s), lp.shape)
  else:
    ratio = np.exp(lp - old)
  unclipped, clipped = -ratio * a, -np.clip(ratio, 1 - cfg.eps_low, 1 + cfg.eps_high) * a
  pg = np.maximum(unclipped, clipped)
  g = np.where(unclipped >= clipped, -a * ratio, 0.0)
  if cfg.policy_loss == "dual_clip":
    dual = (a < 0) & (pg > -cfg.dual_clip_c * a)
    pg, g = np.where(dual, -cfg.dual_clip_c * a, pg), np.where(dual, 0.0, g)
  if cfg.tis_cap is not None:
    w = np.minimum(np.exp(old - sampler_logprobs), cfg.tis_cap)
    pg, g = w * pg, w * g
  delta = lp - ref_logprobs
  kl, dkl = (f(delta) for f in _NP_KL[cfg.kl_estimator])
  per = pg + cfg.beta * kl - cfg.entropy_coef * entropy
  g = g + cfg.beta * dkl
  num_seqs = (length > 0).sum()
  weights = {"token_mean": m / m.sum(),
             "seq_mean_token_mean": m / np.maximum(length, 1) / num_seqs,
             "seq_mean_token_sum_norm": m / (cfg.max_len * num_seqs)}[cfg.aggregation]
  fracs = {"clip_frac_low": ((a < 0) & (ratio < 1 - cfg.eps_low) & mask).sum() / m.sum(),
           "clip_frac_high": ((a > 0) & (ratio > 1 + cfg.eps_high) & mask).sum() / m.sum()}
  return (weights * per).sum(), weights * g, fracs


def _loss_and_grad(cfg, data, norm=None):
  """Eager on purpose: dozens of configs, each compiled once, would dominate the test time."""
  def f(lp):
    return policy_loss(cfg, lp, data["old_logprobs"], data["advantages"], data["mask"],
                       norm=norm, ref_logprobs=data.get("ref_logprobs"),
                       sampler_logprobs=data.get("sampler_logprobs"), entropy=data.get("entropy"))
  (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(data["logprobs"])
  return loss, metrics, grad


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_matches_numpy_reference_values_and_gradients(name, aggregation):
  cfg = LossConfig(policy_loss=name, aggregation=aggregation, eps_high=0.28, max_len=T,
                   beta=0.04, entropy_coef=0.01, tis_cap=2.0)
  data = _batch()
  loss, metrics, grad = _loss_and_grad(cfg, data)
  ref_loss, ref_grad, fracs = _numpy_loss(cfg, **data)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-6, atol=1e-6)
  for key, value in fracs.items():
    np.testing.assert_allclose(float(metrics[key]), value, rtol=1e-6)


def test_jitted_with_static_config_matches_eager():
  cfg = LossConfig(policy_loss="gspo", beta=0.04, tis_cap=2.0)
  data = _batch(6)
  jitted = jax.jit(_loss_and_grad, static_argnums=0)(cfg, data)
  for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(_loss_and_grad(cfg, data))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("estimator", sorted(KL_ESTIMATORS))
def test_kl_estimators_match_formulas_and_vanish_at_the_reference(estimator):
  data = _batch(1)
  delta = data["logprobs"].astype(np.float64) - data["ref_logprobs"]
  np.testing.assert_allclose(
      np.asarray(kl_divergence(data["logprobs"], data["ref_logprobs"], estimator)),
      _NP_KL[estimator][0](delta), rtol=1e-6, atol=1e-6)
  assert np.all(np.asarray(kl_divergence(data["logprobs"], data["logprobs"], estimator)) == 0.0)
  cfg = LossConfig(kl_estimator=estimator, beta=0.1)
  loss, metrics, _ = _loss_and_grad(cfg, {**_batch(1), "ref_logprobs": data["logprobs"]})
  assert float(metrics["kl_mean"]) == 0.0
  assert float(loss) == float(metrics["pg_loss"])


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_sum_over_micro_batches_with_global_normalizer_equals_full_batch(name, aggregation):
  cfg = LossConfig(policy_loss=name, aggregation=aggregation, max_len=T, beta=0.04,
                   entropy_coef=0.01, tis_cap=2.0)
  data = _batch(2)
  norm = normalizer(data["mask"])
  full_loss, full_metrics, full_grad = _loss_and_grad(cfg, data)
  total, metrics, grads = 0.0, None, []
  for rows in (slice(0, 3), slice(3, 7)):  # unequal micro-batches
    loss, m, g = _loss_and_grad(cfg, {k: v[rows] for k, v in data.items()}, norm)
    total += loss
    metrics = m if metrics is None else combine_metrics(metrics, m)
    grads.append(g)
  np.testing.assert_allclose(float(total), float(full_loss), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(np.concatenate(grads), np.asarray(full_grad), rtol=1e-6, atol=1e-7)
  for key in full_metrics:
    np.testing.assert_allclose(float(metrics[key]), float(full_metrics[key]), rtol=1e-6,
                               atol=1e-7, err_msg=key)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_all_padding_rows_change_nothing(aggregation):
  cfg = LossConfig(aggregation=aggregation, max_len=T)
  data = {k: v[:4] for k, v in _batch(3).items()}
  padded = {k: np.concatenate([v, np.zeros((3, T), v.dtype)]) for k, v in data.items()}
  np.testing.assert_allclose(float(_loss_and_grad(cfg, padded)[0]),
                             float(_loss_and_grad(cfg, data)[0]), rtol=1e-6)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_ratio_one_surrogate_is_minus_aggregated_advantage(name, aggregation):
  cfg = LossConfig(policy_loss=name, aggregation=aggregation, max_len=T)
  data = _batch(4)
  data = {k: data[k] for k in ("logprobs", "advantages", "mask")}
  data["old_logprobs"] = data["logprobs"]
  loss, metrics, grad = _loss_and_grad(cfg, data)
  mask = jnp.asarray(data["mask"])
  agg = AGGREGATIONS[aggregation]
  expected = -agg(jnp.asarray(data["advantages"]), mask, normalizer(mask), T)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6, atol=1e-7)
  # d loss / d logprob_t = −w_t·A_t at ρ = 1, with w_t the aggregation weight of token t.
  weights = np.asarray(jax.grad(lambda x: agg(x, mask, normalizer(mask), T))(
      np.ones((B, T), np.float32)))
  np.testing.assert_allclose(np.asarray(grad), -weights * data["advantages"], rtol=1e-6,
                             atol=1e-7)
  assert float(metrics["ratio_mean"]) == 1.0 and float(metrics["clip_frac_low"]) == 0.0


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_masked_tokens_get_zero_loss_and_exactly_zero_gradient(name):
  cfg = LossConfig(policy_loss=name, beta=0.1, tis_cap=2.0, entropy_coef=0.1)
  data = _batch(5)
  garbage = {k: np.where(data["mask"], v, np.float32(np.inf if k == "logprobs" else np.nan))
             for k, v in data.items() if k != "mask"}
  clean_loss, _, clean_grad = _loss_and_grad(cfg, data)
  loss, _, grad = _loss_and_grad(cfg, {**garbage, "mask": data["mask"]})
  assert float(loss) == float(clean_loss)
  assert np.all(np.asarray(grad)[~data["mask"]] == 0.0)
  np.testing.assert_array_equal(np.asarray(grad), np.asarray(clean_grad))


def _one_token(ratio, adv):
  return {"logprobs": np.array([[np.log(ratio)]], np.float32),
          "old_logprobs": np.zeros((1, 1), np.float32),
          "advantages": np.array([[adv]], np.float32), "mask": np.ones((1, 1), bool)}


@pytest.mark.parametrize("ratio,adv,loss,frac_high", [
    (1.25, 1.0, -1.25, 0.0),   # inside 1 + ε_high = 1.28: not clipped
    (1.5, 1.0, -1.28, 1.0),    # clipped at 1 + ε_high (DAPO clip-higher)
    (0.5, 1.0, -0.5, 0.0),     # A > 0: the lower clip never binds
])
def test_clip_higher_hand_computed(ratio, adv, loss, frac_high):
  out, metrics, _ = _loss_and_grad(LossConfig(eps_high=0.28), _one_token(ratio, adv))
  np.testing.assert_allclose(float(out), loss, rtol=1e-6)
  assert float(metrics["clip_frac_high"]) == frac_high


@pytest.mark.parametrize("ratio,loss,dual", [(5.0, 3.0, 1.0), (2.0, 2.0, 0.0), (0.5, 0.8, 0.0)])
def test_dual_clip_hand_computed(ratio, loss, dual):
  # A = −1: clip gives max(ρ, clip(ρ, 0.8, 1.2)); dual clip caps it at c·|A| = 3.
  out, metrics, grad = _loss_and_grad(LossConfig(policy_loss="dual_clip"), _one_token(ratio, -1.0))
  np.testing.assert_allclose(float(out), loss, rtol=1e-6)
  assert float(metrics["clip_frac_dual"]) == dual
  if dual:
    assert float(grad[0, 0]) == 0.0


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_float_mask_equals_bool_mask(aggregation):
  data = _batch(10)
  x, mask = jnp.asarray(data["advantages"]), jnp.asarray(data["mask"])
  agg = AGGREGATIONS[aggregation]
  as_float = agg(x, mask.astype(jnp.float32), normalizer(mask.astype(jnp.float32)), T)
  assert float(as_float) == float(agg(x, mask, normalizer(mask), T))


def test_beta_zero_needs_no_reference():
  data = {k: v for k, v in _batch(7).items() if k in ("logprobs", "old_logprobs", "advantages",
                                                      "mask")}
  loss, metrics, _ = _loss_and_grad(LossConfig(beta=0.0), data)
  assert np.isfinite(float(loss)) and "kl_mean" not in metrics


def _numpy_sft(logits, targets, mask, aggregation, max_len):
  z = logits.astype(np.float64)
  logp = z - z.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  m = mask.astype(np.float64)
  length = m.sum(1, keepdims=True)
  num_seqs = (length > 0).sum()
  weights = {"token_mean": m / m.sum(),
             "seq_mean_token_mean": m / np.maximum(length, 1) / num_seqs,
             "seq_mean_token_sum_norm": m / (max_len * num_seqs)}[aggregation]
  return (weights * nll).sum()


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_sft_loss_matches_numpy_and_is_micro_batch_invariant(aggregation):
  rng = np.random.default_rng(8)
  V = 13
  logits = rng.normal(size=(B, T, V)).astype(np.float32) * 3
  targets = rng.integers(0, V, size=(B, T))
  mask = rng.random((B, T)) > 0.3
  loss, metrics = sft_loss(logits, targets, mask, aggregation=aggregation, max_len=T)
  np.testing.assert_allclose(float(loss), _numpy_sft(logits, targets, mask, aggregation, T),
                             rtol=1e-6)
  norm = normalizer(jnp.asarray(mask))
  parts = [sft_loss(logits[r], targets[r], mask[r], norm=norm, aggregation=aggregation,
                    max_len=T)[0] for r in (slice(0, 3), slice(3, 7))]
  np.testing.assert_allclose(float(sum(parts)), float(loss), rtol=1e-6)
  acc = ((logits.argmax(-1) == targets) & mask).sum() / mask.sum()
  np.testing.assert_allclose(float(metrics["accuracy"]), acc, rtol=1e-6)


def test_bad_input_errors():
  data = _batch(9)
  base = {k: data[k] for k in ("logprobs", "old_logprobs", "advantages", "mask")}
  with pytest.raises(ValueError, match="LossConfig.policy_loss='ppo2' is unknown"):
    LossConfig(policy_loss="ppo2")
  with pytest.raises(ValueError, match="LossConfig.aggregation='mean' is unknown"):
    LossConfig(aggregation="mean")
  with pytest.raises(ValueError, match="LossConfig.kl_estimator='k4' is unknown"):
    LossConfig(kl_estimator="k4")
  with pytest.raises(ValueError, match="LossConfig.max_len=None; seq_mean_token_sum_norm"):
    LossConfig(aggregation="seq_mean_token_sum_norm")
  with pytest.raises(ValueError, match="LossConfig.beta=-0.1 must be >= 0"):
    LossConfig(beta=-0.1)
  with pytest.raises(ValueError, match="ref_logprobs is None but the LossConfig needs it"):
    _loss_and_grad(LossConfig(beta=0.1), base)
  with pytest.raises(ValueError, match="sampler_logprobs is None"):
    _loss_and_grad(LossConfig(tis_cap=2.0), base)
  with pytest.raises(ValueError, match=r"advantages has shape \(7, 10\); expected \[B, T\]"):
    _loss_and_grad(LossConfig(), {**base, "advantages": base["advantages"][:, :10]})
  with pytest.raises(ValueError, match="KL estimator 'k9' is unknown"):
    kl_divergence(base["logprobs"], base["logprobs"], "k9")
  with pytest.raises(ValueError, match="aggregation='sum' is unknown"):
    sft_loss(np.zeros((1, 2, 3)), np.zeros((1, 2), int), np.ones((1, 2)), aggregation="sum")
  with pytest.raises(ValueError, match=r"logits has shape \(1, 3, 3\)"):
    sft_loss(np.zeros((1, 3, 3)), np.zeros((1, 2), int), np.ones((1, 2)))
  with pytest.raises(ValueError, match="metric keys differ"):
    combine_metrics({"a": 1.0}, {"b": 1.0})
