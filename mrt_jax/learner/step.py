"""The train step: one jitted pure function (state, batch) -> (state, metrics).

- Micro-batch accumulation: the batch's rows are split into `num_micro_batches` by a strided
  split (micro-batch m holds rows m, m + M, m + 2M, ...), so each device keeps its own rows and
  no data moves; gradients of per-micro-batch losses, each normalized by the WHOLE batch's
  `Normalizer` (losses.py contract), are summed, which equals the full-batch gradient for any M.
- Explicit in/out shardings over the (`data`, `fsdp`, `tensor`) mesh; the state is donated.
- A non-finite loss or gradient skips the update (params and optimizer state unchanged), and is
  counted in `nonfinite_streak` / `nonfinite_total`; the caller stops the run after N in a row.

Batch fields (all [B, T], aligned with `tokens`; entry t concerns token t):
  tokens int32; mask f32/bool (trained tokens); advantages f32; old_logprobs f32;
  optional ref_logprobs (β > 0), sampler_logprobs (TIS / mismatch metric).
With `loss.answer_nll_coef` λ > 0 (objective "policy"), also answer_tokens int32 and
answer_mask f32 ([B, T'], any T'): one forced-answer row per rollout, the meta-prover's context
(prompt, the trace cut at a boundary, the termination suffix) then an answer (the warm start's
or the reference, `loss.answer_target`), the mask on those targets (`mrt_jax.train.anchor`).
The loss adds λ × their token-mean NLL (at temperature 1, over the whole batch's answer
tokens): maximum likelihood of the meta-prover μ, so that RL on natural rollouts does not erode
the J that progress reads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrt_jax.learner import losses
from mrt_jax.learner.aggregation import normalizer, token_mean
from mrt_jax.learner.logprobs import token_logprobs
from mrt_jax.learner.state import TrainState
from mrt_jax.models import ModelConfig
from mrt_jax.models.sharding import TRAIN_RULES, Rules, named_sharding


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the train step."""
  objective: str = "policy"        # key of OBJECTIVES: "policy" (RL) or "sft"
  num_micro_batches: int = 1       # gradient accumulation steps per update
  temperature: float = 1.0         # sampling temperature the log-probs are taken at
  compute_dtype: Any = None        # activation dtype (None = params' dtype)
  loss: losses.LossConfig = losses.LossConfig()


ANSWER_FIELDS = ("answer_tokens", "answer_mask")


def _answer_nll(model_config: ModelConfig, cfg: StepConfig, params,
                mb: Mapping[str, jax.Array], answer_norm) -> jax.Array:
  """Σ −log π(answer target) over this micro-batch / the whole batch's answer-target count."""
  logp_BxT, _ = token_logprobs(model_config, params, mb["answer_tokens"],
                               compute_dtype=cfg.compute_dtype)
  nll_BxT = jnp.where(mb["answer_mask"] != 0, -logp_BxT, 0.0)
  return token_mean(nll_BxT, mb["answer_mask"], answer_norm, None)


def _policy(model_config: ModelConfig, cfg: StepConfig, params, mb: Mapping[str, jax.Array],
            norm, answer_norm):
  logp_BxT, entropy_BxT = token_logprobs(model_config, params, mb["tokens"],
                                         temperature=cfg.temperature,
                                         compute_dtype=cfg.compute_dtype)
  loss, metrics = losses.policy_loss(
      cfg.loss, logp_BxT, mb["old_logprobs"], mb["advantages"], mb["mask"], norm=norm,
      ref_logprobs=mb.get("ref_logprobs"), sampler_logprobs=mb.get("sampler_logprobs"),
      entropy=entropy_BxT)
  if cfg.loss.answer_nll_coef > 0:
    nll = _answer_nll(model_config, cfg, params, mb, answer_norm)
    loss = loss + cfg.loss.answer_nll_coef * nll
    metrics = dict(metrics, loss=loss, answer_nll=nll)
  return loss, metrics


def _sft(model_config: ModelConfig, cfg: StepConfig, params, mb: Mapping[str, jax.Array], norm,
         answer_norm):
  del answer_norm  # only the policy objective adds the meta-prover's answers
  logp_BxT, _ = token_logprobs(model_config, params, mb["tokens"],
                               compute_dtype=cfg.compute_dtype)
  # The mask's values weight the trained tokens (1: plain cross-entropy); the normalizer
  # counts trained tokens, so weights > 1 stress some targets without diluting the rest.
  weight_BxT = mb["mask"].astype(jnp.float32)
  nll = jnp.where(weight_BxT > 0, -logp_BxT * weight_BxT, 0.0)
  agg = losses.AGGREGATIONS[cfg.loss.aggregation]
  loss = agg(nll, weight_BxT, norm, cfg.loss.max_len)
  trained_BxT = (weight_BxT > 0).astype(jnp.float32)
  return loss, {"loss": loss, "nll_sum": jnp.sum(nll), "tokens": jnp.sum(trained_BxT)}


# Objective name -> (model_config, step_config, params, micro_batch, norm, answer_norm)
#   -> (loss, metrics); the norms are the whole batch's (`aggregation.normalizer`).
OBJECTIVES: dict[str, Callable] = {"policy": _policy, "sft": _sft}


def _split(batch: Mapping[str, jax.Array], m: int) -> dict[str, jax.Array]:
  """[B, ...] -> [M, B/M, ...] with micro-batch k = rows k, k+M, ... (no data movement)."""
  def one(x):
    b = x.shape[0]
    return x.reshape(b // m, m, *x.shape[1:]).swapaxes(0, 1)
  return {k: one(v) for k, v in batch.items()}


def _finite_tree(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def loss_and_grads(model_config: ModelConfig, cfg: StepConfig, params,
                   batch: Mapping[str, jax.Array]):
  """(loss, metrics, f32 grads) of the whole batch, accumulated over micro-batches."""
  objective = OBJECTIVES[cfg.objective]
  batch = dict(batch)
  norm = normalizer(batch["mask"])
  answer_norm = None
  if cfg.objective == "policy" and cfg.loss.answer_nll_coef > 0:
    missing = [k for k in ANSWER_FIELDS if k not in batch]
    if missing:
      raise ValueError(f"loss.answer_nll_coef={cfg.loss.answer_nll_coef} needs the batch fields "
                       f"{list(ANSWER_FIELDS)} (the meta-prover's answer rows); missing "
                       f"{missing}, batch has {sorted(batch)}")
    answer_norm = normalizer(batch["answer_mask"])
  micro = _split(batch, cfg.num_micro_batches)

  def accumulate(grads_acc, mb):
    grad_fn = jax.value_and_grad(
        lambda p: objective(model_config, cfg, p, mb, norm, answer_norm), has_aux=True)
    (loss, metrics), grads = grad_fn(params)
    grads_acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_acc, grads)
    return grads_acc, (loss, metrics)

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  grads, (losses_M, metrics_M) = jax.lax.scan(accumulate, zeros, micro)
  return jnp.sum(losses_M), losses.combine_stacked_metrics(metrics_M), grads


def train_step(model_config: ModelConfig, cfg: StepConfig,
               optimizer: optax.GradientTransformation, state: TrainState,
               batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update from one batch (pure; see `make_train_step` for the jitted form)."""
  loss, metrics, grads = loss_and_grads(model_config, cfg, state.params, batch)
  grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
  finite = jnp.isfinite(loss) & _finite_tree(grads)
  updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  streak = jnp.where(finite, 0, state.nonfinite_streak + 1)
  new_state = TrainState(
      step=state.step + finite.astype(jnp.int32),
      params=keep(new_params, state.params),
      opt_state=keep(new_opt_state, state.opt_state),
      nonfinite_streak=streak,
      nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
  metrics.update(
      loss=loss, grad_norm=optax.tree.norm(grads), update_norm=optax.tree.norm(updates),
      param_norm=optax.tree.norm(new_state.params), skipped=(~finite).astype(jnp.int32),
      nonfinite_streak=streak)
  return new_state, metrics


def batch_shardings(mesh: Mesh, batch: Mapping[str, Any], rules: Rules = TRAIN_RULES):
  """Rows over the batch mesh axes, time replicated."""
  return {k: named_sharding(mesh, ("batch", "seq")[:len(v.shape)], rules, v.shape)
          for k, v in batch.items()}


def make_train_step(model_config: ModelConfig, cfg: StepConfig,
                    optimizer: optax.GradientTransformation, *, mesh: Mesh | None = None,
                    state_shardings=None, batch_shardings_=None) -> Callable:
  """Jits `train_step` with donation (and explicit shardings when `mesh` is given).

  Raises at call time if the batch size is not a multiple of `num_micro_batches`.
  """
  if cfg.objective not in OBJECTIVES:
    raise ValueError(f"objective={cfg.objective!r} is unknown; expected one of "
                     f"{sorted(OBJECTIVES)}")
  if cfg.num_micro_batches < 1:
    raise ValueError(f"num_micro_batches={cfg.num_micro_batches} must be >= 1")
  fn = lambda state, batch: train_step(model_config, cfg, optimizer, state, batch)
  if mesh is None:
    jitted = jax.jit(fn, donate_argnums=0)
  else:
    replicated = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(fn, in_shardings=(state_shardings, batch_shardings_),
                     out_shardings=(state_shardings, replicated), donate_argnums=0)

  def step(state: TrainState, batch: Mapping[str, Any]):
    rows = {k: v.shape[0] for k, v in batch.items()}
    if len(set(rows.values())) != 1:
      raise ValueError(f"batch fields disagree on the number of rows: {rows}")
    b = next(iter(rows.values()))
    if b % cfg.num_micro_batches:
      raise ValueError(f"batch of {b} rows is not divisible by num_micro_batches="
                       f"{cfg.num_micro_batches}")
    if mesh is not None:
      with jax.set_mesh(mesh):
        return jitted(state, batch)
    return jitted(state, batch)

  return step
