"""A tiny random Qwen2 config for tests that need a model but no Hugging Face parity."""

from mrt_jax import models


def tiny_config(**overrides) -> models.ModelConfig:
  """Width 32, 2 layers, GQA 4/2, vocab 64; `overrides` replace Hugging Face config fields."""
  return models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
      "max_position_embeddings": 256, **overrides})
