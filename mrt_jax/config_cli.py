"""Experiment configs from the command line: `--config=configs/x.py[:variant]` plus overrides.

Entry points call `run(main)`; `main(config)` gets the locked `ml_collections.ConfigDict`.
Overrides are `--config.a.b=value`, parsed to the field's type by `ml_collections.config_flags`.
A field the config does not have is an error naming it (ml_collections locks the config; this
module turns its KeyError/AttributeError into one clear line). `load_config` gives the same
semantics without a command line, for tests and notebooks. Both import the config's
`plugins` (user modules that register verifiers; `mrt_jax.plugins`), resolved against the
config file's folder first.

Print a resolved config:
  python -m mrt_jax.config_cli --config=configs/mrt_rl_7b.py:cpu --config.train.total_steps=3
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, Sequence

from absl import app, flags
from ml_collections import ConfigDict, config_flags

from mrt_jax import plugins

_FLAG = "config"
_OVERRIDE = re.compile(rf"^--?(?:no)?{_FLAG}\.([^=]+)")


class ConfigOverrideError(ValueError):
  """A config file cannot be loaded, or an override names a missing field or a bad value."""


def _define(flag_values: flags.FlagValues, argv: Sequence[str] | None) -> flags.FlagHolder:
  return config_flags.DEFINE_config_file(
      _FLAG, None, "experiment config: configs/x.py or configs/x.py:cpu; override fields with "
      f"--{_FLAG}.a.b=value", flag_values=flag_values, sys_argv=argv)


def _unknown_field(spec: str, argv: Sequence[str]) -> str:
  """Names the first override in `argv` whose field the config at `spec` does not have."""
  flag_values = flags.FlagValues()
  holder = _define(flag_values, [f"--{_FLAG}={spec}"])
  flag_values(["unknown_field", f"--{_FLAG}={spec}"])
  for arg in argv:
    match = _OVERRIDE.match(arg)
    if not match:
      continue
    node, path = holder.value, match.group(1).split(".")
    for depth, key in enumerate(path):
      parent = ".".join([_FLAG, *path[:depth]])
      if not isinstance(node, ConfigDict):
        return (f"{arg.split('=')[0]}: {parent} in {spec} is a {type(node).__name__}, "
                f"it has no field {key!r}")
      if key not in node:
        return (f"{arg.split('=')[0]}: {parent} has no field {key!r} in {spec} "
                f"(its fields: {', '.join(sorted(node.keys()))})")
      node = node[key]
  return f"an override in {list(argv)} names no field of {spec}"


def _spec(argv: Sequence[str]) -> str | None:
  for arg in argv:
    match = re.match(rf"^--?{_FLAG}=(.*)", arg)
    if match:
      return match.group(1)
  return None


def _parse(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses `argv`; a missing field or a bad value raises ConfigOverrideError."""
  try:
    return flag_values(list(argv))
  except (KeyError, AttributeError) as e:  # ml_collections: the locked config lacks a field.
    raise ConfigOverrideError(_unknown_field(_spec(argv), argv)) from e
  except flags.Error as e:
    raise ConfigOverrideError(str(e)) from e


def _check_file(spec: str | None) -> None:
  # ml_collections would defer a missing file to the config's first use; fail here instead.
  if spec is None:
    raise ConfigOverrideError(f"--{_FLAG}=configs/x.py[:variant] is required")
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise ConfigOverrideError(f"config file {path!r} (from --{_FLAG}={spec}) does not exist")


def _import_plugins(config: ConfigDict, spec: str) -> None:
  """Imports `config.plugins`, searching the config file's folder first."""
  plugins.import_plugins(config.get("plugins", ()),
                         os.path.dirname(os.path.abspath(spec.split(":", 1)[0])))


def load_config(spec: str, overrides: Sequence[str] = ()) -> ConfigDict:
  """Loads a config as `--config=spec` followed by `overrides` would on the command line.

  Args:
    spec: a config file path, optionally with a variant: "configs/mrt_rl_7b.py:cpu".
    overrides: "a.b=value" or "--config.a.b=value" strings, applied in order.

  Returns:
    The locked config.

  Raises:
    ConfigOverrideError: the file cannot be loaded, an override names a field the config does
      not have (the message names it), or a value does not parse as the field's type.
  """
  argv = [f"--{_FLAG}={spec}"] + [o if o.startswith("-") else f"--{_FLAG}.{o}" for o in overrides]
  _check_file(spec)
  flag_values = flags.FlagValues()
  holder = _define(flag_values, argv)
  _parse(flag_values, ["load_config", *argv])
  _import_plugins(holder.value, spec)
  return holder.value


def run(main: Callable[[ConfigDict], None]) -> None:
  """Runs `main(config)` as an absl app taking `--config=configs/x.py[:variant]` and overrides.

  Other absl flags the entry point defines parse as usual. A parse error prints one line
  naming the culprit and exits with status 1.

  Args:
    main: the entry point's body, called with the locked config.
  """
  holder = _define(flags.FLAGS, None)
  spec = []  # the --config value, for the plugins' folder

  def parse(argv: list[str]) -> list[str]:
    spec.append(_spec(argv))
    try:
      _check_file(spec[-1])
      return _parse(flags.FLAGS, argv)
    except ConfigOverrideError as e:
      sys.exit(f"FATAL config error: {e}")

  def body(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    _import_plugins(holder.value, spec[-1])
    main(holder.value)

  app.run(body, flags_parser=parse)


if __name__ == "__main__":
  run(print)
