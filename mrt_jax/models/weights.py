"""The parameter pytree: its spec (shape + logical axes), random init, and HF tensor names.

Params are a nested dict; per-layer weights are stacked on a leading `layers` axis (L) so the
forward pass scans over them. Projections are stored input-major (`x @ W`), split per head:

  embed/embedding  [V, D]        layers/q      [L, D, H, E]   layers/o     [L, H, E, D]
  final_norm/scale [D]           layers/k, v   [L, D, K, E]   layers/gate  [L, D, F]
  lm_head/kernel   [D, V]        layers/q_bias [L, H, E] ...  layers/up    [L, D, F]
  (absent if tied)               layers/q_norm [L, E] (Qwen3)  layers/down  [L, F, D]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mrt_jax.models.config import ModelConfig

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """Shape and logical axes of one parameter (leading `layers` axis included if stacked)."""
  shape: tuple[int, ...]
  logical: tuple[str, ...]
  init: str  # "normal" (std 0.02), "ones" or "zeros"


def param_specs(config: ModelConfig) -> Params:
  """The spec pytree with the same structure as the params."""
  c = config
  L, D, H, K, E, F, V = (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                         c.intermediate_size, c.vocab_size)
  layers = {
      "attn_norm": ParamSpec((L, D), ("layers", "embed"), "ones"),
      "q": ParamSpec((L, D, H, E), ("layers", "embed", "q_heads", "head_dim"), "normal"),
      "k": ParamSpec((L, D, K, E), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
      "v": ParamSpec((L, D, K, E), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
      "o": ParamSpec((L, H, E, D), ("layers", "q_heads", "head_dim", "embed"), "normal"),
      "mlp_norm": ParamSpec((L, D), ("layers", "embed"), "ones"),
      "gate": ParamSpec((L, D, F), ("layers", "embed", "mlp"), "normal"),
      "up": ParamSpec((L, D, F), ("layers", "embed", "mlp"), "normal"),
      "down": ParamSpec((L, F, D), ("layers", "mlp", "embed"), "normal"),
  }
  if c.qkv_bias:
    layers["q_bias"] = ParamSpec((L, H, E), ("layers", "q_heads", "head_dim"), "zeros")
    layers["k_bias"] = ParamSpec((L, K, E), ("layers", "kv_heads", "head_dim"), "zeros")
    layers["v_bias"] = ParamSpec((L, K, E), ("layers", "kv_heads", "head_dim"), "zeros")
  if c.o_bias:
    layers["o_bias"] = ParamSpec((L, D), ("layers", "embed"), "zeros")
  if c.qk_norm:
    layers["q_norm"] = ParamSpec((L, E), ("layers", "head_dim"), "ones")
    layers["k_norm"] = ParamSpec((L, E), ("layers", "head_dim"), "ones")
  specs: Params = {
      "embed": {"embedding": ParamSpec((V, D), ("vocab", "embed"), "normal")},
      "layers": layers,
      "final_norm": {"scale": ParamSpec((D,), ("embed",), "ones")},
  }
  if not c.tie_word_embeddings:
    specs["lm_head"] = {"kernel": ParamSpec((D, V), ("embed", "vocab"), "normal")}
  return specs


def is_spec(x: Any) -> bool:
  return isinstance(x, ParamSpec)


def init_params(config: ModelConfig, key: jax.Array, dtype=jnp.float32) -> Params:
  """Random params (normal std 0.02, norms 1, biases 0) for tests and demos."""
  specs = param_specs(config)
  leaves, treedef = jax.tree.flatten(specs, is_leaf=is_spec)
  keys = jax.random.split(key, len(leaves))
  inits: dict[str, Callable[[jax.Array, ParamSpec], jax.Array]] = {
      "normal": lambda k, s: 0.02 * jax.random.normal(k, s.shape, jnp.float32),
      "ones": lambda k, s: jnp.ones(s.shape, jnp.float32),
      "zeros": lambda k, s: jnp.zeros(s.shape, jnp.float32),
  }
  out = [inits[s.init](k, s).astype(dtype) for k, s in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, out)


# --- Hugging Face tensor names -------------------------------------------------------------
#
# Each of our stacked params is assembled from one HF tensor per layer. `to_ours` maps an HF
# tensor (numpy, HF layout) to our per-layer layout; `to_hf` is its inverse.


@dataclasses.dataclass(frozen=True)
class HFTensor:
  """How one of our params relates to HF tensors."""
  name: str                                     # HF name; "{i}" is the layer index if stacked
  stacked: bool
  hf_shape: tuple[int, ...]                     # shape of the (per-layer) HF tensor
  to_ours: Callable[[np.ndarray], np.ndarray]   # HF layout -> our per-layer layout
  to_hf: Callable[[np.ndarray], np.ndarray]     # inverse


def _same(x: np.ndarray) -> np.ndarray:
  return x


def _linear_in(heads: int, head_dim: int):
  """HF [H*E, D] (out, in) <-> ours [D, H, E]."""
  return (lambda w: w.T.reshape(w.shape[1], heads, head_dim),
          lambda w: w.reshape(w.shape[0], heads * head_dim).T)


def _linear_out(heads: int, head_dim: int):
  """HF [D, H*E] (out, in) <-> ours [H, E, D]."""
  return (lambda w: w.T.reshape(heads, head_dim, w.shape[0]),
          lambda w: w.reshape(heads * head_dim, w.shape[2]).T)


def _bias(heads: int, head_dim: int):
  """HF [H*E] <-> ours [H, E]."""
  return (lambda b: b.reshape(heads, head_dim), lambda b: b.reshape(heads * head_dim))


def _transpose():
  return (lambda w: w.T, lambda w: w.T)


def hf_tensors(config: ModelConfig) -> dict[str, HFTensor]:
  """Our param path ("layers/q") -> its HF tensor naming and layout conversion."""
  c = config
  H, K, E, D, F, V = (c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_size,
                      c.intermediate_size, c.vocab_size)
  p = "model.layers.{i}."
  t = {
      "embed/embedding": HFTensor("model.embed_tokens.weight", False, (V, D), _same, _same),
      "final_norm/scale": HFTensor("model.norm.weight", False, (D,), _same, _same),
      "layers/attn_norm": HFTensor(p + "input_layernorm.weight", True, (D,), _same, _same),
      "layers/mlp_norm": HFTensor(p + "post_attention_layernorm.weight", True, (D,), _same,
                                  _same),
      "layers/q": HFTensor(p + "self_attn.q_proj.weight", True, (H * E, D), *_linear_in(H, E)),
      "layers/k": HFTensor(p + "self_attn.k_proj.weight", True, (K * E, D), *_linear_in(K, E)),
      "layers/v": HFTensor(p + "self_attn.v_proj.weight", True, (K * E, D), *_linear_in(K, E)),
      "layers/o": HFTensor(p + "self_attn.o_proj.weight", True, (D, H * E), *_linear_out(H, E)),
      "layers/gate": HFTensor(p + "mlp.gate_proj.weight", True, (F, D), *_transpose()),
      "layers/up": HFTensor(p + "mlp.up_proj.weight", True, (F, D), *_transpose()),
      "layers/down": HFTensor(p + "mlp.down_proj.weight", True, (D, F), *_transpose()),
  }
  if c.qkv_bias:
    t["layers/q_bias"] = HFTensor(p + "self_attn.q_proj.bias", True, (H * E,), *_bias(H, E))
    t["layers/k_bias"] = HFTensor(p + "self_attn.k_proj.bias", True, (K * E,), *_bias(K, E))
    t["layers/v_bias"] = HFTensor(p + "self_attn.v_proj.bias", True, (K * E,), *_bias(K, E))
  if c.o_bias:
    t["layers/o_bias"] = HFTensor(p + "self_attn.o_proj.bias", True, (D,), _same, _same)
  if c.qk_norm:
    t["layers/q_norm"] = HFTensor(p + "self_attn.q_norm.weight", True, (E,), _same, _same)
    t["layers/k_norm"] = HFTensor(p + "self_attn.k_norm.weight", True, (E,), _same, _same)
  if not c.tie_word_embeddings:
    t["lm_head/kernel"] = HFTensor("lm_head.weight", False, (V, D), *_transpose())
  return t


def flat_specs(config: ModelConfig) -> dict[str, ParamSpec]:
  """`param_specs` flattened to "a/b" paths."""
  return {f"{group}/{name}": spec
          for group, sub in param_specs(config).items() for name, spec in sub.items()}


def unflatten(flat: dict[str, Any]) -> Params:
  """"a/b" paths -> nested dict."""
  out: Params = {}
  for path, value in flat.items():
    group, name = path.split("/")
    out.setdefault(group, {})[name] = value
  return out
