"""`evaluate` and `export` of a training checkpoint on another mesh and on 2 processes.

A checkpoint written on one device is evaluated and exported on 8 simulated devices (fsdp 4 x
tensor 2) and by the CLIs on 2 processes of 2 devices (gloo). Both restore only the params,
straight onto the config's mesh, and sample on it; the results must equal the 1-device
evaluation exactly (same seeds, same tokens: the sharded sampler's tests hold it to that), and
the exported tensors must equal the checkpoint's.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

from mrt_jax import config_cli, models
from mrt_jax.evaluation import runner
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.state import create_state
from mrt_jax.train.checkpoint import Checkpointer
from mrt_jax.train.restore import load_checkpoint

from multiprocess_util import run_commands
from subprocess_util import run_python
from test_evaluate_e2e import compile_cache, tiny  # noqa: F401  (module fixtures)

# A small evaluation: 2 problems x 2 samples of 8 tokens, one budget, no extrapolation.
OVERRIDES = ["eval.num_problems=2", "eval.budgets=(8,)", "rollout.max_completion_len=8",
             "probe.max_answer_len=4", "eval.num_resamples=10"]
MESH_8 = ["mesh.fsdp=4", "mesh.tensor=2"]
MESH_2X2 = ["mesh.fsdp=2", "mesh.tensor=2"]

# In a subprocess with 8 devices: records the arrays Orbax reads, evaluates and exports.
_ON_8_DEVICES = """
import json, jax
from orbax.checkpoint import type_handlers
read = []
_deserialize = type_handlers.ArrayHandler.deserialize
async def spy(self, infos, args=None):
  read.extend(str(info.name) for info in infos)
  return await _deserialize(self, infos, args)
type_handlers.ArrayHandler.deserialize = spy

from mrt_jax import config_cli
from mrt_jax.evaluate import evaluate_checkpoint
from mrt_jax.export import export
config = config_cli.load_config({config!r}, {overrides!r})
_, record = evaluate_checkpoint(config, {checkpoint!r}, {out!r})
export(config, {checkpoint!r}, {exported!r})
print(json.dumps({{"devices": jax.device_count(), "read": read}}))
"""


def _metrics(out_dir):
  with open(os.path.join(out_dir, "eval.json")) as f:
    metrics = json.load(f)["metrics"]
  with open(os.path.join(out_dir, "samples.jsonl")) as f:
    samples = [json.loads(line) for line in f]
  return metrics, samples


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
  """A 1-device training checkpoint (params and non-zero Adam moments) and its evaluation."""
  d = tmp_path_factory.mktemp("sharded_eval")
  params = jax.tree.map(lambda p: p * 1.5, tiny.params)
  state = create_state(params, make_optimizer(OptimizerConfig(total_steps=10)))
  state = state.replace(opt_state=jax.tree.map(lambda x: x + 1, state.opt_state))
  ckpt = Checkpointer(str(d / "checkpoints"), every=1, async_save=False)
  ckpt.maybe_save(5, state, {"step": 5})
  ckpt.close()
  config = config_cli.load_config(f"{tiny.dir}/config_no_extra.py", OVERRIDES)
  model_config, restored, name = load_checkpoint(config, str(d / "checkpoints"))
  runner.evaluate(config, restored, model_config, tiny.tokenizer, str(d / "ref"),
                  checkpoint="ref", name=name, make_plots=False)
  return d, params, _metrics(str(d / "ref"))


def _check_export(path, params):
  _, exported = models.load_hf(path)
  jax.tree.map(np.testing.assert_array_equal, exported, params)


def test_eight_devices_evaluate_and_export_a_one_device_checkpoint(tiny, written):
  d, params, (ref_metrics, ref_samples) = written
  code = _ON_8_DEVICES.format(config=f"{tiny.dir}/config_no_extra.py",
                              overrides=OVERRIDES + MESH_8, checkpoint=str(d / "checkpoints"),
                              out=str(d / "eval8"), exported=str(d / "export8"))
  report = json.loads(run_python(code, devices=8).strip().splitlines()[-1])
  assert report["devices"] == 8
  # Only the params were read, once by evaluate and once by export: Orbax never deserialized
  # a moment or a counter.
  num_params = len(jax.tree.leaves(params))
  assert len(report["read"]) == 2 * num_params == 2 * len(set(report["read"])), report["read"]
  assert all(name.startswith("params.") for name in report["read"]), report["read"]
  metrics, samples = _metrics(str(d / "eval8"))
  assert samples == ref_samples
  assert metrics == ref_metrics
  _check_export(str(d / "export8"), params)


def test_two_processes_evaluate_and_export_with_the_clis(tiny, written):
  d, params, (ref_metrics, ref_samples) = written
  flags = [f"--config={tiny.dir}/config_no_extra.py", f"--checkpoint={d}/checkpoints",
           *[f"--config.{o}" for o in OVERRIDES + MESH_2X2]]
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=tiny.compile_cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  outs = run_commands([sys.executable, "-m", "mrt_jax.evaluate", *flags, f"--out={d}/eval2"],
                      num_processes=2, local_devices=2, env=env, stderr=True)
  # Every process logs its index, the process count and the mesh once.
  for i, (_, err) in enumerate(outs):
    line = f"process {i} of 2: 2 of 4 cpu devices; mesh data 1 x fsdp 2 x tensor 2"
    assert err.count(line) == 1, err[-3000:]
  # The CLI's last line is the summary; eval.json, samples.jsonl and the plots are written.
  summary = json.loads(outs[0][0].strip().splitlines()[-1])
  assert summary["pass@1"] == ref_metrics["pass@1"] and "normalized_regret" in summary
  assert all(os.path.getsize(d / "eval2" / name) > 0 for name in runner.PLOTS)
  assert "pass@1" not in outs[1][0]  # process 0 alone reports
  metrics, samples = _metrics(str(d / "eval2"))
  assert samples == ref_samples
  assert metrics == ref_metrics
  outs = run_commands([sys.executable, "-m", "mrt_jax.export", *flags, f"--out={d}/export2"],
                      num_processes=2, local_devices=2, env=env)
  assert json.loads(outs[0].strip().splitlines()[-1])["step"] == "step_5"
  _check_export(str(d / "export2"), params)
