"""`ModelConfig`: the architecture of a decoder, built from a Hugging Face `config.json`.

One converter per supported `architectures[0]` value, registered by name in `ARCHITECTURES`.
The dataclass is frozen and hashable so it can be a static argument of `jax.jit`.

Letter legend used across `mrt_jax.models`:
  B batch, T time (new tokens), S cache length, D model width, H query heads, K kv heads,
  G query groups per kv head (H // K), E head dim, V vocab, L layers, F ffn width.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

import numpy as np


class ConfigError(ValueError):
  """A checkpoint's `config.json` is missing, unreadable or describes something unsupported."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama 3.x frequency-dependent rope scaling (HF `rope_scaling` with `rope_type: llama3`)."""
  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a Llama-family decoder-only transformer."""
  architecture: str               # HF `architectures[0]`, e.g. "Qwen2ForCausalLM".
  model_type: str                 # HF `model_type`: "llama", "qwen2" or "qwen3".
  vocab_size: int                 # V
  hidden_size: int                # D
  intermediate_size: int          # F
  num_layers: int                 # L
  num_heads: int                  # H
  num_kv_heads: int               # K (GQA; K == H is plain multi-head attention)
  head_dim: int                   # E
  rms_norm_eps: float
  rope_theta: float
  rope_scaling: RopeScaling | None
  tie_word_embeddings: bool       # lm head reuses the embedding table
  qkv_bias: bool                  # q/k/v projections have a bias (Qwen2 always)
  o_bias: bool                    # output projection has a bias (Llama/Qwen3 `attention_bias`)
  qk_norm: bool                   # RMSNorm over E on q and k before rope (Qwen3)
  max_position_embeddings: int
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int | None = None

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(f"num_attention_heads={self.num_heads} is not a multiple of "
                        f"num_key_value_heads={self.num_kv_heads}")

  @property
  def num_groups(self) -> int:
    """G: query heads sharing one kv head."""
    return self.num_heads // self.num_kv_heads

  def to_hf_dict(self) -> dict[str, Any]:
    """The `config.json` contents that `transformers` rebuilds this architecture from."""
    out: dict[str, Any] = {
        "architectures": [self.architecture],
        "model_type": self.model_type,
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": self.rms_norm_eps,
        "rope_theta": self.rope_theta,
        "tie_word_embeddings": self.tie_word_embeddings,
        "max_position_embeddings": self.max_position_embeddings,
        "bos_token_id": self.bos_token_id,
        "eos_token_id": (list(self.eos_token_ids) if len(self.eos_token_ids) != 1
                         else self.eos_token_ids[0]),
        "pad_token_id": self.pad_token_id,
    }
    if self.rope_scaling is not None:
      out["rope_scaling"] = {"rope_type": "llama3", **dataclasses.asdict(self.rope_scaling)}
    if self.model_type in ("llama", "qwen3"):
      out["attention_bias"] = self.o_bias
    if self.model_type == "qwen2":
      out["use_sliding_window"] = False
    return out


def _get(hf: Mapping[str, Any], key: str, where: str, default: Any = ...) -> Any:
  if key in hf:
    return hf[key]
  if default is ...:
    raise ConfigError(f"{where}: required field {key!r} is missing")
  return default


def _rope(hf: Mapping[str, Any], where: str) -> tuple[float, RopeScaling | None]:
  """(rope_theta, scaling) from either config.json format.

  transformers < 5 writes `rope_theta` and `rope_scaling` (the released R1-Distill, Llama 3.1
  and Qwen3 checkpoints); transformers >= 5 writes one `rope_parameters` dict holding both.
  """
  params = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or params
  theta = float(hf.get("rope_theta", params.get("rope_theta", 10000.0)))
  kind = scaling.get("rope_type", scaling.get("type", "default"))
  if kind == "default":
    return theta, None
  if kind != "llama3":
    raise ConfigError(f"{where}: rope type {kind!r} is not supported; supported: 'default', "
                      f"'llama3'")
  try:
    return theta, RopeScaling(
        factor=float(scaling["factor"]), low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_position_embeddings=int(scaling["original_max_position_embeddings"]))
  except KeyError as e:
    raise ConfigError(f"{where}: llama3 rope scaling lacks field {e.args[0]!r}") from e


def _eos(hf: Mapping[str, Any]) -> tuple[int, ...]:
  eos = hf.get("eos_token_id")
  if eos is None:
    return ()
  return tuple(int(e) for e in np.atleast_1d(eos))


def _common(hf: Mapping[str, Any], where: str) -> dict[str, Any]:
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    raise ConfigError(f"{where}: hidden_act {act!r} is not supported; supported: 'silu'")
  if hf.get("mlp_bias", False):
    raise ConfigError(f"{where}: mlp_bias=true is not supported")
  heads = int(_get(hf, "num_attention_heads", where))
  hidden = int(_get(hf, "hidden_size", where))
  head_dim = hf.get("head_dim") or hidden // heads
  rope_theta, rope_scaling = _rope(hf, where)
  return dict(
      vocab_size=int(_get(hf, "vocab_size", where)),
      hidden_size=hidden,
      intermediate_size=int(_get(hf, "intermediate_size", where)),
      num_layers=int(_get(hf, "num_hidden_layers", where)),
      num_heads=heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or heads),
      head_dim=int(head_dim),
      rms_norm_eps=float(_get(hf, "rms_norm_eps", where, 1e-6)),
      rope_theta=rope_theta,
      rope_scaling=rope_scaling,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_position_embeddings=int(_get(hf, "max_position_embeddings", where, 4096)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_ids=_eos(hf),
      pad_token_id=hf.get("pad_token_id"),
  )


def _no_sliding_window(hf: Mapping[str, Any], where: str) -> None:
  if hf.get("use_sliding_window", False):
    raise ConfigError(f"{where}: use_sliding_window=true is not supported")


def _llama(hf: Mapping[str, Any], where: str) -> ModelConfig:
  bias = bool(hf.get("attention_bias", False))
  return ModelConfig(architecture="LlamaForCausalLM", model_type="llama", qkv_bias=bias,
                     o_bias=bias, qk_norm=False, **_common(hf, where))


def _qwen2(hf: Mapping[str, Any], where: str) -> ModelConfig:
  _no_sliding_window(hf, where)
  return ModelConfig(architecture="Qwen2ForCausalLM", model_type="qwen2", qkv_bias=True,
                     o_bias=False, qk_norm=False, **_common(hf, where))


def _qwen3(hf: Mapping[str, Any], where: str) -> ModelConfig:
  _no_sliding_window(hf, where)
  bias = bool(hf.get("attention_bias", False))
  return ModelConfig(architecture="Qwen3ForCausalLM", model_type="qwen3", qkv_bias=bias,
                     o_bias=bias, qk_norm=True, **_common(hf, where))


# HF `architectures[0]` -> converter. Add a family by registering one function here.
ARCHITECTURES: dict[str, Callable[[Mapping[str, Any], str], ModelConfig]] = {
    "LlamaForCausalLM": _llama,
    "Qwen2ForCausalLM": _qwen2,
    "Qwen3ForCausalLM": _qwen3,
}


def config_from_hf_dict(hf: Mapping[str, Any], where: str = "config.json") -> ModelConfig:
  """Converts a parsed HF `config.json` to a `ModelConfig`; `where` names it in errors."""
  archs = hf.get("architectures") or []
  arch = archs[0] if archs else None
  if arch not in ARCHITECTURES:
    raise ConfigError(f"{where}: architecture {arch!r} is not supported; "
                      f"supported: {sorted(ARCHITECTURES)}")
  return ARCHITECTURES[arch](hf, where)


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
  """Reads `<path>/config.json` (or `path` itself if it is the file) into a `ModelConfig`."""
  path = os.fspath(path)
  file = path if path.endswith(".json") else os.path.join(path, "config.json")
  if not os.path.isfile(file):
    raise ConfigError(f"{file}: no config.json found (is {path!r} a Hugging Face checkpoint "
                      f"directory?)")
  try:
    with open(file) as f:
      hf = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ConfigError(f"{file}: cannot be read as JSON: {e}") from e
  return config_from_hf_dict(hf, where=file)
