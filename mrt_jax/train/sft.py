"""Supervised fine-tuning on token sequences with a loss mask: the CPU demo's warm start.

An example is a token sequence built from segments, each trained on or context only
(`example`): a (prompt, completion) pair is two segments, a meta-prover example (prompt, trace
prefix, termination suffix, answer) four, with the prompt and the suffix as context.
Uses the learner's train step with the `sft` objective (masked next-token cross-entropy, token
mean over the batch, micro-batch invariant like the RL losses).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import create_state
from mrt_jax.learner.step import StepConfig, make_train_step
from mrt_jax.models import ModelConfig

# Token ids and a loss mask of the same length: 0 for context, else the target's loss weight
# (1: plain cross-entropy; the `sft` objective's mean counts trained tokens, not weights).
Example = tuple[list[int], list[float]]


def example(*segments: tuple[Sequence[int], bool | float | Sequence[float]]) -> Example:
  """Concatenates (token ids, weight) segments into one example.

  A segment's weight is False (context), True (trained), a float loss weight for all its
  tokens, or one weight per token.
  """
  tokens, mask = [], []
  for i, (ids, weight) in enumerate(segments):
    tokens += [int(t) for t in ids]
    if isinstance(weight, (bool, int, float)):
      mask += [float(weight)] * len(ids)
    elif len(weight) != len(ids):
      raise ValueError(f"example: segment {i} has {len(ids)} tokens but {len(weight)} weights")
    else:
      mask += [float(w) for w in weight]
  return tokens, mask


def sft_batch(examples: Sequence[Example], length: int) -> dict[str, np.ndarray]:
  """Right-padded tokens [B, length] and their loss mask (weights; 0 on padding)."""
  tokens = np.zeros((len(examples), length), np.int32)
  mask = np.zeros((len(examples), length), np.float32)
  for i, (ids, trained) in enumerate(examples):
    if len(ids) != len(trained):
      raise ValueError(f"example {i} has {len(ids)} tokens but a mask of {len(trained)}")
    if len(ids) > length:
      raise ValueError(f"example {i} has {len(ids)} tokens, more than the SFT length {length}")
    tokens[i, :len(ids)] = ids
    mask[i, :len(ids)] = trained
  return {"tokens": tokens, "mask": mask}


def train_sft(model_config: ModelConfig, params, pools: Sequence[Sequence[Example]],
              plan: Sequence[int], *, batch_size: int, learning_rate: float,
              seed: int | Sequence[int], weight_decay: float = 0.0, progress: bool = False,
              desc: str = "sft"
              ) -> tuple[object, list[float]]:
  """Trains one step per entry of `plan`, step i on a random batch of pools[plan[i]].

  Every batch is a token mean over its own target tokens, so a pool of examples with few
  targets (e.g. one answer after a long context) gets whole steps of its own instead of a
  sliver of every step. One AdamW optimizer (decoupled `weight_decay`) with a cosine schedule
  spans the whole plan. With `progress`, a tqdm bar named `desc` shows the steps and the mean
  loss of the last 10. `seed` seeds the batches (anything `np.random.default_rng` takes).

  Returns:
    (params, per-step losses).
  """
  if not pools or not all(pools) or not plan or not all(0 <= k < len(pools) for k in plan):
    raise ValueError(f"train_sft: pools of sizes {[len(p) for p in pools]} and a plan of "
                     f"{len(plan)} steps over pools {sorted(set(plan))}; expected non-empty "
                     "pools and a non-empty plan indexing them")
  # One length for the whole run (one compile): the longest example rounded up to 16 tokens.
  length = -(-max(len(ids) for pool in pools for ids, _ in pool) // 16) * 16
  optimizer = make_optimizer(OptimizerConfig(learning_rate=learning_rate, total_steps=len(plan),
                                             warmup_ratio=0.05, weight_decay=weight_decay))
  step = make_train_step(model_config, StepConfig(objective="sft"), optimizer)
  state = create_state(params, optimizer)
  rng = np.random.default_rng(seed)
  losses = []
  bar = tqdm(total=len(plan), desc=desc, unit="step", dynamic_ncols=True, disable=not progress)
  for k in plan:
    chosen = rng.choice(len(pools[k]), size=batch_size, replace=len(pools[k]) < batch_size)
    state, metrics = step(state, sft_batch([pools[k][i] for i in chosen], length))
    losses.append(float(metrics["loss"]))
    bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    bar.update(1)
  bar.close()
  return jax.device_get(state.params), losses
