"""`config.plugins`: user modules imported by config, found next to the config file, preloaded by
isolated verifier workers; a missing one is an error naming it."""

import os

import pytest

from mrt_jax import config_cli, plugins
from mrt_jax.rewards import VerifierPool, verify_batch

PLUGIN = '''
import os
from mrt_jax.rewards import register_verifier

def verify(record, text, token_ids):
  # Runs in a verifier worker: a process of its own, which found this module by name.
  return float(text == record["answer"] and os.getpid() != record["parent"])

register_verifier("{name}", verify, isolated=True)
'''

CONFIG = '''
from mrt_jax import config_defaults as defaults

def get_config(arg=None):
  c = defaults.base("plugin_test", model_path="unused")
  c.plugins = {plugins!r}  # the verifier's module
  c.reward.verifier = "{name}"  # registered by the plugin
  return c
'''


def _write(folder, plugins, name):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.py").write_text(CONFIG.format(plugins=plugins, name=name))


def test_plugins_resolve_against_the_config_folder_and_reach_isolated_workers(tmp_path,
                                                                             monkeypatch):
  (tmp_path / "cfg" / "tasks").mkdir(parents=True)
  (tmp_path / "cfg" / "my_plugin_task.py").write_text(PLUGIN.format(name="by_name"))
  (tmp_path / "cfg" / "tasks" / "path_plugin_task.py").write_text(PLUGIN.format(name="by_path"))
  _write(tmp_path / "cfg", ("my_plugin_task", "tasks/path_plugin_task.py"), "by_name")
  # Another working directory: the plugins are found next to the config file, not on the path.
  monkeypatch.chdir(tmp_path)
  config_cli.load_config("cfg/config.py")
  assert plugins.imported()[-2:] == ("my_plugin_task", "path_plugin_task")
  assert {str(tmp_path / "cfg"), str(tmp_path / "cfg" / "tasks")} <= set(plugins.folders())
  # Workers started now find both modules (whether or not the forkserver preloaded them).
  with VerifierPool(num_workers=1, timeout_s=60.0) as pool:
    for name in ("by_name", "by_path"):
      rewards, stats = verify_batch(name, [{"answer": "yes", "parent": os.getpid()}] * 2,
                                    ["yes", "no"], [[1], [2]], pool=pool)
      assert rewards.tolist() == [1.0, 0.0] and stats["errors"] == 0, stats


def test_missing_plugin_is_named(tmp_path):
  _write(tmp_path, ("no_such_task_module",), "nope")
  with pytest.raises(ImportError, match=r"config.plugins: cannot import 'no_such_task_module'"):
    config_cli.load_config(str(tmp_path / "config.py"))
  _write(tmp_path, ("gone.py",), "nope")
  with pytest.raises(ImportError, match=r"config.plugins: 'gone.py' is not a file"):
    config_cli.load_config(str(tmp_path / "config.py"))
