"""AdamW with warmup + decay schedules and global-norm clipping (optax).

Schedules are registered by name. The MRT paper's settings (Qu et al. 2025): lr 1e-6, cosine decay,
warmup ratio 0.1, weight decay 0.01.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Optimizer settings."""
  learning_rate: float = 1e-6   # peak learning rate
  schedule: str = "cosine"      # key of SCHEDULES
  warmup_ratio: float = 0.1     # fraction of total steps spent warming up linearly from 0
  total_steps: int = 1000       # optimizer steps the schedule spans
  weight_decay: float = 0.01    # decoupled (AdamW) weight decay
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  grad_clip: float = 1.0        # max global gradient norm; 0 disables clipping


def _cosine(peak: float, warmup: int, total: int) -> optax.Schedule:
  warmup = max(warmup, 1)  # A one-step run still has a decay of one step after it.
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1),
                                            end_value=0.0)


def _linear(peak: float, warmup: int, total: int) -> optax.Schedule:
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, max(warmup, 1)),
       optax.linear_schedule(peak, 0.0, max(total - warmup, 1))], [max(warmup, 1)])


def _constant(peak: float, warmup: int, total: int) -> optax.Schedule:
  del total
  return optax.join_schedules([optax.linear_schedule(0.0, peak, max(warmup, 1)),
                               optax.constant_schedule(peak)], [max(warmup, 1)])


SCHEDULES: dict[str, Callable[[float, int, int], optax.Schedule]] = {
    "cosine": _cosine, "linear": _linear, "constant": _constant,
}


def make_schedule(cfg: OptimizerConfig) -> optax.Schedule:
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f"optimizer.schedule={cfg.schedule!r} is unknown; expected one of "
                     f"{sorted(SCHEDULES)}")
  warmup = int(round(cfg.warmup_ratio * cfg.total_steps))
  return SCHEDULES[cfg.schedule](cfg.learning_rate, warmup, cfg.total_steps)


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
  """Clip by global norm, then AdamW with the configured schedule."""
  adamw = optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay)
  if cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
  return adamw
