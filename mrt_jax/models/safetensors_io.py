"""Minimal safetensors reader/writer over `np.memmap` (bf16 via ml_dtypes).

Reading memory-maps each file and returns zero-copy views, so slicing a tensor reads only the
bytes of that slice; this is what lets `load_hf` place each device's shard without ever
materializing a whole tensor on the host. Format: 8-byte little-endian header size, a JSON
header {name: {dtype, shape, data_offsets}}, then the raw little-endian data.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Mapping

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
  """A checkpoint file is missing, unreadable, or lacks / mis-shapes a tensor."""


class SafetensorsFile:
  """Lazy, memory-mapped view of one `.safetensors` file."""

  def __init__(self, path: str):
    self.path = path
    try:
      size = os.path.getsize(path)
      with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
          raise CheckpointError(f"{path}: not a safetensors file (header length {header_len} "
                                f"exceeds the file size {size})")
        header = json.loads(f.read(header_len))
      if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from e
    header.pop("__metadata__", None)
    self._header = header
    self._offset = 8 + header_len
    self._mmap: np.memmap | None = None

  def keys(self) -> list[str]:
    return list(self._header)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._header[name]["shape"])

  def get(self, name: str) -> np.ndarray:
    """A read-only, zero-copy view of tensor `name`."""
    info = self._header[name]
    if info["dtype"] not in _DTYPES:
      raise CheckpointError(f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    if self._mmap is None:
      self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
    start, end = info["data_offsets"]
    raw = self._mmap[self._offset + start:self._offset + end]
    return raw.view(_DTYPES[info["dtype"]]).reshape(info["shape"])


def save_file(tensors: Mapping[str, np.ndarray], path: str,
              metadata: Mapping[str, str] | None = None) -> None:
  """Writes numpy arrays as one safetensors file (streamed, one tensor at a time)."""
  header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
  offset = 0
  for name, array in tensors.items():
    dtype = np.dtype(array.dtype)
    if dtype not in _NAMES:
      raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    nbytes = int(np.prod(array.shape, dtype=np.int64)) * dtype.itemsize
    header[name] = {"dtype": _NAMES[dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # Align the data section to 8 bytes.
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for array in tensors.values():
      f.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
  os.replace(tmp, path)


class TensorIndex:
  """Tensor name -> the file holding it, over single or sharded (`*.index.json`) checkpoints."""

  def __init__(self, directory: str):
    self.directory = directory
    index_file = os.path.join(directory, "model.safetensors.index.json")
    files: Iterable[str]
    if os.path.isfile(index_file):
      try:
        with open(index_file) as f:
          weight_map = json.load(f)["weight_map"]
      except (OSError, json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{index_file}: unreadable index ({e})") from e
      files = sorted(set(weight_map.values()))
    else:
      files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    if not files:
      raise CheckpointError(f"{directory}: no *.safetensors files found")
    self._files: dict[str, SafetensorsFile] = {}
    self._where: dict[str, SafetensorsFile] = {}
    for name in files:
      path = os.path.join(directory, name)
      if not os.path.isfile(path):
        raise CheckpointError(f"{path}: listed in the index but missing")
      sf = SafetensorsFile(path)
      self._files[name] = sf
      for key in sf.keys():
        self._where[key] = sf

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def get(self, name: str, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The tensor `name` (zero-copy), checked against `expected_shape` if given."""
    if name not in self._where:
      raise CheckpointError(f"{self.directory}: tensor {name!r} is missing from the checkpoint")
    sf = self._where[name]
    if expected_shape is not None and sf.shape(name) != tuple(expected_shape):
      raise CheckpointError(f"{sf.path}: tensor {name!r} has shape {sf.shape(name)}, expected "
                            f"{tuple(expected_shape)} from config.json")
    return sf.get(name)

  def shape(self, name: str) -> tuple[int, ...]:
    if name not in self._where:
      raise CheckpointError(f"{self.directory}: tensor {name!r} is missing from the checkpoint")
    return self._where[name].shape(name)
