"""Metrics sinks: one JSON object per step in `metrics.jsonl`, TensorBoard events, tqdm bar.

Only process 0 writes; on resume it first drops the lines past the restored step (another
process rewriting the file would cut it under process 0's open handle). Values are read from
device after the next step has been dispatched (the caller passes step n−1's metrics), so
logging never stalls the accelerator. The workdir may be a bucket URI (`mrt_jax.storage`):
TensorBoard event files then go through etils.epath as well (an object is visible once its
writer closes or has buffered a full upload block).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np
from etils import epath

from mrt_jax import storage


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


def _kept_lines(path: str, last_step: int) -> list[str]:
  """The lines up to `last_step` (later ones were written after the checkpoint a resumed run
  restarts from)."""
  if not storage.exists(path):
    return []
  with storage.open_file(path) as f:
    return [l for l in f if l.strip() and json.loads(l)["step"] <= last_step]


class _EpathEventFile:
  """tensorboardX's record-writer interface over an etils.epath file (bucket URIs)."""

  def __init__(self, path: str):
    self._file = epath.Path(path).open("wb")

  def write(self, data: bytes) -> None:
    self._file.write(data)

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class _EpathEventFiles:
  """A tensorboardX writer factory: event files of `scheme://` directories through epath."""

  def open(self, path: str) -> _EpathEventFile:
    return _EpathEventFile(path)

  def directory_check(self, path: str) -> None:
    storage.makedirs(path)


def _register_event_scheme(directory: str) -> None:
  """Routes tensorboardX's event files under `directory`'s URI scheme through epath."""
  if storage.is_remote(directory):
    from tensorboardX import record_writer  # pylint: disable=import-outside-toplevel
    record_writer.register_writer_factory(directory.split("://")[0], _EpathEventFiles())


class MetricsWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard; shows a tqdm progress bar."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0,
               bar_keys: tuple[str, ...] = ("loss", "reward_mean", "progress_mean")):
    self.enabled = jax.process_index() == 0
    self.bar_keys = bar_keys
    self._jsonl = self._tb = self._bar = None
    if not self.enabled:
      return
    storage.makedirs(workdir)
    path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = storage.LineFile(path, _kept_lines(path, initial_step))
    from tensorboardX import SummaryWriter  # Imported lazily: only process 0 writes events.
    _register_event_scheme(workdir)
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    from tqdm.auto import tqdm
    self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True, unit="step")

  def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
    values = to_python(metrics)
    if not self.enabled:
      return values
    self._jsonl.append(json.dumps({"step": step, **{k: _json_safe(v)
                                                    for k, v in values.items()}}) + "\n")
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
