"""Evaluation outputs: `eval.json`, the per-sample JSONL and the final one-line JSON summary.

The builders are pure functions over already-computed results; the writers only serialize them.
All output is strict JSON: numpy arrays and scalars become lists and numbers, NamedTuples
(`metrics.Estimate`) and dataclasses become objects, ml-collections configs their `to_dict()`,
and non-finite floats (NaN, inf) become null, since JSON has no spelling for them.

`eval.json` layout:
  {"checkpoint": str, "config": {...}, "metrics": {"pass@1": float, "normalized_regret": float,
   "normalized_regret@<C0>": float, ..., any other figures}, plus any `extra` top-level fields}.
"normalized_regret" without a horizon is the regret at the LARGEST horizon (the whole budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np

from mrt_jax import storage

REQUIRED_METRICS = ("pass@1", "normalized_regret")


def to_jsonable(obj: Any) -> Any:
  """Converts results (numpy, NamedTuples, dataclasses, ConfigDicts) to strict-JSON values."""
  if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ml_collections.ConfigDict.
    return to_jsonable(obj.to_dict())
  if hasattr(obj, "_asdict"):  # NamedTuple, before the tuple case.
    return to_jsonable(obj._asdict())
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if isinstance(obj, np.generic):
    return to_jsonable(obj.item())
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if obj is None or isinstance(obj, (bool, int, str)):
    return obj
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"cannot write {type(obj).__name__} value {obj!r} as JSON; expected numbers, "
                  "strings, arrays, mappings, sequences, NamedTuples or dataclasses")


def regret_metrics(horizons_H, regret_H) -> dict[str, float]:
  """Names regret figures: `normalized_regret@<C0>` per horizon and `normalized_regret`.

  Args:
    horizons_H: [H] horizons C0 (tokens).
    regret_H: [H] regret averaged over problems and traces
      (`regret.mean_normalized_regret`).

  Returns:
    {"normalized_regret": regret at the largest horizon, "normalized_regret@<C0>": ...}.
  """
  horizons_H = np.asarray(horizons_H, np.float64)
  regret_H = np.asarray(regret_H, np.float64)
  if horizons_H.ndim != 1 or horizons_H.shape != regret_H.shape or horizons_H.size == 0:
    raise ValueError(f"horizons have shape {horizons_H.shape} and regret {regret_H.shape}; "
                     "expected the same non-empty shape [H]")
  out = {f"normalized_regret@{c0:g}": float(r) for c0, r in zip(horizons_H, regret_H)}
  out["normalized_regret"] = float(regret_H[np.argmax(horizons_H)])
  return out


def eval_record(*, config: Any, checkpoint: str | os.PathLike, metrics: Mapping[str, Any],
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Assembles the content of `eval.json`.

  Args:
    config: the evaluation config (ConfigDict, dataclass or mapping).
    checkpoint: the evaluated checkpoint directory.
    metrics: every figure; must hold numbers `pass@1` and `normalized_regret`.
    extra: other top-level fields (e.g. J(c) curves, plot paths, timings).

  Returns:
    A JSON-ready dict.
  """
  for name in REQUIRED_METRICS:
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
      raise ValueError(f"metrics[{name!r}] = {value!r}; expected a number (eval.json always holds "
                       f"{', '.join(REQUIRED_METRICS)})")
  record = {"checkpoint": os.fspath(checkpoint), "config": to_jsonable(config),
            "metrics": to_jsonable(metrics)}
  for name, value in (extra or {}).items():
    if name in record:
      raise ValueError(f"extra field {name!r} would overwrite the {name!r} of eval.json")
    record[name] = to_jsonable(value)
  return record


def write_eval_json(path: str | os.PathLike, record: Mapping[str, Any]) -> str:
  """Writes `record` (from `eval_record`) as indented strict JSON; returns the path."""
  path = os.fspath(path)
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  with storage.open_file(path, "w") as f:
    f.write(json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n")
  return path


def sample_record(*, problem_id: Any, sample_index: int, completion: str, boundaries,
                  j_values, verdict: Any, **fields: Any) -> dict[str, Any]:
  """One line of the per-sample JSONL.

  Args:
    problem_id: the problem's id in its dataset.
    sample_index: which of the problem's n samples.
    completion: the decoded completion.
    boundaries: [N+1] block boundaries b_0..b_N (token offsets).
    j_values: [N+1] meta-prover success J at each boundary.
    verdict: the verifier's verdict on the final answer (bool or reward).
    **fields: anything else worth keeping (answer, token counts, budget, ...).

  Returns:
    A JSON-ready dict.
  """
  boundaries_N1 = np.asarray(boundaries)
  j_N1 = np.asarray(j_values)
  if boundaries_N1.ndim != 1 or boundaries_N1.shape != j_N1.shape:
    raise ValueError(f"sample {problem_id!r}/{sample_index}: boundaries have shape "
                     f"{boundaries_N1.shape} and j_values {j_N1.shape}; expected the same [N+1]")
  record = {"problem_id": problem_id, "sample_index": sample_index, "completion": completion,
            "blocks": boundaries_N1, "j_values": j_N1, "verdict": verdict}
  clash = set(fields) & set(record)
  if clash:
    raise ValueError(f"fields {sorted(clash)} repeat named arguments of sample_record")
  record.update(fields)
  return to_jsonable(record)


def write_samples_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> str:
  """Writes one strict-JSON object per line; returns the path."""
  path = os.fspath(path)
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  with storage.open_file(path, "w") as f:
    for record in records:
      f.write(json.dumps(to_jsonable(record), allow_nan=False) + "\n")
  return path


def summary_line(record: Mapping[str, Any]) -> str:
  """The last line an evaluation prints: one JSON object of the scalar metrics.

  Holds `checkpoint` and every number (or null) at the top level of `record["metrics"]`, which
  includes `pass@1` and `normalized_regret`.

  Args:
    record: the dict from `eval_record`.

  Returns:
    One line of JSON, no newline.
  """
  metrics = record.get("metrics", {})
  missing = [name for name in REQUIRED_METRICS if name not in metrics]
  if missing:
    raise ValueError(f"record metrics lack {missing}; expected {list(REQUIRED_METRICS)} "
                     "(build the record with eval_record)")
  summary = {"checkpoint": record.get("checkpoint")}
  summary.update({name: value for name, value in to_jsonable(metrics).items()
                  if value is None or isinstance(value, (int, float))})
  return json.dumps(summary, allow_nan=False)


def _label(record: Mapping[str, Any], first: bool) -> str:
  step = record.get("step")
  if step is None:
    return str(record.get("name", "?"))
  return f"warm start (step {step})" if first and step == 0 else f"trained (step {step})"


def _interval(metrics: Mapping[str, Any], name: str) -> str:
  low, high = metrics.get(f"{name}_ci") or (None, None)
  value = metrics.get(name)
  if value is None:
    return "n/a"
  return f"{value:.3f}" if low is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def before_after_table(before: Mapping[str, Any], after: Mapping[str, Any], *, run_dir: str,
                       plots_dir: str) -> str:
  """The table a training run ends with: two evaluations (eval.json records) side by side.

  Args:
    before: the first evaluation (e.g. the warm start, step 0).
    after: the last one (the trained model).
    run_dir: the run's directory (metrics, checkpoints, evaluations).
    plots_dir: where the plots comparing the evaluations are.

  Returns:
    Lines of text: the dataset, pass@1 with its 95% interval, mean thinking tokens, normalized
    regret, then where the plots and the run are.
  """
  rows = [("", _label(before, True), _label(after, False))]
  for title, name, fmt in (("pass@1 [95% interval]", "pass@1", None),
                           ("mean thinking tokens", "mean_thinking_tokens", "{:.1f}"),
                           ("normalized regret", "normalized_regret", "{:.3f}")):
    cells = []
    for record in (before, after):
      m = record["metrics"]
      cells.append(_interval(m, name) if fmt is None else
                   "n/a" if m.get(name) is None else fmt.format(m[name]))
    rows.append((title, *cells))
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = [f"Evaluated on {after.get('dataset', '?')}: {after.get('num_problems', '?')} problems "
           f"x {after.get('num_samples', '?')} samples each"]
  lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
  lines.append(f"plots: {plots_dir} (each evaluation's own: {run_dir}/eval/step_*/)")
  lines.append(f"run:   {run_dir} (metrics.jsonl, TensorBoard events, checkpoints/)")
  return "\n".join(lines)
