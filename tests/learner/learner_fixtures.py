"""A tiny model and a random RL batch shared by the learner tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mrt_jax import models
from mrt_jax.learner import losses
from mrt_jax.learner.logprobs import token_logprobs
from mrt_jax.learner.state import create_state, param_shardings, state_shardings
from mrt_jax.learner.step import StepConfig, batch_shardings, make_train_step
from mrt_jax.models.sharding import from_host, to_host

HF = dict(architectures=["Qwen2ForCausalLM"], vocab_size=97, hidden_size=32,
          intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0,
          max_position_embeddings=64)


def tiny_model(seed=0):
  config = models.config_from_hf_dict(HF)
  params = models.init_params(config, jax.random.key(seed))
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p if "norm" in jax.tree_util.keystr(path) else p * 5.0, params)
  return config, params


def rl_batch(config, params, rows=8, length=13, prompt=4, seed=0):
  """Right-padded sequences; completions of different lengths; old log-probs off-policy."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, config.vocab_size, size=(rows, length)).astype(np.int32)
  mask = np.zeros((rows, length), np.float32)
  for r in range(rows):
    mask[r, prompt:prompt + rng.integers(2, length - prompt + 1)] = 1.0
  logp, _ = token_logprobs(config, params, jnp.asarray(tokens))
  old = np.asarray(logp) + rng.normal(0, 0.3, size=(rows, length)).astype(np.float32)
  return {
      "tokens": tokens, "mask": mask,
      "advantages": rng.normal(size=(rows, length)).astype(np.float32),
      "old_logprobs": old.astype(np.float32),
      "ref_logprobs": (np.asarray(logp) + rng.normal(0, 0.1, size=(rows, length))
                       ).astype(np.float32),
  }


def two_steps(batch: dict, mesh) -> tuple[dict, object]:
  """Two train steps of the tiny model on `batch` (host arrays) laid out on `mesh`, which may
  span processes: 2 micro-batches, clipped loss with a KL term, SGD with momentum (linear in
  the gradient; has moments). Returns the last loss and the params as host arrays (savez
  names: `loss`, `arr_0`, ...) and the final state (its shardings)."""
  config, params = tiny_model()
  cfg = StepConfig(num_micro_batches=2, loss=losses.LossConfig(
      aggregation="seq_mean_token_mean", beta=0.04, eps_high=0.28))
  optimizer = optax.sgd(0.5, momentum=0.9)
  params = jax.tree.map(from_host, params, param_shardings(config, mesh))
  state = create_state(params, optimizer)
  shard_b = batch_shardings(mesh, batch)
  batch = {k: from_host(v, shard_b[k]) for k, v in batch.items()}
  step = make_train_step(config, cfg, optimizer, mesh=mesh,
                         state_shardings=state_shardings(state), batch_shardings_=shard_b)
  for _ in range(2):
    state, metrics = step(state, batch)
  leaves = {f"arr_{i}": to_host(x) for i, x in enumerate(jax.tree.leaves(state.params))}
  return {"loss": to_host(metrics["loss"]), **leaves}, state
