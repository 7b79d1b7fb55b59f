"""The train step: micro-batch and device-count invariance, non-finite skipping, bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learner_fixtures import rl_batch, tiny_model
from subprocess_util import run_python
from mrt_jax.learner import losses
from mrt_jax.learner.logprobs import token_logprobs
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import create_state
from mrt_jax.learner.step import StepConfig, loss_and_grads, make_train_step

LOSS = losses.LossConfig(policy_loss="clip", aggregation="seq_mean_token_mean", eps_high=0.28,
                         beta=0.04, kl_estimator="k3")


# seq_mean_token_sum_norm has token_mean's structure (a constant normalizer); the losses tests
# check every aggregation's micro-batch contract on the loss itself.
@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
def test_gradient_does_not_depend_on_micro_batch_split(aggregation):
  config, params = tiny_model()
  batch = rl_batch(config, params)
  loss_cfg = dataclasses.replace(LOSS, aggregation=aggregation, max_len=13)
  grads = {}
  for m in (1, 4):
    cfg = StepConfig(num_micro_batches=m, loss=loss_cfg)
    loss, metrics, g = jax.jit(loss_and_grads, static_argnums=(0, 1))(config, cfg, params, batch)
    grads[m] = (loss, g)
  np.testing.assert_allclose(grads[1][0], grads[4][0], rtol=0, atol=1e-6)
  flat1, flat4 = jax.tree.leaves(grads[1][1]), jax.tree.leaves(grads[4][1])
  assert max(float(jnp.abs(g).max()) for g in flat1) > 1e-3  # Non-trivial gradients.
  for a, b in zip(flat1, flat4):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_padding_gets_zero_gradient_and_sft_objective_runs():
  config, params = tiny_model()
  batch = rl_batch(config, params)
  cfg = StepConfig(loss=LOSS)
  base = jax.jit(loss_and_grads, static_argnums=(0, 1))(config, cfg, params, batch)
  poisoned = dict(batch)
  masked = batch["mask"] == 0
  poisoned["advantages"] = np.where(masked, np.nan, batch["advantages"]).astype(np.float32)
  poisoned["old_logprobs"] = np.where(masked, np.inf, batch["old_logprobs"]).astype(np.float32)
  got = jax.jit(loss_and_grads, static_argnums=(0, 1))(config, cfg, params, poisoned)
  for a, b in zip(jax.tree.leaves(base[2]), jax.tree.leaves(got[2])):
    np.testing.assert_array_equal(a, b)
  sft = StepConfig(objective="sft", num_micro_batches=2)
  loss, metrics, _ = jax.jit(loss_and_grads, static_argnums=(0, 1))(config, sft, params, batch)
  assert np.isfinite(loss) and float(metrics["tokens"]) == batch["mask"].sum()


def test_sft_mask_values_weight_the_targets():
  """The `sft` objective: Σ w·nll over trained tokens / their count (weights are not counted)."""
  config, params = tiny_model()
  batch = rl_batch(config, params)
  sft = StepConfig(objective="sft", num_micro_batches=2)
  run = jax.jit(loss_and_grads, static_argnums=(0, 1))
  plain, plain_metrics, _ = run(config, sft, params, batch)
  weights = np.where(batch["mask"] > 0, 1.0 + np.arange(batch["mask"].shape[1]) % 3, 0.0)
  loss, metrics, _ = run(config, sft, params, {**batch, "mask": weights.astype(np.float32)})
  logp = np.asarray(token_logprobs(config, params, batch["tokens"])[0])
  expected = -(weights * logp).sum() / (batch["mask"] > 0).sum()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(plain, -(batch["mask"] * logp).sum() / batch["mask"].sum(),
                             rtol=1e-5)
  assert float(metrics["tokens"]) == float(plain_metrics["tokens"]) == batch["mask"].sum()


def _answer_fields(config, rows=8, length=11, seed=1):
  """Forced-answer rows: random contexts, 1-3 answer targets each (one row has none)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, config.vocab_size, size=(rows, length)).astype(np.int32)
  mask = np.zeros((rows, length), np.float32)
  for r in range(rows - 1):
    start = int(rng.integers(2, length - 3))
    mask[r, start:start + int(rng.integers(1, 4))] = 1.0
  return {"answer_tokens": tokens, "answer_mask": mask}


def test_answer_nll_adds_lambda_times_its_token_mean_on_any_micro_batch_split():
  """loss = policy loss + λ · Σ −log π(answer targets) / their count over the WHOLE batch."""
  config, params = tiny_model()
  batch = {**rl_batch(config, params), **_answer_fields(config)}
  run = jax.jit(loss_and_grads, static_argnums=(0, 1))
  base, _, base_grads = run(config, StepConfig(loss=LOSS), params, batch)
  logp = np.asarray(token_logprobs(config, params, batch["answer_tokens"])[0], np.float64)
  nll = -(batch["answer_mask"] * logp).sum() / batch["answer_mask"].sum()
  lam = 0.7
  got = {}
  for m in (1, 4):
    cfg = StepConfig(num_micro_batches=m, loss=dataclasses.replace(LOSS, answer_nll_coef=lam))
    got[m] = run(config, cfg, params, batch)
    loss, metrics, _ = got[m]
    np.testing.assert_allclose(loss, base + lam * nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["answer_nll"], nll, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(got[1][2]), jax.tree.leaves(got[4][2])):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  # The gradient moved by λ × the answer NLL's gradient, computed on its own.
  nll_grads = jax.grad(lambda p: -jnp.sum(batch["answer_mask"] * token_logprobs(
      config, p, batch["answer_tokens"])[0]) / batch["answer_mask"].sum())(params)
  for g, g0, gn in zip(*(jax.tree.leaves(t) for t in (got[1][2], base_grads, nll_grads))):
    np.testing.assert_allclose(g, g0 + lam * gn, rtol=1e-4, atol=1e-6)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(nll_grads)) > 1e-3
  # λ = 0 never reads the rows: the loss is the policy loss alone.
  loss0, metrics0, _ = run(config, StepConfig(loss=LOSS), params, batch)
  assert float(loss0) == float(base) and "answer_nll" not in metrics0


def test_answer_nll_needs_its_rows():
  config, params = tiny_model()
  batch = rl_batch(config, params)
  cfg = StepConfig(loss=dataclasses.replace(LOSS, answer_nll_coef=0.1))
  with pytest.raises(ValueError, match=r"answer_nll_coef=0.1 needs the batch fields .*missing "
                                       r"\['answer_tokens', 'answer_mask'\]"):
    loss_and_grads(config, cfg, params, batch)
  with pytest.raises(ValueError, match="LossConfig.answer_nll_coef=-1.0 must be >= 0"):
    dataclasses.replace(LOSS, answer_nll_coef=-1.0)


def test_nonfinite_update_is_skipped_and_counted():
  config, params = tiny_model()
  batch = rl_batch(config, params)
  optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=10))
  step = make_train_step(config, StepConfig(loss=LOSS), optimizer)
  state = create_state(params, optimizer)
  bad = dict(batch)
  bad["advantages"] = np.where(batch["mask"] > 0, np.nan, 0.0).astype(np.float32)
  before = jax.tree.map(np.asarray, state.params)
  for expected_streak in (1, 2):
    state, metrics = step(state, bad)
    assert int(metrics["skipped"]) == 1 and int(state.nonfinite_streak) == expected_streak
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, state.params))
  assert int(state.step) == 0
  for _ in range(2):  # The warmup schedule's learning rate is 0 at the first update.
    state, metrics = step(state, batch)
  assert int(metrics["skipped"]) == 0 and int(state.nonfinite_streak) == 0
  assert int(state.step) == 2 and int(state.nonfinite_total) == 2
  assert float(metrics["update_norm"]) > 0


def test_bad_input_errors():
  config, params = tiny_model()
  batch = rl_batch(config, params, rows=6)
  optimizer = optax.sgd(0.1)
  with pytest.raises(ValueError, match="6 rows is not divisible by num_micro_batches=4"):
    make_train_step(config, StepConfig(num_micro_batches=4, loss=LOSS), optimizer)(
        create_state(params, optimizer), batch)
  with pytest.raises(ValueError, match="objective='dpo' is unknown"):
    make_train_step(config, StepConfig(objective="dpo"), optimizer)
  short = dict(batch, mask=batch["mask"][:5])
  with pytest.raises(ValueError, match="disagree on the number of rows"):
    make_train_step(config, StepConfig(loss=LOSS), optimizer)(
        create_state(params, optimizer), short)


def test_train_step_on_8_devices_equals_1_device(one_device_steps, tmp_path):
  batch, one = one_device_steps
  code = f"""
    import sys, jax, numpy as np
    from jax.sharding import PartitionSpec as P
    sys.path.insert(0, "tests/learner")
    from learner_fixtures import two_steps
    from mrt_jax import models
    assert jax.device_count() == 8
    out, state = two_steps(dict(np.load("{batch}")), models.make_mesh(data=2, fsdp=2, tensor=2))
    # Optimizer moments are sharded like their params, not replicated.
    big = [x for x in jax.tree.leaves(state.opt_state) if x.ndim >= 2]
    assert big and all(x.sharding.spec != P() for x in big), [x.sharding for x in big]
    np.savez("{tmp_path / 'out_8.npz'}", **out)
  """
  run_python(code, devices=8)
  eight = np.load(tmp_path / "out_8.npz")
  assert set(one) == set(eight.files)
  for k in one:
    np.testing.assert_allclose(eight[k], one[k], rtol=0, atol=1e-5, err_msg=k)
