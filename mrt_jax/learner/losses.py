"""GRPO-family policy losses and the SFT loss, as pure functions of per-token arrays.

Letters: B sequences, T tokens, V vocab (legend of `mrt_jax.models.config`).

Per token, with ratio ρ = π_θ/π_old = exp(clip(log π_θ − log π_old, ±log_ratio_clamp)):
  clip       −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A)     (PPO; clip-higher ε_high: DAPO)
  dual_clip  clip, then for A < 0: min(that, −c·A)      (Ye et al. 2020, c = 3)
  gspo       clip with the sequence ratio s_b = exp(mean_t(log π_θ − log π_old)) in place of ρ,
             as GSPO-token: ρ_{b,t} = sg(s_b)·π_θ(y_t)/sg(π_θ(y_t)) (Zheng et al. 2025;
             with `seq_mean_token_mean` and a per-sequence A this is GSPO exactly)
registered by name in `POLICY_LOSSES`. The total per-token loss is
  ℓ = w_IS·surrogate + β·KL_k(π_θ ‖ π_ref) − entropy_coef·H,
with w_IS = min(π_old/π_sampler, C) the truncated importance-sampling correction of the
sampler-vs-learner mismatch (Yao et al. 2025, "TIS"; off when `tis_cap` is None), then aggregated
by `config.aggregation` (see `aggregation.py`).

MICRO-BATCH CONTRACT. `policy_loss` and `sft_loss` take `norm`, a `Normalizer` that the caller
computes once with `aggregation.normalizer(mask)` over the WHOLE global batch. The returned loss
is then a sum of per-token terms of the rows it was given, so for any split of the batch rows
into micro-batches (and devices), Σ_micro loss(micro, norm) equals loss(full batch, norm) and
likewise for gradients — no rescaling by the number of micro-batches. Rows are never split
along T. With norm=None the given batch is its own global batch (the full-batch value). The
metrics follow the same rule: keys ending in `_max` / `_min` combine by max / min, every other
key by sum (see `combine_metrics`).

β = 0 needs no reference model: `ref_logprobs` may then be None and is never read for the loss
(if given, it only feeds the `kl_mean` metric). Masked tokens are zeroed before any arithmetic,
so padding contributes exactly 0 to the loss and gets exactly 0 gradient, even if it holds inf.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from mrt_jax.learner.aggregation import AGGREGATIONS, Normalizer, normalizer
from mrt_jax.learner.kl import KL_ESTIMATORS, kl_divergence


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Settings of the RL loss (hashable, so it can be a static jit argument)."""
  policy_loss: str = "clip"         # key of POLICY_LOSSES
  aggregation: str = "token_mean"   # key of AGGREGATIONS
  eps_low: float = 0.2              # ε_low, lower clip range of ρ
  eps_high: float = 0.2             # ε_high, upper clip range (DAPO clip-higher: 0.28)
  dual_clip_c: float = 3.0          # c of dual_clip, bound on −ρA for A < 0
  max_len: int | None = None        # L_max, the constant normalizer of seq_mean_token_sum_norm
  beta: float = 0.0                 # β, KL weight in the loss; 0 skips the reference model
  kl_estimator: str = "k3"          # key of KL_ESTIMATORS
  entropy_coef: float = 0.0         # entropy bonus weight; > 0 needs `entropy`
  tis_cap: float | None = None      # C of truncated IS; None = off, else needs sampler logprobs
  log_ratio_clamp: float = 20.0     # |log ρ| bound before exp, so ρ never overflows
  answer_nll_coef: float = 0.0      # λ, weight of the meta-prover's answer NLL (`answer_nll`);
                                    # > 0 needs the batch's answer_tokens / answer_mask

  def __post_init__(self):
    for name, table in (("policy_loss", POLICY_LOSSES), ("aggregation", AGGREGATIONS),
                        ("kl_estimator", KL_ESTIMATORS)):
      if getattr(self, name) not in table:
        raise ValueError(f"LossConfig.{name}={getattr(self, name)!r} is unknown; expected one "
                         f"of {sorted(table)}")
    for name in ("eps_low", "eps_high", "beta", "entropy_coef", "answer_nll_coef"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"LossConfig.{name}={getattr(self, name)} must be >= 0")
    if not self.dual_clip_c > 1:
      raise ValueError(f"LossConfig.dual_clip_c={self.dual_clip_c} must be > 1")
    if self.tis_cap is not None and not self.tis_cap > 0:
      raise ValueError(f"LossConfig.tis_cap={self.tis_cap} must be > 0 or None")
    if self.aggregation == "seq_mean_token_sum_norm" and not (self.max_len or 0) > 0:
      raise ValueError(f"LossConfig.max_len={self.max_len}; seq_mean_token_sum_norm needs the "
                       "constant L_max > 0")


class Surrogate(NamedTuple):
  """Per-token policy-gradient loss and the indicators its metrics count (all [B, T])."""
  loss_BxT: jax.Array
  ratio_BxT: jax.Array
  clip_low_BxT: jax.Array   # A < 0 and ρ < 1 − ε_low: the lower clip is active (no gradient)
  clip_high_BxT: jax.Array  # A > 0 and ρ > 1 + ε_high: the upper clip is active
  clip_dual_BxT: jax.Array  # A < 0 and the dual clip −c·A is active


def _clipped(log_ratio_BxT, adv_BxT, cfg: LossConfig) -> Surrogate:
  ratio_BxT = jnp.exp(jnp.clip(log_ratio_BxT, -cfg.log_ratio_clamp, cfg.log_ratio_clamp))
  clipped_BxT = jnp.clip(ratio_BxT, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high)
  loss_BxT = jnp.maximum(-ratio_BxT * adv_BxT, -clipped_BxT * adv_BxT)
  no_dual_BxT = jnp.zeros_like(adv_BxT, dtype=bool)
  return Surrogate(loss_BxT, ratio_BxT, (adv_BxT < 0) & (ratio_BxT < 1.0 - cfg.eps_low),
                   (adv_BxT > 0) & (ratio_BxT > 1.0 + cfg.eps_high), no_dual_BxT)


def clip_loss(logp_BxT, old_BxT, adv_BxT, mask_BxT, cfg: LossConfig) -> Surrogate:
  del mask_BxT
  return _clipped(logp_BxT - old_BxT, adv_BxT, cfg)


def dual_clip_loss(logp_BxT, old_BxT, adv_BxT, mask_BxT, cfg: LossConfig) -> Surrogate:
  s = clip_loss(logp_BxT, old_BxT, adv_BxT, mask_BxT, cfg)
  bound_BxT = -cfg.dual_clip_c * adv_BxT
  dual_BxT = (adv_BxT < 0) & (s.loss_BxT > bound_BxT)
  return s._replace(loss_BxT=jnp.where(dual_BxT, bound_BxT, s.loss_BxT), clip_dual_BxT=dual_BxT)


def gspo_loss(logp_BxT, old_BxT, adv_BxT, mask_BxT, cfg: LossConfig) -> Surrogate:
  B, T = logp_BxT.shape
  len_Bx1 = jnp.maximum(jnp.sum(mask_BxT.astype(jnp.float32), axis=1, keepdims=True), 1.0)
  # Inputs are zero on masked tokens (see `policy_loss`), so the row sum is the masked sum.
  log_s_Bx1 = jnp.sum(logp_BxT - old_BxT, axis=1, keepdims=True) / len_Bx1
  # Value log s_b on every token; gradient that of log π_θ(y_t) (GSPO-token).
  log_ratio_BxT = (jnp.broadcast_to(jax.lax.stop_gradient(log_s_Bx1), (B, T))
                   + logp_BxT - jax.lax.stop_gradient(logp_BxT))
  return _clipped(log_ratio_BxT, adv_BxT, cfg)


POLICY_LOSSES: dict[str, Callable[..., Surrogate]] = {
    "clip": clip_loss,
    "dual_clip": dual_clip_loss,
    "gspo": gspo_loss,
}


def _check_bxt(name: str, x, shape: tuple[int, ...]) -> None:
  if x.shape != shape:
    raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [B, T]={shape} like logprobs")


def _zero_masked(x_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """x in f32 with masked entries replaced by 0 (so padding cannot leak inf/NaN into gradients)."""
  x_BxT = jnp.asarray(x_BxT, jnp.float32)
  return jnp.where(mask_BxT, x_BxT, jnp.zeros_like(x_BxT))


def _masked_extreme(x_BxT, mask_BxT, reduce, fill: float) -> jax.Array:
  return reduce(jnp.where(mask_BxT, x_BxT, jnp.full_like(x_BxT, fill)))


def policy_loss(config: LossConfig, logprobs, old_logprobs, advantages, mask, *,
                norm: Normalizer | None = None, ref_logprobs=None, sampler_logprobs=None,
                entropy=None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The aggregated RL loss of a (micro-)batch and its additive metrics.

  Args:
    config: loss settings.
    logprobs: f32 [B, T] log π_θ of the sampled tokens (differentiated).
    old_logprobs: [B, T] log π_old, the learner's log-probs when the batch was sampled.
    advantages: [B, T] per-token advantages (e.g. `mrt_jax.mrt_advantages`).
    mask: bool/0-1 [B, T], the tokens that are trained.
    norm: global-batch `Normalizer` (see the module docstring); None = this batch's own.
    ref_logprobs: [B, T] log π_ref; required when config.beta > 0.
    sampler_logprobs: [B, T] log-probs reported by the sampler; required when config.tis_cap
      is set; when given, the sampler-vs-learner mismatch is logged.
    entropy: [B, T] per-token policy entropy; required when config.entropy_coef > 0 (pass it
      as computed from the policy's logits so the bonus is differentiated).

  Returns:
    (loss, metrics): the scalar loss and a dict of scalar metrics (combine across micro-batches
    with `combine_metrics`).
  """
  shape = tuple(logprobs.shape)
  if len(shape) != 2:
    raise ValueError(f"logprobs has shape {shape}; expected [B, T]")
  given = {"old_logprobs": old_logprobs, "advantages": advantages, "mask": mask,
           "ref_logprobs": ref_logprobs, "sampler_logprobs": sampler_logprobs, "entropy": entropy}
  for name, needed in (("ref_logprobs", config.beta > 0), ("sampler_logprobs",
                       config.tis_cap is not None), ("entropy", config.entropy_coef > 0)):
    if needed and given[name] is None:
      raise ValueError(f"{name} is None but the LossConfig needs it (beta={config.beta}, "
                       f"tis_cap={config.tis_cap}, entropy_coef={config.entropy_coef})")
  for name, x in given.items():
    if x is not None:
      _check_bxt(name, x, shape)
  mask_BxT = jnp.asarray(mask) != 0
  norm = normalizer(mask_BxT) if norm is None else norm
  aggregate = AGGREGATIONS[config.aggregation]

  def agg(x_BxT):
    return aggregate(x_BxT, mask_BxT, norm, config.max_len)

  def token_mean(x_BxT):
    return AGGREGATIONS["token_mean"](x_BxT, mask_BxT, norm, None)

  logp_BxT = _zero_masked(logprobs, mask_BxT)
  old_BxT = _zero_masked(old_logprobs, mask_BxT)
  s = POLICY_LOSSES[config.policy_loss](logp_BxT, old_BxT, _zero_masked(advantages, mask_BxT),
                                        mask_BxT, config)
  loss_BxT = s.loss_BxT
  metrics = {}
  if sampler_logprobs is not None:
    mismatch_BxT = old_BxT - _zero_masked(sampler_logprobs, mask_BxT)
    metrics["sampler_logprob_absdiff_mean"] = token_mean(jnp.abs(mismatch_BxT))
    if config.tis_cap is not None:
      w_BxT = jnp.minimum(jnp.exp(jnp.minimum(mismatch_BxT, config.log_ratio_clamp)),
                          config.tis_cap)
      loss_BxT = w_BxT * loss_BxT
      metrics["tis_weight_mean"] = token_mean(w_BxT)
  metrics["pg_loss"] = agg(loss_BxT)
  if ref_logprobs is not None:
    kl_BxT = kl_divergence(logp_BxT, _zero_masked(ref_logprobs, mask_BxT), config.kl_estimator)
    metrics["kl_mean"] = token_mean(kl_BxT)
    if config.beta > 0:
      loss_BxT = loss_BxT + config.beta * kl_BxT
  if entropy is not None:
    ent_BxT = _zero_masked(entropy, mask_BxT)
    metrics["entropy_mean"] = token_mean(ent_BxT)
    if config.entropy_coef > 0:
      loss_BxT = loss_BxT - config.entropy_coef * ent_BxT
  loss = agg(loss_BxT)
  metrics.update(
      loss=loss,
      clip_frac_low=token_mean(s.clip_low_BxT.astype(jnp.float32)),
      clip_frac_high=token_mean(s.clip_high_BxT.astype(jnp.float32)),
      clip_frac_dual=token_mean(s.clip_dual_BxT.astype(jnp.float32)),
      ratio_mean=token_mean(s.ratio_BxT),
      ratio_max=_masked_extreme(s.ratio_BxT, mask_BxT, jnp.max, -jnp.inf),
      ratio_min=_masked_extreme(s.ratio_BxT, mask_BxT, jnp.min, jnp.inf),
      num_tokens=jnp.sum(mask_BxT.astype(jnp.float32)),
  )
  return loss, metrics


def sft_loss(logits_BxTxV: jax.Array, targets_BxT: jax.Array, mask_BxT: jax.Array, *,
             norm: Normalizer | None = None, aggregation: str = "token_mean",
             max_len: int | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Masked next-token cross-entropy (MRT-STaR, warm starts), same micro-batch contract.

  Args:
    logits_BxTxV: logits predicting `targets_BxT` (already shifted by the caller).
    targets_BxT: int target ids.
    mask_BxT: bool/0-1, the target tokens that are trained.
    norm: global-batch `Normalizer`; None = this batch's own.
    aggregation: a key of `AGGREGATIONS`.
    max_len: L_max for `seq_mean_token_sum_norm`.

  Returns:
    (loss, metrics) with metrics `loss`, `nll_mean` (token mean), `accuracy` (argmax == target).
  """
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"aggregation={aggregation!r} is unknown; expected one of "
                     f"{sorted(AGGREGATIONS)}")
  if aggregation == "seq_mean_token_sum_norm" and not (max_len or 0) > 0:
    raise ValueError(f"max_len={max_len}; seq_mean_token_sum_norm needs the constant L_max > 0")
  if logits_BxTxV.ndim != 3 or logits_BxTxV.shape[:2] != targets_BxT.shape:
    raise ValueError(f"logits has shape {logits_BxTxV.shape}; expected [B, T, V] with [B, T]="
                     f"{tuple(targets_BxT.shape)} like targets")
  _check_bxt("mask", mask_BxT, tuple(targets_BxT.shape))
  mask_BxT = jnp.asarray(mask_BxT) != 0
  norm = normalizer(mask_BxT) if norm is None else norm
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  B, T = targets_BxT.shape
  logp_BxT = jnp.take_along_axis(logp_BxTxV, targets_BxT.astype(jnp.int32).reshape(B, T, 1),
                                 axis=-1).reshape(B, T)
  nll_BxT = -_zero_masked(logp_BxT, mask_BxT)
  hit_BxT = (jnp.argmax(logits_BxTxV, axis=-1) == targets_BxT).astype(jnp.float32)
  loss = AGGREGATIONS[aggregation](nll_BxT, mask_BxT, norm, max_len)
  token_mean = AGGREGATIONS["token_mean"]
  return loss, {"loss": loss, "nll_mean": token_mean(nll_BxT, mask_BxT, norm, None),
                "accuracy": token_mean(hit_BxT, mask_BxT, norm, None),
                "num_tokens": jnp.sum(mask_BxT.astype(jnp.float32))}


# How a metric combines across micro-batches, by key suffix: (pairwise, over a stacked axis).
_COMBINE = {"_max": (jnp.maximum, jnp.max), "_min": (jnp.minimum, jnp.min)}
_SUM = (jnp.add, jnp.sum)


def combine_metrics(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]
                    ) -> dict[str, jax.Array]:
  """Combines the metrics of two micro-batches: max for `*_max`, min for `*_min`, else sum."""
  if a.keys() != b.keys():
    raise ValueError(f"metric keys differ: {sorted(a)} vs {sorted(b)}")
  return {k: _COMBINE.get(k[-4:], _SUM)[0](a[k], b[k]) for k in a}


def combine_stacked_metrics(metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """`combine_metrics` over a leading micro-batch axis (e.g. the outputs of a `lax.scan`)."""
  return {k: _COMBINE.get(k[-4:], _SUM)[1](v, axis=0) for k, v in metrics.items()}
