"""Per-token advantages of the GRPO family and of MRT, registered by name in `ESTIMATORS`.

Letters: B rollouts, P prompts (groups), G rollouts per group (B = P·G, group-major: rows
[p·G, (p+1)·G) share a prompt), T completion tokens, N blocks (the paper's K).

Outcome normalizations (rewards r_i of one group), in `OUTCOME_NORMS`:
  grpo     (r_i − mean_g r) / (std_g r + ε)    (Shao et al. 2024, DeepSeekMath §4.1)
  dr_grpo  r_i − mean_g r                      (Liu et al. 2025, Dr. GRPO)
  rloo     r_i − mean_{j≠i} r_j = G/(G−1)·(r_i − mean_g r)   (Ahmadian et al. 2024)
`std` is "unbiased" (divide by G−1) or "biased" (by G). A group whose rewards are all equal gets
exactly 0: the mean is taken of r − r_ref with r_ref a member of the group, so equal rewards
subtract to exact zeros before any rounding (a mean computed as Σr·(1/G) is not exact).

Estimators, in `ESTIMATORS` (every one returns exactly 0 on masked tokens):
  grpo, dr_grpo, rloo  the outcome advantage on every token of the rollout.
  mrt         (default, docs/method.md) A_{i,t} = A^out_i + α·p̃_{i,j} for a thinking token t in
              block j = token_block_ids[i, t] >= 1; answer tokens (block id 0) get A^out_i.
              A^out uses `outcome_norm`. The progress term is Setlur et al. 2024's "effective
              reward" with the policy as prover; p̃ = p by default (`progress_norm="none"`).

Progress normalizations (mrt only), in `PROGRESS_NORMS`; statistics over the blocks of one group
(the G rollouts of a prompt), a block counting when at least one of its tokens is in the mask:
  none         p̃ = p, docs/method.md exactly. A block that makes no progress (p = 0, e.g. a
               re-check) gets the outcome advantage alone, like a block under GRPO.
  center       p̃ = p − mean_g p. A block that makes less progress than the group's average
               block is pushed down, so zero-progress blocks cost tokens.
  standardize  p̃ = (p − mean_g p) / (std_g p + ε), `std` as for the outcome: the step-reward
               normalization of DeepSeekMath's process supervision (Shao et al. 2024, §4.1.3)
               applied per block, not summed over later steps (progress already is an advantage).
  flat_price   p̃ = p − [r_i > 0]·[p ≤ τ]·max(mean_g p, 0), τ = `flat_threshold`: a flat block
               (one that moves J by at most τ, e.g. a re-check) of a trace that ends right is
               charged the group's mean block progress; every other block keeps p. Unlike
               `center` it never charges a block that makes progress, nor any block of a trace
               that fails, so a group whose rollouts all fail gets plain progress.
  flat_price_stop  as flat_price, except on a flat block's first token (the decision to go on
               thinking, mrt_jax.mrt.segment): it is charged only when the trace makes no
               progress from that block on (Σ_{k>=j} p_k <= τ: stopping there would have lost
               nothing). A re-check before the trace's last useful block is charged for its
               content, not for the decision to continue, which the later progress needed.
  termination, termination_dense  (the MRT authors' released RL recipe) GRPO's group baseline
              replaced by the reward of forcing the answer at the prefix (`termination_estimator`).
  mrt_prefix  (the paper's stale-prefix variant) a group is the G rollouts sampled from ONE
              prefix (the prefix is part of the prompt, so its tokens are not in the completion);
              `terminated[i]` marks the rollouts that were forced to answer right after the
              prefix, the others continued thinking. With J̄_term the mean outcome of the group's
              terminated rollouts, the reward is r'_i = r_i + α·(r_i − J̄_term) for a continuing
              rollout and r'_i = r_i for a terminated one; the advantage is `outcome_norm` of r'
              on every token. `progress` and `token_block_ids` are not read. Every group needs at
              least one terminated rollout (a group without one is an error).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_STD_DDOF = {"unbiased": 1, "biased": 0}


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
  """Static settings of an estimator (hashable: a static argument of the jitted core; α and ε
  are traced, in `EstimatorInputs`, so changing them does not recompile)."""
  group_size: int             # G, rollouts per prompt (per prefix for mrt_prefix)
  std: str = "unbiased"       # "unbiased" (G−1) or "biased" (G) group std
  outcome_norm: str = "grpo"  # normalization of the outcome in mrt / mrt_prefix
  progress_norm: str = "none"  # normalization of progress in mrt (PROGRESS_NORMS)

  def __post_init__(self):
    if self.group_size < 2:
      raise ValueError(f"group_size={self.group_size}; expected >= 2 (a group-relative baseline "
                       "needs two rollouts)")
    if self.std not in _STD_DDOF:
      raise ValueError(f"std={self.std!r} is unknown; expected one of {sorted(_STD_DDOF)}")
    if self.outcome_norm not in OUTCOME_NORMS:
      raise ValueError(f"outcome_norm={self.outcome_norm!r} is unknown; expected one of "
                       f"{sorted(OUTCOME_NORMS)}")
    if self.progress_norm not in PROGRESS_NORMS:
      raise ValueError(f"progress_norm={self.progress_norm!r} is unknown; expected one of "
                       f"{sorted(PROGRESS_NORMS)}")


def _centered(r_PxG: jax.Array) -> jax.Array:
  """r − mean_g r, exactly 0 for a group of equal rewards (shifted by the group's first member)."""
  d_PxG = r_PxG - r_PxG[:, :1]
  return d_PxG - jnp.mean(d_PxG, axis=1, keepdims=True)


class EstimatorInputs(NamedTuple):
  """What an estimator reads (f32 unless noted; every array already on device)."""
  outcome_B: jax.Array
  progress_BxN: jax.Array
  block_ids_BxT: jax.Array  # int32
  terminated_B: jax.Array   # bool
  mask_BxT: jax.Array       # bool, the tokens that are trained
  success_BxN1: jax.Array   # J_0..J_N of the meta-prover (termination estimators; else zeros)
  alpha: jax.Array          # scalar α
  eps: jax.Array            # scalar ε
  flat_threshold: jax.Array  # scalar τ of the flat_price norms


def grpo_outcome(r_PxG: jax.Array, eps: jax.Array, cfg: AdvantageConfig) -> jax.Array:
  c_PxG = _centered(r_PxG)
  G = r_PxG.shape[1]
  var_Px1 = jnp.sum(c_PxG * c_PxG, axis=1, keepdims=True) / (G - _STD_DDOF[cfg.std])
  denom_Px1 = jnp.sqrt(var_Px1) + eps
  # With eps = 0 an all-equal group has c = 0 and denom = 0: give it 0, not 0/0.
  return c_PxG / jnp.where(denom_Px1 > 0, denom_Px1, jnp.ones_like(denom_Px1))


def dr_grpo_outcome(r_PxG: jax.Array, eps: jax.Array, cfg: AdvantageConfig) -> jax.Array:
  del eps, cfg
  return _centered(r_PxG)


def rloo_outcome(r_PxG: jax.Array, eps: jax.Array, cfg: AdvantageConfig) -> jax.Array:
  del eps, cfg
  G = r_PxG.shape[1]
  # r_i − mean_{j≠i} r_j = (G·d_i − Σ_j d_j) / (G − 1) with d = r − r_ref (exact 0 if all equal).
  d_PxG = r_PxG - r_PxG[:, :1]
  return (G * d_PxG - jnp.sum(d_PxG, axis=1, keepdims=True)) / (G - 1)


OUTCOME_NORMS: dict[str, Callable[[jax.Array, jax.Array, AdvantageConfig], jax.Array]] = {
    "grpo": grpo_outcome,
    "dr_grpo": dr_grpo_outcome,
    "rloo": rloo_outcome,
}


def _present_blocks(x: EstimatorInputs) -> jax.Array:
  """bool [B, N]: block j is present in row i when a trained token of row i has id j.

  A scatter, not a [B, N, T] comparison (T is up to 16K at scale). Ids outside [1, N] count for
  no block.
  """
  B, N = x.progress_BxN.shape
  rows_Bx1 = jnp.arange(B, dtype=jnp.int32).reshape(B, 1)
  present_BxN1 = jnp.zeros((B, N + 1), jnp.int32).at[rows_Bx1, x.block_ids_BxT].max(
      x.mask_BxT.astype(jnp.int32), mode="drop", wrap_negative_indices=False)
  return present_BxN1[:, 1:] > 0


def _progress_stats(x: EstimatorInputs, cfg: AdvantageConfig):
  """Mean and std of progress over the present blocks of each group, each broadcast to [B, 1]."""
  B, N = x.progress_BxN.shape
  G = cfg.group_size
  present_PxX = _present_blocks(x).reshape(B // G, G * N)
  p_PxX = x.progress_BxN.reshape(B // G, G * N)
  n_Px1 = jnp.sum(present_PxX, axis=1, keepdims=True)
  mean_Px1 = jnp.sum(jnp.where(present_PxX, p_PxX, 0.0), axis=1, keepdims=True) / jnp.maximum(
      n_Px1, 1)
  dev_PxX = jnp.where(present_PxX, p_PxX - mean_Px1, 0.0)
  var_Px1 = jnp.sum(dev_PxX * dev_PxX, axis=1, keepdims=True) / jnp.maximum(
      n_Px1 - _STD_DDOF[cfg.std], 1)
  return jnp.repeat(mean_Px1, G, axis=0), jnp.repeat(jnp.sqrt(var_Px1), G, axis=0)


def _progress_none(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  del cfg
  return x.progress_BxN


def _progress_center(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  mean_Bx1, _ = _progress_stats(x, cfg)
  return x.progress_BxN - mean_Bx1


def _progress_standardize(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  mean_Bx1, std_Bx1 = _progress_stats(x, cfg)
  denom_Bx1 = std_Bx1 + x.eps
  # A group whose blocks all made the same progress gets 0, not 0/0 (as for the outcome).
  return (x.progress_BxN - mean_Bx1) / jnp.where(denom_Bx1 > 0, denom_Bx1,
                                                 jnp.ones_like(denom_Bx1))


def _flat_price(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """The charge of `flat_price` per block, [B, N]: max(mean_g p, 0) on the flat blocks of
  right traces, 0 elsewhere."""
  mean_Bx1, _ = _progress_stats(x, cfg)
  priced_BxN = (x.outcome_B[:, None] > 0) & (x.progress_BxN <= x.flat_threshold)
  return jnp.where(priced_BxN, jnp.maximum(mean_Bx1, 0.0), 0.0)


def _progress_flat_price(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  return x.progress_BxN - _flat_price(x, cfg)


def _decision_flat_price_stop(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """p̃ on the first token of each block under `flat_price_stop`: charged only when nothing
  from the block on makes progress (Σ_{k>=j} p_k over present blocks <= τ)."""
  p_BxN = jnp.where(_present_blocks(x), x.progress_BxN, 0.0)
  rest_BxN = jnp.flip(jnp.cumsum(jnp.flip(p_BxN, axis=1), axis=1), axis=1)
  return x.progress_BxN - jnp.where(rest_BxN <= x.flat_threshold, _flat_price(x, cfg), 0.0)


# Name -> (estimator inputs, config) -> p̃ [B, N].
PROGRESS_NORMS: dict[str, Callable[..., jax.Array]] = {
    "none": _progress_none,
    "center": _progress_center,
    "standardize": _progress_standardize,
    "flat_price": _progress_flat_price,
    "flat_price_stop": _progress_flat_price,
}
# Norms whose value on a block's first token (the decision to go on thinking: the boundary
# token belongs to the block that follows, mrt_jax.mrt.segment) differs from the block's p̃.
DECISION_PROGRESS_NORMS: dict[str, Callable[..., jax.Array]] = {
    "flat_price_stop": _decision_flat_price_stop,
}


def _grouped(norm: str, r_B: jax.Array, eps: jax.Array, cfg: AdvantageConfig) -> jax.Array:
  """Applies an outcome normalization ([P, G] -> [P, G]) to a group-major [B] vector."""
  B = r_B.shape[0]
  r_PxG = r_B.reshape(B // cfg.group_size, cfg.group_size)
  return OUTCOME_NORMS[norm](r_PxG, eps, cfg).reshape(B)


def _per_token(a_B: jax.Array, T: int) -> jax.Array:
  return jnp.broadcast_to(a_B.reshape(a_B.shape[0], 1), (a_B.shape[0], T))


def _outcome_estimator(norm: str):
  def estimator(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
    return _per_token(_grouped(norm, x.outcome_B, x.eps, cfg), x.block_ids_BxT.shape[1])
  estimator.__name__ = f"{norm}_estimator"
  return estimator


def _per_block(p_BxN: jax.Array, block_ids_BxT: jax.Array) -> jax.Array:
  """[B, T]: each token's block value, 0 on the answer segment (id 0)."""
  B = p_BxN.shape[0]
  p0_BxN1 = jnp.concatenate([jnp.zeros((B, 1), jnp.float32), p_BxN], axis=1)
  # Block ids outside [0, N] on unmasked tokens read NaN, so a bad id cannot pass silently.
  return jnp.take_along_axis(p0_BxN1, block_ids_BxT, axis=1, mode="fill", fill_value=jnp.nan)


def mrt_estimator(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """A_{i,t} = A^out_i + α·p̃_{i, block(t)}, with p̃_{i,0} = 0 for the answer segment."""
  B, T = x.block_ids_BxT.shape
  a_out_B = _grouped(cfg.outcome_norm, x.outcome_B, x.eps, cfg)
  p_BxT = _per_block(PROGRESS_NORMS[cfg.progress_norm](x, cfg), x.block_ids_BxT)
  if cfg.progress_norm in DECISION_PROGRESS_NORMS:
    ids_BxT = x.block_ids_BxT
    first_BxT = (ids_BxT > 0) & (ids_BxT != jnp.pad(ids_BxT, ((0, 0), (1, 0)),
                                                    constant_values=-1)[:, :-1])
    p_first_BxT = _per_block(DECISION_PROGRESS_NORMS[cfg.progress_norm](x, cfg), ids_BxT)
    p_BxT = jnp.where(first_BxT, p_first_BxT, p_BxT)
  return _per_token(a_out_B, T) + x.alpha * p_BxT


def mrt_prefix_estimator(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """r'_i = r_i + α·(r_i − J̄_term)·[i continues], then `outcome_norm` of r' per group."""
  B, G = x.outcome_B.shape[0], cfg.group_size
  r_PxG = x.outcome_B.reshape(B // G, G)
  term_PxG = x.terminated_B.reshape(B // G, G)
  # J̄_term as ref + mean(r − ref) over terminated members, ref one of them: exact for equal r.
  ref_Px1 = jnp.max(jnp.where(term_PxG, r_PxG, -jnp.inf), axis=1, keepdims=True)
  d_PxG = jnp.where(term_PxG, r_PxG - ref_Px1, jnp.zeros_like(r_PxG))
  j_term_Px1 = ref_Px1 + jnp.sum(d_PxG, axis=1, keepdims=True) / jnp.sum(
      term_PxG, axis=1, keepdims=True)
  bonus_PxG = jnp.where(term_PxG, jnp.zeros_like(r_PxG), x.alpha * (r_PxG - j_term_Px1))
  a_B = _grouped(cfg.outcome_norm, (r_PxG + bonus_PxG).reshape(B), x.eps, cfg)
  return _per_token(a_B, x.block_ids_BxT.shape[1])


def termination_estimator(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """A_{i,t} = r_i − J_{i,0}: the outcome against forcing the answer with no thinking.

  The MRT authors' released RL recipe (Qu et al. 2025, "Optimizing Test-Time Compute via Meta
  Reinforcement Fine-Tuning"; public instructions in CMU-AIRe/MRT, train/rl/README.md) replaces
  GRPO's group baseline with a termination baseline, A = R − R_termination, where
  R_termination is the reward of forcing the answer at the prefix (the meta-prover's J there).
  From the prompt, the prefix is the empty thinking: R_termination = J_0. No group statistic
  is used, so `outcome_norm`, ε and `std` are not read.
  """
  del cfg
  B, T = x.block_ids_BxT.shape
  return _per_token(x.outcome_B - x.success_BxN1[:, 0], T)


def termination_dense_estimator(x: EstimatorInputs, cfg: AdvantageConfig) -> jax.Array:
  """A_{i,t} = r_i − J_{i,j−1} for a token in block j; r_i − J_{i,N} on the answer segment.

  The termination baseline of `termination_estimator` taken at every block boundary: a token of
  block j is judged against forcing the answer just before its block began (the prefix it
  continues), the answer segment against forcing it at the end of thinking b_N.
  """
  del cfg
  B, N1 = x.success_BxN1.shape
  num_blocks_Bx1 = jnp.max(jnp.where(x.mask_BxT, x.block_ids_BxT, 0), axis=1, keepdims=True)
  # Block j reads column j − 1; the answer segment (id 0) reads the row's last block's column.
  col_BxT = jnp.where(x.block_ids_BxT > 0, x.block_ids_BxT - 1, num_blocks_Bx1)
  j_BxT = jnp.take_along_axis(x.success_BxN1, col_BxT, axis=1, mode="fill", fill_value=jnp.nan)
  return x.outcome_B.reshape(B, 1) - j_BxT


ESTIMATORS: dict[str, Callable[[EstimatorInputs, AdvantageConfig], jax.Array]] = {
    "grpo": _outcome_estimator("grpo"),
    "dr_grpo": _outcome_estimator("dr_grpo"),
    "rloo": _outcome_estimator("rloo"),
    "mrt": mrt_estimator,
    "mrt_prefix": mrt_prefix_estimator,
    "termination": termination_estimator,
    "termination_dense": termination_dense_estimator,
}

# Estimators that read the meta-prover's J (or the progress made of it).
NEEDS_J = frozenset({"mrt", "termination", "termination_dense"})


@functools.partial(jax.jit, static_argnames=("estimator", "cfg"))
def _advantages(x: EstimatorInputs, *, estimator, cfg):
  adv_BxT = ESTIMATORS[estimator](x, cfg)
  return jnp.where(x.mask_BxT, adv_BxT, jnp.zeros_like(adv_BxT))


def _check_shape(name: str, x, expected: tuple[int | None, ...], meaning: str) -> None:
  if len(x.shape) != len(expected) or any(e is not None and s != e
                                          for s, e in zip(x.shape, expected)):
    raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {meaning}")


def mrt_advantages(outcome, progress, token_block_ids, token_mask, *, group_size: int,
                   alpha: float, estimator: str = "mrt", eps: float = 1e-6,
                   std: str = "unbiased", outcome_norm: str = "grpo",
                   progress_norm: str = "none", flat_threshold: float = 0.02, terminated=None,
                   success=None) -> jax.Array:
  """Per-token advantages for a group-major batch of rollouts (jitted; numpy inputs are fine).

  Args:
    outcome: f32 [B] outcome rewards r_i (B = P·G, rows of a group adjacent).
    progress: f32 [B, N] block progress p_{i,j} (column j−1 is block j), e.g. `progress_reward`.
    token_block_ids: int [B, T] block of each completion token, 1..N thinking, 0 answer.
    token_mask: bool/0-1 [B, T], False on padding and on tokens that are not trained.
    group_size: G, rollouts per group.
    alpha: α >= 0, weight of progress (mrt, mrt_prefix); a concrete number (checked).
    estimator: a key of `ESTIMATORS`.
    eps: ε added to the group std (grpo normalization).
    std: "unbiased" or "biased" group std.
    outcome_norm: "grpo", "dr_grpo" or "rloo": how mrt and mrt_prefix normalize the outcome.
    progress_norm: a key of `PROGRESS_NORMS` ("none", "center", "standardize", "flat_price",
      "flat_price_stop"): how mrt normalizes progress in a group.
    flat_threshold: τ of the flat_price norms: a block with progress p <= τ is flat (others
      ignore it).
    terminated: bool [B], mrt_prefix only: rollouts forced to answer right after the prefix.
    success: f32 [B, N+1] the meta-prover's J_0..J_N at each rollout's boundaries (columns past
      a row's N are not read), termination estimators only.

  Returns:
    f32 [B, T] advantages, exactly 0 where `token_mask` is False.
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator={estimator!r} is unknown; expected one of {sorted(ESTIMATORS)}")
  cfg = AdvantageConfig(group_size=group_size, std=std, outcome_norm=outcome_norm,
                        progress_norm=progress_norm)
  if not alpha >= 0:
    raise ValueError(f"alpha={alpha}; expected alpha >= 0")
  if not eps >= 0:
    raise ValueError(f"eps={eps}; expected eps >= 0")
  if not np.isfinite(flat_threshold):
    raise ValueError(f"flat_threshold={flat_threshold}; expected a finite number")
  _check_shape("outcome", outcome, (None,), "[B]")
  B = outcome.shape[0]
  if B % group_size:
    raise ValueError(f"group_size={group_size} does not divide the batch size B={B} of outcome")
  _check_shape("progress", progress, (B, None), f"[B, N] with B={B} like outcome")
  _check_shape("token_mask", token_mask, (B, None), f"[B, T] with B={B} like outcome")
  T = token_mask.shape[1]
  _check_shape("token_block_ids", token_block_ids, (B, T),
               f"[B, T]={(B, T)} like token_mask")
  if (terminated is None) != (estimator != "mrt_prefix"):
    raise ValueError(f"terminated is {'missing' if terminated is None else 'given'}; expected it "
                     "exactly when estimator='mrt_prefix'")
  if isinstance(token_block_ids, np.ndarray) and isinstance(token_mask, np.ndarray):
    bad = (token_mask != 0) & ((token_block_ids < 0) | (token_block_ids > progress.shape[1]))
    if bad.any():
      b, t = np.argwhere(bad)[0]
      raise ValueError(f"token_block_ids[{b}, {t}]={token_block_ids[b, t]} is outside [0, N] "
                       f"with N={progress.shape[1]} blocks in progress")
  needs_success = estimator in ("termination", "termination_dense")
  if (success is None) == needs_success:
    raise ValueError(f"success is {'missing' if success is None else 'given'}; expected it "
                     "exactly when estimator is 'termination' or 'termination_dense'")
  if success is None:
    success = np.zeros((B, progress.shape[1] + 1), np.float32)
  _check_shape("success", success, (B, progress.shape[1] + 1),
               f"[B, N+1]={(B, progress.shape[1] + 1)} like progress [B, N]")
  if terminated is None:
    terminated = np.zeros((B,), bool)
  _check_shape("terminated", terminated, (B,), f"[B] with B={B} like outcome")
  if estimator == "mrt_prefix" and not isinstance(terminated, jax.core.Tracer):
    none_PxG = ~np.asarray(terminated, bool).reshape(B // group_size, group_size).any(axis=1)
    if none_PxG.any():
      raise ValueError(f"terminated: group {int(np.argmax(none_PxG))} (rows "
                       f"{int(np.argmax(none_PxG)) * group_size}..."
                       f"{(int(np.argmax(none_PxG)) + 1) * group_size - 1}) has no terminated "
                       "rollout; mrt_prefix needs at least one per group (its J_term baseline)")
  mask = jnp.asarray(token_mask) != 0
  x = EstimatorInputs(jnp.asarray(outcome, jnp.float32), jnp.asarray(progress, jnp.float32),
                      jnp.asarray(token_block_ids, jnp.int32), jnp.asarray(terminated) != 0,
                      mask, jnp.asarray(success, jnp.float32), jnp.asarray(alpha, jnp.float32),
                      jnp.asarray(eps, jnp.float32), jnp.asarray(flat_threshold, jnp.float32))
  return _advantages(x, estimator=estimator, cfg=cfg)
