"""Params from a Hugging Face directory or from a training checkpoint (no absl flags here, so
every entry point can import it)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from mrt_jax import models


def load_checkpoint(config, path: str):
  """Params of a Hugging Face dir or of the latest step of an Orbax training checkpoint dir.

  Returns:
    (model_config, params, name): name is the directory's name for Hugging Face dirs and
    "step_<N>" for training checkpoints.

  Raises:
    FileNotFoundError: `path` is missing, or holds neither config.json nor a checkpoint step.
  """
  dtype = jnp.dtype(config.model.dtype)
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist; expected a Hugging Face dir "
                            "(config.json + *.safetensors) or a training checkpoint dir "
                            "(<workdir>/checkpoints)")
  if os.path.isfile(os.path.join(path, "config.json")):
    model_config, params = models.load_hf(path, dtype)
    return model_config, params, os.path.basename(path)
  if not any(d.isdigit() for d in os.listdir(path)):
    raise FileNotFoundError(f"checkpoint {path!r} holds neither config.json nor an Orbax step "
                            "directory (e.g. 100/); expected a Hugging Face dir or "
                            "<workdir>/checkpoints")
  # Imported here: the training stack (optax, orbax) is only needed for training checkpoints.
  from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
  from mrt_jax.learner.state import init_state
  from mrt_jax.train.checkpoint import Checkpointer
  model_config = models.load_config(config.model.path)
  o = config.optimizer
  # Must rebuild training's optimizer: its state's tree structure is part of the checkpoint.
  optimizer = make_optimizer(OptimizerConfig(
      learning_rate=o.learning_rate, schedule=o.schedule, warmup_ratio=o.warmup_ratio,
      total_steps=config.train.total_steps, weight_decay=o.weight_decay,
      grad_clip=o.max_grad_norm))
  abstract_params = jax.eval_shape(
      lambda: models.init_params(model_config, jax.random.key(0), dtype))
  abstract = jax.eval_shape(lambda p: init_state(p, optimizer), abstract_params)
  ckpt = Checkpointer(path, every=0)
  try:
    step = ckpt.latest_step()
    state, _ = ckpt.restore(abstract)
  finally:
    ckpt.close()
  return model_config, state.params, f"step_{step}"
