"""Supervised fine-tuning on (prompt, completion) token pairs: warm starts and MRT-STaR.

Uses the learner's train step with the `sft` objective (masked next-token cross-entropy over
completion tokens, micro-batch invariant like the RL losses).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import create_state
from mrt_jax.learner.step import StepConfig, make_train_step
from mrt_jax.models import ModelConfig
from mrt_jax.sampling.buckets import pow2_at_least


def sft_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], length: int
              ) -> dict[str, np.ndarray]:
  """Right-padded tokens [B, length] and a mask on the completion tokens."""
  tokens = np.zeros((len(pairs), length), np.int32)
  mask = np.zeros((len(pairs), length), np.float32)
  for i, (prompt, completion) in enumerate(pairs):
    n = len(prompt) + len(completion)
    if n > length:
      raise ValueError(f"example {i} has {n} tokens, more than the SFT length {length}")
    tokens[i, :n] = list(prompt) + list(completion)
    mask[i, len(prompt):n] = 1.0
  return {"tokens": tokens, "mask": mask}


def train_sft(model_config: ModelConfig, params, pairs: Sequence[tuple[Sequence[int],
                                                                       Sequence[int]]], *,
              steps: int, batch_size: int, learning_rate: float, seed: int,
              log_every: int = 0) -> tuple[object, list[float]]:
  """Trains on random batches of `pairs`; returns (params, per-step losses)."""
  if not pairs:
    raise ValueError("train_sft: no (prompt, completion) pairs to train on")
  length = pow2_at_least(max(len(p) + len(c) for p, c in pairs), minimum=16)
  optimizer = make_optimizer(OptimizerConfig(learning_rate=learning_rate, total_steps=steps,
                                             warmup_ratio=0.05, weight_decay=0.0))
  step = make_train_step(model_config, StepConfig(objective="sft"), optimizer)
  state = create_state(params, optimizer)
  rng = np.random.default_rng(seed)
  losses = []
  for i in range(steps):
    chosen = rng.choice(len(pairs), size=batch_size, replace=len(pairs) < batch_size)
    state, metrics = step(state, sft_batch([pairs[k] for k in chosen], length))
    losses.append(float(metrics["loss"]))
    if log_every and (i + 1) % log_every == 0:
      print(f"sft step {i + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
  return jax.device_get(state.params), losses
