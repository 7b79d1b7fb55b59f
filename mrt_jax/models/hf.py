"""Hugging Face checkpoint import/export: `load_hf` and `save_hf`.

`load_hf` builds every param with `jax.make_array_from_callback`, so each device (on each host)
receives only its own shard, sliced from memory-mapped safetensors; the host holds at most one
stacked param's converted layers at a time, never the whole model twice.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding

from mrt_jax.models import weights
from mrt_jax.models.config import ModelConfig, load_config
from mrt_jax.models.safetensors_io import CheckpointError, TensorIndex, save_file
from mrt_jax.models.sharding import TRAIN_RULES, Rules, named_sharding, to_host

_DEFAULT_SHARD_BYTES = 5 * 1024**3


def _layer_reader(index: TensorIndex, hf: weights.HFTensor, dtype: np.dtype):
  """Returns read(i) -> layer i's tensor in our layout and `dtype` (memoized per param)."""
  memo: dict[int, np.ndarray] = {}

  def read(i: int) -> np.ndarray:
    if i not in memo:
      raw = index.get(hf.name.format(i=i), hf.hf_shape)
      memo[i] = np.asarray(hf.to_ours(raw), dtype=dtype)
    return memo[i]

  return read


def _build_param(index: TensorIndex, spec: weights.ParamSpec, hf: weights.HFTensor,
                 dtype: np.dtype, sharding: jax.sharding.Sharding) -> jax.Array:
  """One param, each device's shard sliced from the checkpoint by `make_array_from_callback`."""
  num_layers = spec.shape[0] if hf.stacked else 1
  for i in range(num_layers):  # Validate presence and shapes before any device copy.
    index.get(hf.name.format(i=i), hf.hf_shape)
  read = _layer_reader(index, hf, dtype)

  def shard(idx: tuple[slice, ...]) -> np.ndarray:
    if not hf.stacked:
      return read(0)[idx]
    return np.stack([read(i)[idx[1:]] for i in range(*idx[0].indices(num_layers))])

  return jax.make_array_from_callback(spec.shape, sharding, shard)


def load_hf(path: str | os.PathLike[str], dtype=jnp.float32, *, mesh: Mesh | None = None,
            rules: Rules = TRAIN_RULES) -> tuple[ModelConfig, weights.Params]:
  """Loads a Hugging Face checkpoint directory.

  Args:
    path: directory with `config.json` and `model.safetensors` or sharded
      `model-*.safetensors` with `model.safetensors.index.json`.
    dtype: dtype of the returned params (e.g. jnp.float32 or jnp.bfloat16).
    mesh: if given, each param is placed directly with its logical sharding on this mesh.
    rules: logical -> mesh axis rules used with `mesh`.

  Returns:
    (config, params).

  Raises:
    ConfigError: missing/unsupported `config.json`.
    CheckpointError: missing safetensors, a missing tensor or a tensor of the wrong shape; the
      message names the file and the tensor.
  """
  path = os.fspath(path)
  config = load_config(path)
  index = TensorIndex(path)
  np_dtype = np.dtype(jnp.dtype(dtype))
  specs = weights.flat_specs(config)
  flat: dict[str, Any] = {}
  for name, hf in weights.hf_tensors(config).items():
    spec = specs[name]
    if mesh is None:
      sharding = SingleDeviceSharding(jax.devices()[0])
    else:
      sharding = named_sharding(mesh, spec.logical, rules, spec.shape)
    flat[name] = _build_param(index, spec, hf, np_dtype, sharding)
  return config, weights.unflatten(flat)


def _hf_state(config: ModelConfig, params: weights.Params):
  """Yields (hf_name, numpy array in HF layout), one param at a time."""
  flat = {f"{g}/{n}": v for g, sub in params.items() for n, v in sub.items()}
  for name, hf in weights.hf_tensors(config).items():
    if name not in flat:
      raise CheckpointError(f"params: missing {name!r} needed for {hf.name!r}")
    host = to_host(flat[name])
    if hf.stacked:
      for i in range(host.shape[0]):
        yield hf.name.format(i=i), np.ascontiguousarray(hf.to_hf(host[i]))
    else:
      yield hf.name, np.ascontiguousarray(hf.to_hf(host))


def save_hf(config: ModelConfig, params: weights.Params, out_dir: str | os.PathLike[str], *,
            dtype=None, max_shard_bytes: int = _DEFAULT_SHARD_BYTES) -> None:
  """Writes a directory that `transformers.AutoModelForCausalLM.from_pretrained` loads.

  Args:
    config: the architecture (written as `config.json`).
    params: the param pytree (any sharding; gathered one param at a time).
    out_dir: output directory (created).
    dtype: dtype of the saved tensors; defaults to the params' dtype.
    max_shard_bytes: above this, tensors go to several files plus an index.
  """
  out_dir = os.fspath(out_dir)
  if jax.process_index() != 0:
    for _ in _hf_state(config, params):  # Take part in the gathers; only process 0 writes.
      pass
    return
  os.makedirs(out_dir, exist_ok=True)
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  saved_dtype = None
  for name, array in _hf_state(config, params):
    if dtype is not None:
      array = array.astype(np.dtype(jnp.dtype(dtype)))
    saved_dtype = array.dtype
    if size and size + array.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = array
    size += array.nbytes
  if len(shards) == 1:
    save_file(shards[0], os.path.join(out_dir, "model.safetensors"))
  else:
    weight_map = {}
    for k, shard in enumerate(shards):
      file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
      save_file(shard, os.path.join(out_dir, file))
      weight_map.update({name: file for name in shard})
    total = sum(a.nbytes for s in shards for a in s.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  hf_config = config.to_hf_dict()
  hf_config["torch_dtype"] = {"float32": "float32", "bfloat16": "bfloat16",
                              "float16": "float16"}.get(str(saved_dtype), "float32")
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
