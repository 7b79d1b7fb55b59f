"""Params from a Hugging Face directory or from a training checkpoint (no absl flags here, so
every entry point can import it)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from mrt_jax import models


def load_checkpoint(config, path: str):
  """Params of a Hugging Face dir or of the latest step of an Orbax training checkpoint dir.

  Args:
    config: the experiment config (model dtype and path, optimizer: the checkpoint's layout).
    path: a Hugging Face dir or `<workdir>/checkpoints`.

  Returns:
    (model_config, params, name): params on this process's first device (whatever mesh wrote
    the checkpoint); name is the directory's name for Hugging Face dirs and
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
  from mrt_jax.learner.optimizer import make_optimizer
  from mrt_jax.train.checkpoint import Checkpointer, abstract_train_state
  from mrt_jax.train.setup import optimizer_config
  model_config = models.load_config(config.model.path)
  # Must rebuild training's optimizer: its state's tree structure is part of the checkpoint.
  optimizer = make_optimizer(optimizer_config(config))
  shapes = jax.eval_shape(lambda: models.init_params(model_config, jax.random.key(0), dtype))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
  ckpt = Checkpointer(path, every=0)
  try:
    step = ckpt.latest_step()
    state, _ = ckpt.restore(abstract_train_state(abstract_params, optimizer))
  finally:
    ckpt.close()
  return model_config, state.params, f"step_{step}"
