"""Params from a Hugging Face directory or from a training checkpoint (no absl flags here, so
every entry point can import it)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from mrt_jax import models, storage
from mrt_jax.models.sharding import TRAIN_RULES, Rules


def abstract_params(model_config: models.ModelConfig, dtype, mesh: jax.sharding.Mesh | None,
                    rules: Rules = TRAIN_RULES):
  """The params' `jax.ShapeDtypeStruct`s placed on `mesh` by `rules` (None: the first local
  device)."""
  shapes = jax.eval_shape(lambda: models.init_params(model_config, jax.random.key(0), dtype))
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
  from mrt_jax.learner.state import param_shardings  # pylint: disable=import-outside-toplevel
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
                      param_shardings(model_config, mesh, rules))


def load_checkpoint(config, path: str, mesh: jax.sharding.Mesh | None = None,
                    rules: Rules = TRAIN_RULES):
  """Params of a Hugging Face dir or of the latest step of an Orbax training checkpoint dir.

  Only the params are read: a training checkpoint's optimizer state is never restored. With a
  mesh, every param is placed straight onto it by `rules` and each process reads only the
  shards its devices hold (one or several processes; any mesh may have written it).

  Args:
    config: the experiment config (model dtype; model.path names a training checkpoint's
      architecture).
    path: a Hugging Face dir or `<workdir>/checkpoints`.
    mesh: the mesh to place the params on; None = this process's first device.
    rules: logical -> mesh axis rules with `mesh` (e.g. `SAMPLE_RULES` for a sampler).

  Returns:
    (model_config, params, name): name is the directory's name for Hugging Face dirs and
    "step_<N>" for training checkpoints.

  Raises:
    FileNotFoundError: `path` is missing, or holds neither config.json nor a checkpoint step.
  """
  dtype = jnp.dtype(config.model.dtype)
  path = storage.absolute(path)
  if not storage.isdir(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist; expected a Hugging Face dir "
                            "(config.json + *.safetensors) or a training checkpoint dir "
                            "(<workdir>/checkpoints)")
  if storage.exists(os.path.join(path, "config.json")):
    model_config, params = models.load_hf(path, dtype, mesh=mesh, rules=rules)
    return model_config, params, os.path.basename(path)
  if not any(d.isdigit() for d in storage.listdir(path)):
    raise FileNotFoundError(f"checkpoint {path!r} holds neither config.json nor an Orbax step "
                            "directory (e.g. 100/); expected a Hugging Face dir or "
                            "<workdir>/checkpoints")
  # Imported here: the training stack (orbax) is only needed for training checkpoints.
  from mrt_jax.train.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  model_config = models.load_config(config.model.path)
  ckpt = Checkpointer(path, every=0)
  try:
    params, step = ckpt.restore_params(abstract_params(model_config, dtype, mesh, rules))
  finally:
    ckpt.close()
  return model_config, params, f"step_{step}"


def load_meta_prover(config, field: str, model_config: models.ModelConfig,
                     mesh: jax.sharding.Mesh | None, rules: Rules):
  """The params of a fixed meta-prover named by config field `field` (e.g. "probe.meta_prover"),
  placed on `mesh` by `rules`; errors name the field.

  A fixed meta-prover reads the policy's tokens from its own KV cache, so it needs the policy's
  architecture and vocab (`model_config`).
  """
  section, name = field.split(".")
  path = str(config[section][name])
  try:
    prover_config, params, _ = load_checkpoint(config, path, mesh, rules)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{field} = {path!r}: {e}") from e
  if prover_config != model_config:
    raise ValueError(f"{field} = {path!r}: its architecture differs from the policy's "
                     f"({prover_config} against {model_config}); a fixed meta-prover reads the "
                     "policy's tokens, so it needs the same architecture and vocab")
  return params
