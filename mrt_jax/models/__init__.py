"""Model ports (Llama 3.x, Qwen2, Qwen3) as pure functions over a param pytree.

Public API:
  config, params = load_hf(path, dtype=jnp.float32, mesh=None)
  logits, cache = forward(config, params, tokens, positions=None, cache=None)
  save_hf(config, params, out_dir)
"""

from mrt_jax.models.config import (ARCHITECTURES, ConfigError, ModelConfig, RopeScaling,
                                   config_from_hf_dict, load_config)
from mrt_jax.models.hf import load_hf, save_hf
from mrt_jax.models.safetensors_io import CheckpointError
from mrt_jax.models.sharding import (SAMPLE_RULES, TRAIN_RULES, Rules, constrain,
                                     logical_to_spec, make_mesh, named_sharding)
from mrt_jax.models.transformer import CACHE_AXES, KVCache, forward, init_cache
from mrt_jax.models.weights import ParamSpec, init_params, param_specs

_TOKENIZER_NAMES = ("TokenizerError", "build_tiny_tokenizer", "check_vocab", "load_tokenizer",
                    "render_continuation", "render_prompt")

__all__ = [
    "ARCHITECTURES", "CACHE_AXES", "CheckpointError", "ConfigError", "KVCache", "ModelConfig",
    "ParamSpec", "RopeScaling", "Rules", "SAMPLE_RULES", "TRAIN_RULES", "config_from_hf_dict",
    "constrain", "forward", "init_cache", "init_params", "load_config", "load_hf",
    "logical_to_spec", "make_mesh", "named_sharding", "param_specs", "save_hf",
    *_TOKENIZER_NAMES,
]


def __getattr__(name):
  # The tokenizer helpers import transformers (~1 s); load them on first use so that
  # `from mrt_jax import progress_reward` stays light.
  if name in _TOKENIZER_NAMES:
    from mrt_jax.models import tokenizer
    return getattr(tokenizer, name)
  raise AttributeError(f"module 'mrt_jax.models' has no attribute {name!r}")
