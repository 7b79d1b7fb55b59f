"""Problem records from local files: JSON lines, parquet, or a `datasets` directory on disk.

Each record is a dict holding at least the problem and the answer under configurable field
names (`data.problem_field`, `data.answer_field`). Parquet needs `pyarrow` and `datasets`
directories need `datasets`; both are imported only when such a source is read.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

Record = dict[str, Any]

_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class DataError(ValueError):
  """A dataset is missing, empty, malformed, or lacks a configured field."""


def write_jsonl(path: str, records: Iterable[Record]) -> str:
  """Writes records as JSON lines (creating the parent directory); returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")
  return path


def _read_jsonl(path: str) -> list[Record]:
  records = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg}); expected one JSON object "
                        "per line") from e
      if not isinstance(record, dict):
        raise DataError(f"{path}:{line_no}: a JSON {type(record).__name__}; expected an object "
                        "with the problem and answer fields")
      records.append(record)
  return records


def _read_parquet(path: str) -> list[Record]:
  try:
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  # optional dependency
  except ImportError as e:
    raise DataError(f"reading {path} needs pyarrow: pip install pyarrow") from e
  return pq.read_table(path).to_pylist()


def _read_datasets_dir(path: str, split: str) -> list[Record]:
  try:
    import datasets  # pylint: disable=g-import-not-at-top  # optional dependency
  except ImportError as e:
    raise DataError(f"reading the `datasets` directory {path} needs datasets: "
                    "pip install datasets") from e
  loaded = datasets.load_from_disk(path)
  if isinstance(loaded, datasets.DatasetDict):
    if split not in loaded:
      raise DataError(f"{path} has splits {sorted(loaded)}; expected split {split!r} "
                      "(set data.split)")
    loaded = loaded[split]
  return loaded.to_list()


def _read(path: str, split: str) -> list[Record]:
  if os.path.isdir(path):
    if not any(os.path.exists(os.path.join(path, m)) for m in _DATASETS_MARKERS):
      raise DataError(f"{path} is a directory without {' or '.join(_DATASETS_MARKERS)}; "
                      "expected a `datasets` directory written by save_to_disk")
    return _read_datasets_dir(path, split)
  if path.endswith((".jsonl", ".json")):
    return _read_jsonl(path)
  if path.endswith(".parquet"):
    return _read_parquet(path)
  raise DataError(f"{path}: unknown dataset format; expected a .jsonl/.json (JSON lines) or "
                  ".parquet file, or a `datasets` directory written by save_to_disk")


def check_fields(records: Sequence[Record], fields: Sequence[str], source: str) -> None:
  """Raises `DataError` naming the source, record and field if a record lacks a field.

  A field whose value is None counts as missing.
  """
  for i, record in enumerate(records):
    for field in fields:
      if record.get(field) is None:
        raise DataError(f"{source}: record {i} has no field {field!r} (configured as the "
                        f"problem or answer field); available fields: {sorted(record)}")


def load_records(path: str, *, problem_field: str = "problem", answer_field: str = "answer",
                 split: str = "train") -> list[Record]:
  """Reads all problem records of a local dataset and checks the configured fields.

  Args:
    path: a .jsonl/.json file (JSON lines), a .parquet file, or a directory written by
      `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
    problem_field: field holding the problem text.
    answer_field: field holding the reference answer.
    split: the split to read from a saved `DatasetDict`.

  Returns:
    The records, in file order.

  Raises:
    FileNotFoundError: `path` does not exist.
    DataError: unknown format, unreadable content, no records, or a record without one of the
      two fields (the message names the file, the field and the available fields).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"dataset {path!r} does not exist; expected a .jsonl or .parquet "
                            "file or a `datasets` directory written by save_to_disk")
  records = _read(path, split)
  if not records:
    raise DataError(f"dataset {path} has no records; expected at least one")
  check_fields(records, (problem_field, answer_field), path)
  return records
