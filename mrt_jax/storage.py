"""Workdir and output files on local disks or object storage (`gs://`, `s3://`, ...).

Every file a run writes outside Orbax (metrics.jsonl, TensorBoard events, evaluation outputs,
plots) goes through `etils.epath`, the path library Orbax itself uses, so `config.workdir` and
`--out` may be bucket URIs; checkpoints go through Orbax, which reads and writes `gs://`
directly. Object stores cannot append: files that grow (metrics.jsonl) are rewritten whole
there (`append_lines`), and appended to on local disks.
"""

from __future__ import annotations

import os
from typing import IO, Sequence

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is a URI (`scheme://...`) rather than a local path."""
  return "://" in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
  """A local path made absolute; a URI unchanged."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def makedirs(path: str | os.PathLike) -> None:
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def exists(path: str | os.PathLike) -> bool:
  return epath.Path(path).exists()


def isdir(path: str | os.PathLike) -> bool:
  return epath.Path(path).is_dir()


def listdir(path: str | os.PathLike) -> list[str]:
  """Names of the entries of directory `path`."""
  return sorted(p.name for p in epath.Path(path).iterdir())


def open_file(path: str | os.PathLike, mode: str = "r") -> IO:
  """`open` for local paths and URIs (text modes read and write UTF-8)."""
  return epath.Path(path).open(mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def remove(path: str | os.PathLike) -> None:
  epath.Path(path).unlink()


def check_writable(directory: str | os.PathLike, what: str) -> str:
  """Creates `directory` and writes, then deletes, a probe file in it; returns its absolute form.

  Raises:
    OSError: naming `what` (e.g. "config.workdir") and the directory.
  """
  directory = absolute(directory)
  import jax  # pylint: disable=import-outside-toplevel  # the process index names the probe
  try:
    makedirs(directory)
    probe = epath.Path(directory) / f".write_test.{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise OSError(f"{what}={directory!r} is not writable: {e}") from e
  return directory


class LineFile:
  """A text file that grows by lines, starting from `lines` (which replace what it held):
  appended to on local disks, rewritten whole at every line on object stores (they cannot
  append; metrics.jsonl stays small: a line per step)."""

  def __init__(self, path: str | os.PathLike, lines: Sequence[str] = ()):
    self.path = os.fspath(path)
    self._remote = is_remote(self.path)
    self._lines = list(lines)
    if self._remote:
      epath.Path(self.path).write_text("".join(self._lines))
      self._file = None
    else:
      tmp = self.path + ".tmp"
      with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(self._lines)
      os.replace(tmp, self.path)  # kill -9 mid-rewrite keeps the old file
      self._file = open(self.path, "a", encoding="utf-8")

  def append(self, line: str) -> None:
    if self._remote:
      self._lines.append(line)
      epath.Path(self.path).write_text("".join(self._lines))
    else:
      self._file.write(line)
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
