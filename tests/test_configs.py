"""Experiment configs: every file and variant loads, overrides apply, typos fail, every field is
commented."""

import ast
import io
import os
import subprocess
import sys
import tokenize
from types import SimpleNamespace

import pytest
from ml_collections import ConfigDict

from mrt_jax import config_defaults
from mrt_jax.config_cli import ConfigOverrideError, load_config
from mrt_jax.train import setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f"configs/{f}" for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py"))
SPECS = [f"{path}{variant}" for path in CONFIGS for variant in ("", ":cpu")]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
  monkeypatch.chdir(ROOT)


def _leaves(config: ConfigDict, prefix=()):
  for key, value in config.items():
    if isinstance(value, ConfigDict):
      yield from _leaves(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def test_the_expected_configs_exist():
  assert {"configs/mrt_rl_7b.py", "configs/mrt_rl_1_5b.py", "configs/grpo_7b.py",
          "configs/mrt_star_7b.py", "configs/demo_cpu.py"} <= set(CONFIGS)


@pytest.mark.parametrize("spec", SPECS)
def test_config_loads(spec):
  config = load_config(spec)
  assert config.is_locked
  assert config.mesh.data * config.mesh.fsdp * config.mesh.tensor >= 1
  if spec.endswith(":cpu"):
    assert config.mesh.data * config.mesh.fsdp * config.mesh.tensor == 1
    assert config.model.path.startswith(config_defaults.DEMO_DIR)


def test_7b_paper_settings():
  c = load_config("configs/mrt_rl_7b.py")
  assert (c.optimizer.learning_rate, c.optimizer.schedule, c.optimizer.warmup_ratio,
          c.optimizer.weight_decay) == (1e-6, "cosine", 0.1, 0.01)
  assert (c.train.global_batch_prompts, c.rollout.num_generations, c.rollout.temperature) == (
      256, 4, 0.9)
  assert (c.model.dtype, c.data.max_prompt_len, c.rollout.max_completion_len) == (
      "bfloat16", 4096, 16384)
  assert (c.loss.kl_beta, c.loss.kl_estimator, c.loss.clip_eps, c.loss.aggregation) == (
      0.04, "k3", 0.2, "token_mean")
  assert (c.probe.temperature, c.probe.top_p, c.advantage.estimator) == (0.6, 0.95, "mrt")
  assert c.mesh.data * c.mesh.fsdp * c.mesh.tensor == 32  # v5p-64: 32 chips


def test_grpo_uses_the_outcome_reward_only():
  c = load_config("configs/grpo_7b.py")
  assert (c.advantage.estimator, c.advantage.alpha, c.probe.num_probes) == ("grpo", 0.0, 0)


def test_overrides_apply_in_both_spellings():
  c = load_config("configs/mrt_rl_7b.py:cpu",
                  ["train.total_steps=3", "--config.rollout.max_completion_len=24576",
                   "--config.eval.budgets=(8, 16)", "--config.advantage.outcome_norm=dr_grpo"])
  assert (c.train.total_steps, c.rollout.max_completion_len) == (3, 24576)
  assert c.eval.budgets == (8, 16) and c.advantage.outcome_norm == "dr_grpo"


@pytest.mark.parametrize("override,culprit", [
    ("train.totl_steps=3", "config.train has no field 'totl_steps'"),
    ("trian.total_steps=3", "config has no field 'trian'"),
    ("seed.value=3", "config.seed in configs/mrt_rl_7b.py is a int"),
])
def test_unknown_field_is_named(override, culprit):
  with pytest.raises(ConfigOverrideError, match=culprit):
    load_config("configs/mrt_rl_7b.py", [override])


def test_bad_value_missing_file_and_unknown_variant_are_named():
  with pytest.raises(ConfigOverrideError, match="config.train.total_steps=abc"):
    load_config("configs/mrt_rl_7b.py", ["train.total_steps=abc"])
  with pytest.raises(ConfigOverrideError, match="'configs/nope.py'.*does not exist"):
    load_config("configs/nope.py")
  with pytest.raises(ConfigOverrideError, match="unknown config variant 'gpu'.*'cpu'"):
    load_config("configs/mrt_rl_7b.py:gpu")


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "mrt_jax.config_cli", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)


def test_cli_override_and_typo():
  ok = _cli("--config=configs/grpo_7b.py:cpu", "--config.train.total_steps=3")
  assert ok.returncode == 0, ok.stderr
  assert "total_steps: 3" in ok.stdout
  typo = _cli("--config=configs/grpo_7b.py:cpu", "--config.train.totl_steps=3")
  assert typo.returncode != 0
  assert "--config.train.totl_steps: config.train has no field 'totl_steps'" in typo.stderr


def _commented_field_names(path):
  """Attribute names assigned in `path`; fails on an assignment without a comment on its lines."""
  source = open(os.path.join(ROOT, path), encoding="utf-8").read()
  commented = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
               if tok.type == tokenize.COMMENT}
  names = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
        "ConfigDict", "update"):
      assert not node.args and not node.keywords, (
          f"{path}:{node.lineno}: set fields one per line with a comment, not via arguments")
    targets = node.targets if isinstance(node, ast.Assign) else (
        [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
    for target in targets:
      if isinstance(target, (ast.Attribute, ast.Subscript)):
        lines = set(range(node.lineno, node.end_lineno + 1))
        assert lines & commented, f"{path}:{node.lineno}: config field without a comment"
        if isinstance(target, ast.Attribute):
          names.add(target.attr)
  return names


@pytest.mark.parametrize("path", CONFIGS)
def test_every_field_is_commented(path):
  assigned = (_commented_field_names(path)
              | _commented_field_names("mrt_jax/config_defaults.py"))
  for variant in ("", ":cpu"):
    for leaf, _ in _leaves(load_config(path + variant)):
      assert leaf[-1] in assigned, f"{path}{variant}: field {'.'.join(leaf)} set without comment"


def _experience(*overrides):
  tokenizer = SimpleNamespace(encode=lambda text, add_special_tokens: [5, 6], eos_token_id=0)
  return setup.experience_config(load_config("configs/demo_cpu.py", list(overrides)), tokenizer,
                                 SimpleNamespace(eos_token_ids=(3,)))


def test_every_advantage_field_reaches_the_rollout():
  e = _experience("advantage.progress_norm=standardize", "advantage.std=biased",
                  "advantage.eps=0.5", "advantage.outcome_norm=dr_grpo", "advantage.alpha=2.0",
                  "advantage.flat_threshold=0.05", "advantage.open_block=outcome")
  assert (e.progress_norm, e.std, e.eps, e.outcome_norm, e.alpha, e.flat_threshold,
          e.open_block) == ("standardize", "biased", 0.5, "dr_grpo", 2.0, 0.05, "outcome")
  assert e.suffix_tokens == (5, 6) and e.stop_token_ids == (0, 3)


def test_bad_advantage_field_fails_before_training():
  with pytest.raises(ValueError, match=r"config\.advantage.*progress_norm='z' is unknown"):
    _experience("advantage.progress_norm=z")


def test_progress_norm_without_progress_is_an_error():
  # GRPO reads no progress: a progress normalization there would silently do nothing.
  with pytest.raises(ValueError, match=r"config\.advantage\.progress_norm='flat_price'.*"
                     r"estimator='grpo'"):
    _experience("advantage.estimator=grpo", "advantage.progress_norm=flat_price")
  with pytest.raises(ValueError, match=r"config\.advantage\.open_block='outcome'.*"
                     r"estimator='grpo'"):
    _experience("advantage.estimator=grpo", "advantage.open_block=outcome")
  with pytest.raises(ValueError, match=r"config\.advantage\.open_block='x' is unknown"):
    _experience("advantage.open_block=x")


# Fields whose value is acted on while the config loads: an importable module name.
_LOADED_AS_CONFIG = {("plugins",): ("json",)}


def _other_value(config: ConfigDict, leaf: tuple[str, ...]):
  """A value of the field's own type that differs from its current one."""
  if leaf in _LOADED_AS_CONFIG:
    return _LOADED_AS_CONFIG[leaf]
  parent = config
  for key in leaf[:-1]:
    parent = parent[key]
  value, kind = parent[leaf[-1]], parent.get_ref(leaf[-1]).get_type()
  if kind is bool:
    return not value
  if kind in (int, float):
    return (value or 0) + (1 if kind is int else 0.5)
  if kind is str:
    return (value or "") + "_x"
  if kind is tuple:
    return tuple(value) + ((value[-1],) if value else (7,))
  raise AssertionError(f"field {'.'.join(leaf)} has type {kind}, which the command line cannot set")


@pytest.mark.parametrize("spec", SPECS)
def test_every_declared_field_can_be_set_from_the_command_line(spec):
  config = load_config(spec)
  wanted = {leaf: _other_value(config, leaf) for leaf, _ in _leaves(config)}
  overrides = [f"--config.{'.'.join(leaf)}={repr(v) if isinstance(v, tuple) else v}"
               for leaf, v in wanted.items()]
  changed = load_config(spec, overrides)
  got = dict(_leaves(changed))
  for leaf, value in wanted.items():
    assert got[leaf] == value, f"{spec}: --config.{'.'.join(leaf)}={value!r} gave {got[leaf]!r}"


@pytest.mark.parametrize("field", [
    "data.prompt_template", "data.system", "data.shuffle", "data.num_epochs", "data.split",
    "train.keep_checkpoints", "train.sample_every", "reward.num_workers", "reward.timeout_s",
    "eval.k_values", "eval.max_new_tokens", "eval.wait_text"])
def test_settings_the_code_reads_are_declared(field):
  # Read with `.get(name, default)` before; now every config declares them.
  for spec in SPECS:
    block, name = field.split(".")
    assert name in load_config(spec)[block], f"{spec} does not declare {field}"


def test_task_estimator_settings_reach_the_rollout_and_bad_ones_are_named():
  from mrt_jax.rewards import elimination_success
  e = _experience("probe.estimator=task", "probe.task_prover=elimination")
  assert e.j_estimator == "task" and e.task_prover is elimination_success and e.measures_j
  with pytest.raises(ValueError, match=r"config\.probe\.estimator='task' .* config\.probe\."
                     r"task_prover is empty; expected one of \[.*'elimination'"):
    _experience("probe.estimator=task")
  with pytest.raises(ValueError, match=r"config\.probe\.task_prover='nope' is not a registered"):
    _experience("probe.estimator=task", "probe.task_prover=nope")
  # Set but read by nothing (a likelihood J in training, a sampled one in evaluation).
  with pytest.raises(ValueError, match=r"config\.probe\.task_prover='elimination' is set, but "
                     r"neither config\.probe\.estimator \('likelihood'"):
    _experience("probe.estimator=likelihood", "probe.task_prover=elimination")
  # Read by the evaluation alone (GRPO trains without J): fine.
  e = _experience("advantage.estimator=grpo", "eval.j_estimator=task",
                  "probe.task_prover=elimination")
  assert e.j_estimator is None and e.task_prover is None
  with pytest.raises(ValueError, match=r"config\.probe\.meta_prover='m' names a checkpoint, but "
                     r"config\.probe\.estimator='task' runs no model"):
    _experience("probe.estimator=task", "probe.task_prover=elimination", "probe.meta_prover=m")
