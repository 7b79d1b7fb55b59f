"""User code named by a config: `config.plugins`, modules imported before a run or evaluation.

A plugin is where a task registers its verifier (`mrt_jax.rewards.register_verifier`). Each entry
of `config.plugins` is a module name ("my_task", "my_pkg.verifiers") or a path to a .py file
("tasks/my_task.py"). Both resolve against the config file's folder first, then the working
directory, then `sys.path`; the folder a plugin is found in is added to `sys.path`, so the module
is importable by name everywhere, including the worker processes of isolated verifiers (which
unpickle a verifier by its module and name, and preload every plugin imported so far).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

_IMPORTED: list[str] = []  # module names of the plugins imported in this process, in order
_FOLDERS: list[str] = []  # folders this module put on sys.path for them


def imported() -> tuple[str, ...]:
  """Module names of the plugins this process has imported (verifier workers preload them)."""
  return tuple(_IMPORTED)


def folders() -> tuple[str, ...]:
  """Folders the imported plugins were found in (added to `sys.path`)."""
  return tuple(_FOLDERS)


def _resolve(entry: str, folders: Sequence[str]) -> tuple[str | None, str]:
  """(folder to put on sys.path or None, module name) of one `config.plugins` entry."""
  if entry.endswith(".py"):
    for folder in folders:
      path = os.path.abspath(os.path.join(folder, entry))
      if os.path.isfile(path):
        return os.path.dirname(path), os.path.basename(path)[:-3]
    raise ImportError(f"config.plugins: {entry!r} is not a file in {list(folders)}; expected a "
                      "path to a .py file relative to the config file's folder or the working "
                      "directory")
  relative = entry.replace(".", os.sep)
  for folder in folders:
    base = os.path.join(folder, relative)
    if os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py")):
      return os.path.abspath(folder), entry
  return None, entry


def import_plugins(entries: Sequence[str], config_dir: str | None = None) -> list[str]:
  """Imports every plugin (module docstring) once; returns their module names.

  Args:
    entries: `config.plugins`.
    config_dir: the folder of the config file, searched first; None for configs built in code.

  Raises:
    ImportError: a plugin cannot be found or fails to import; names the entry and the folders
      searched.
  """
  if isinstance(entries, str):
    raise TypeError(f"config.plugins={entries!r} is a string; expected a tuple of module names "
                    "or .py paths")
  folders = [d for d in (config_dir, os.getcwd()) if d]
  names = []
  for entry in entries:
    folder, name = _resolve(str(entry), folders)
    if folder is not None and folder not in sys.path:
      sys.path.insert(0, folder)
    if folder is not None and folder not in _FOLDERS:
      _FOLDERS.append(folder)
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name is None or not name.startswith(e.name):
        raise  # The plugin itself imports something missing: its own traceback says what.
      raise ImportError(f"config.plugins: cannot import {entry!r}: no module {e.name!r} in "
                        f"{folders} or on sys.path") from e
    if name not in _IMPORTED:
      _IMPORTED.append(name)
    names.append(name)
  return names
