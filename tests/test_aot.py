"""`python -m mrt_jax.aot`: TPU memory/FLOPs report compiled through libtpu on a CPU.

The CLI runs in a subprocess (it configures libtpu's environment before the plugin loads).
A tiny Qwen2 (prime vocab) stands in for the 7B, whose v5p-64 figures are a benchmark
(benchmarks/aot_7b.py, BENCHMARKS.md): compiling it takes minutes.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from mrt_jax import aot_topologies
from mrt_jax.aot import model_config
from mrt_jax.models import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1 << 30
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu (pip install -e .[test]) compiles for TPUs")

TINY_QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 211, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False, "max_position_embeddings": 4096, "eos_token_id": 1}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  path = tmp_path_factory.mktemp("aot") / "tiny"
  path.mkdir()
  (path / "config.json").write_text(json.dumps(TINY_QWEN2))
  return str(path)


def _aot(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, "-m", "mrt_jax.aot", *args], capture_output=True,
                        text=True, timeout=300, env=env, cwd=ROOT)


def _tiny_args(model: str, prompts: int, micro: int, completion: int) -> list[str]:
  """The 1.5B config on a v5e-8 (2 x 2 x 2 mesh) with the tiny model's architecture."""
  return ["--config=configs/mrt_rl_1_5b.py", "--topology=v5e-8", f"--config.model.path={model}",
          "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
          f"--config.train.global_batch_prompts={prompts}",
          f"--config.train.micro_batch_prompts={micro}", "--config.data.max_prompt_len=32",
          f"--config.rollout.max_completion_len={completion}"]


def _last_json(proc: subprocess.CompletedProcess) -> dict:
  lines = proc.stdout.strip().splitlines()
  assert lines, f"no stdout (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
  return json.loads(lines[-1])


@needs_libtpu
def test_small_config_fits_and_reports_memory_and_flops(tiny_model):
  proc = _aot(*_tiny_args(tiny_model, prompts=4, micro=2, completion=32))
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = _last_json(proc)
  for key in ("peak_bytes_per_device", "hbm_bytes_per_device", "flops_per_step"):
    assert isinstance(out[key], int) and out[key] > 0, (key, out[key])
  assert out["fits"] and out["peak_bytes_per_device"] <= out["hbm_bytes_per_device"] == 16 * GiB
  assert out["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert out["libtpu_topology"] == "v5e:2x4" and out["num_devices"] == 8
  assert out["model"]["vocab"] == 211
  assert out["train_shapes"]["micro_batches"] == 2 and out["train_shapes"]["rows"] == 4 * 4
  assert out["sampler_shapes"]["cache_len"] == 64
  assert set(out["programs"]) == {"prefill", "decode", "train"}  # no fixed meta-prover
  assert out["resident_bytes"]["prover_params_bytes"] == 0
  assert out["predicted"]["prover_prefill_s"] == 0
  for name, program in out["programs"].items():
    assert program["compiled"] and program["total_bytes"] > 0, (name, program)
  predicted = out["predicted"]
  assert predicted["step_s"] == pytest.approx(
      predicted["sampling_s"] + predicted["logprobs_s"] + predicted["train_s"], rel=1e-12)
  assert 0 < predicted["rl_step_mfu"] < predicted["train_step_mfu"] <= 0.75
  assert proc.stdout.strip().splitlines()[-2].startswith("predicted RL step >= ")


@needs_libtpu
def test_too_big_batch_exits_1_with_the_report(tiny_model):
  # 256 rows of 16416 tokens in one micro-batch: even with query-chunked attention, the train
  # step needs ~52 GiB per device (32 rows needed ~67 GiB before chunking, 12.4 GiB after);
  # the TPU compiler refuses it (v5e: 16 GiB).
  proc = _aot(*_tiny_args(tiny_model, prompts=64, micro=64, completion=16384))
  assert proc.returncode == 1, proc.stderr[-4000:]
  out = _last_json(proc)
  assert out["fits"] is False
  assert out["peak_bytes_per_device"] > out["hbm_bytes_per_device"]
  assert not out["programs"]["train"]["compiled"] and out["peak_is_lower_bound"]
  assert "RESOURCE_EXHAUSTED" in out["programs"]["train"]["error"]


@needs_libtpu
def test_unknown_topology_is_a_clear_error():
  proc = _aot("--config=configs/mrt_rl_7b.py", "--topology=tpu-8")
  assert proc.returncode == 2
  assert "--topology='tpu-8' is not a known TPU slice name" in proc.stderr
  assert "v5p-64" in proc.stderr and "Traceback" not in proc.stderr


@needs_libtpu
def test_mesh_topology_mismatch_names_both():
  proc = _aot("--config=configs/mrt_rl_7b.py", "--topology=v5e-8")
  assert proc.returncode == 2
  assert ("config mesh data=1 x fsdp=8 x tensor=4 = 32 devices, but --topology=v5e-8 has 8 "
          "chips") in proc.stderr


@pytest.mark.parametrize("name, libtpu_name, chips", [
    ("v5p-64", "v5p:2x4x4", 32), ("v5p-8", "v5p:2x2x1", 4), ("v5p-128", "v5p:4x4x4", 64),
    ("v4-8", "v4:2x2x1", 4), ("v4-32", "v4:2x2x4", 16), ("v5e-1", "v5e:1x1", 1),
    ("v5e-16", "v5e:4x4", 16), ("v5e-256", "v5e:16x16", 256), ("v6e-8", "v6e:2x4", 8),
])
def test_slice_names_map_to_libtpu_topologies(name, libtpu_name, chips):
  topology = aot_topologies.parse(name)
  assert (topology.libtpu_name, topology.num_chips) == (libtpu_name, chips)


@pytest.mark.parametrize("name, message", [
    ("v5p-4", "power of two >= 8"), ("v5e-12", "got 12"), ("v3-8", "not a known TPU slice"),
])
def test_bad_slice_names(name, message):
  with pytest.raises(ValueError, match=message):
    aot_topologies.parse(name)


def test_builtin_architecture_when_the_checkpoint_is_absent(tmp_path):
  config = model_config(str(tmp_path / "DeepSeek-R1-Distill-Qwen-7B"))
  assert (config.hidden_size, config.num_layers, config.num_heads, config.num_kv_heads,
          config.intermediate_size, config.vocab_size, config.tie_word_embeddings) == (
              3584, 28, 28, 4, 18944, 152064, False)
  with pytest.raises(ConfigError, match="'Mystery-7B' is not a built-in architecture"):
    model_config(str(tmp_path / "Mystery-7B"))


def test_predicted_step_is_the_roofline_of_each_phase():
  from mrt_jax.aot_predict import predict
  v5e = aot_topologies.parse("v5e-8")  # 197 TFLOP/s and 819 GB/s per chip
  peak, bw, chips = 197e12, 819e9, 8
  report = {
      "programs": {"prefill": {"total_bytes": 10 * 819e9},  # memory-bound: 10 s
                   "decode": {"argument_bytes": 819e6},     # memory-bound: 1 ms a step
                   "train": {"total_bytes": 0}},
      "sampler_shapes": {"new_tokens": 100}, "prefill_flops": 1.0,
      "decode_flops_per_token_step": 1.0,
      "flops_per_step": 3 * peak * chips,  # one second of the slice per forward pass
      "resident_bytes": {"ref_params_bytes": 1}}  # β > 0: π_old and π_ref forward passes
  p = predict(report, v5e)
  assert (p["peak_flops_per_chip"], p["hbm_bytes_per_second"]) == (peak, bw)
  assert p["prefill_s"] == pytest.approx(10) and p["decode_step_s"] == pytest.approx(1e-3)
  assert p["sampling_s"] == pytest.approx(10.1) and p["logprobs_s"] == pytest.approx(2)
  assert p["train_s"] == pytest.approx(4)  # 4 forward passes' worth with layer remat
  assert p["step_s"] == pytest.approx(16.1)
  assert p["train_step_mfu"] == pytest.approx(0.75) and p["rl_step_mfu"] == pytest.approx(3 / 16.1)
  assert p["bound"] == {"prefill": "memory", "decode_step": "memory", "train": "compute"}


def test_a_fixed_meta_provers_prefill_joins_the_sampling_time():
  from mrt_jax.aot_predict import predict, summary
  v5e = aot_topologies.parse("v5e-8")
  report = {
      "programs": {"prefill": {"total_bytes": 0}, "decode": {"argument_bytes": 0},
                   "train": {"total_bytes": 0},
                   "prover_prefill": {"total_bytes": 3 * 819e9}},  # memory-bound: 3 s
      "sampler_shapes": {"new_tokens": 1}, "prefill_flops": 0, "decode_flops_per_token_step": 0,
      "prover_prefill_flops": 1.0, "flops_per_step": 3.0, "resident_bytes": {
          "ref_params_bytes": 0}}
  p = predict(report, v5e)
  assert p["prover_prefill_s"] == pytest.approx(3) and p["sampling_s"] == pytest.approx(3)
  assert p["bound"]["prover_prefill"] == "memory"
  assert "meta-prover prefill 3.00 s" in summary(p)


@needs_libtpu
def test_a_fixed_meta_prover_adds_its_prefill_and_its_params(tiny_model):
  args = _tiny_args(tiny_model, prompts=4, micro=2, completion=32)
  proc = _aot(*args, f"--config.probe.meta_prover={tiny_model}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = _last_json(proc)
  assert set(out["programs"]) == {"prefill", "decode", "train", "prover_prefill"}
  assert out["programs"]["prover_prefill"]["compiled"]
  # Every rollout (16 rows) of prompt 32 + completion 32 tokens, one bucket.
  assert (out["sampler_shapes"]["prover_prefill_len"], out["sampler_shapes"]["rollout_rows"]) == (
      64, 16)
  resident = out["resident_bytes"]
  assert resident["prover_params_bytes"] > 0
  assert out["phase_peak_bytes"]["training"] == (out["programs"]["train"]["total_bytes"]
                                                 + resident["ref_params_bytes"]
                                                 + resident["prover_params_bytes"])
  assert out["predicted"]["prover_prefill_s"] > 0
