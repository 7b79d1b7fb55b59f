"""Tiny random Hugging Face checkpoints (built with transformers, saved to a temp dir).

Every parameter is randomized, including norms (1 + noise) and biases (noise), so a mistake in
any of them changes the logits; initializer scales keep logits O(1) so a 1e-4 tolerance is tight.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers

# Odd sizes on purpose: hidden 96, 6 query / 2 kv heads, FFN 160, vocab 211 (prime), 3 layers.
BASE = dict(vocab_size=211, hidden_size=96, intermediate_size=160, num_hidden_layers=3,
            num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)

FAMILIES = {
    # Llama 3.1-style: llama3 rope scaling (with a short original context so it matters).
    "llama": lambda: transformers.LlamaConfig(
        **BASE, rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    # R1-Distill-Qwen: Qwen2 with q/k/v bias, untied head.
    "qwen2": lambda: transformers.Qwen2Config(**BASE, rope_theta=10000.0,
                                              tie_word_embeddings=False),
    # Qwen2 with a tied head (the small Qwen2.5 checkpoints).
    "qwen2_tied": lambda: transformers.Qwen2Config(**BASE, rope_theta=10000.0,
                                                   tie_word_embeddings=True),
    # Qwen3: q/k norm and an explicit head_dim (24) different from hidden / heads (16).
    "qwen3": lambda: transformers.Qwen3Config(**BASE, head_dim=24, rope_theta=1000000.0,
                                              tie_word_embeddings=True),
}


def hf_config(family: str):
  return FAMILIES[family]()


def randomize_(model: torch.nn.Module, seed: int) -> None:
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
      if "norm" in name:
        p.copy_(1.0 + 0.1 * noise)
      elif name.endswith("bias"):
        p.copy_(0.1 * noise)
      else:
        p.copy_(noise / np.sqrt(p.shape[-1]) * 0.8)


def make_checkpoint(family: str, out_dir: str, seed: int = 0, dtype=torch.float32):
  """Builds, randomizes and saves a tiny model; returns the torch model (eval mode)."""
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(hf_config(family), dtype=dtype)
  randomize_(model, seed)
  model.eval()
  model.save_pretrained(out_dir)
  return model


def torch_logits(model, tokens: list[int]) -> np.ndarray:
  """HF logits [T, V] for one unpadded sequence."""
  with torch.no_grad():
    out = model(torch.tensor([tokens]))
  return out.logits[0].float().numpy()
