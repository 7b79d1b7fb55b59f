"""Metrics sinks: one JSON object per step in `metrics.jsonl`, TensorBoard events, tqdm bar.

Only process 0 writes; on resume it first drops the lines past the restored step (another
process rewriting the file would cut it under process 0's open handle). Values are read from
device after the next step has been dispatched (the caller passes step n−1's metrics), so
logging never stalls the accelerator.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np


def to_python(metrics: Mapping[str, Any]) -> dict[str, float | int]:
  """Device scalars -> Python numbers (NaN/inf kept as floats; JSON writes them as strings)."""
  out = {}
  for k, v in metrics.items():
    a = np.asarray(jax.device_get(v))
    if a.size != 1:
      continue
    out[k] = a.item()
  return out


def _json_safe(v):
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


def _truncate(path: str, last_step: int) -> None:
  """Drops lines after `last_step` (written after the checkpoint a resumed run restarts from)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip() and json.loads(l)["step"] <= last_step]
  with open(path + ".tmp", "w") as f:
    f.writelines(lines)
  os.replace(path + ".tmp", path)


class MetricsWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard; shows a tqdm progress bar."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0,
               bar_keys: tuple[str, ...] = ("loss", "reward_mean", "progress_mean")):
    self.enabled = jax.process_index() == 0
    self.bar_keys = bar_keys
    self._jsonl = self._tb = self._bar = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    _truncate(path, initial_step)
    self._jsonl = open(path, "a")
    from tensorboardX import SummaryWriter  # Imported lazily: only process 0 writes events.
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    from tqdm.auto import tqdm
    self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True, unit="step")

  def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
    values = to_python(metrics)
    if not self.enabled:
      return values
    self._jsonl.write(json.dumps({"step": step, **{k: _json_safe(v)
                                                   for k, v in values.items()}}) + "\n")
    self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(k, v, step)
    self._bar.set_postfix({k: f"{values[k]:.4g}" for k in self.bar_keys if k in values})
    self._bar.update(1)
    return values

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """TensorBoard-only scalars (e.g. evaluation figures, which have their own eval.json)."""
    if self.enabled:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)

  def write_text(self, step: int, tag: str, text: str) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
      self._bar.close()
