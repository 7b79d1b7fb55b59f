"""Benchmark programs: their byte and bandwidth accounting, and a smoke run of each cheap one."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from mrt_jax import models
from mrt_jax.models.config import config_from_hf_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks",
                                                                   f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


roofline = _load("decode_roofline")


@pytest.mark.parametrize("kind,bandwidth", [
    ("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H100 PCIe", 2.0e12), ("NVIDIA H200", 4.8e12),
    ("NVIDIA GH200 480GB", 4.0e12), ("TPU v5p", 2.765e12), ("TPU v5 lite", 0.819e12),
])
def test_peak_bandwidth_by_device_kind(kind, bandwidth):
  assert roofline.peak_bandwidth(kind, None) == bandwidth
  assert roofline.peak_bandwidth(kind, 100.0) == 100e9


def test_unknown_device_kind_asks_for_the_bandwidth():
  with pytest.raises(SystemExit, match="'cpu'.*--peak-gbps"):
    roofline.peak_bandwidth("cpu", None)


def test_step_bytes_of_the_1_5b_shapes():
  # By hand from the architecture: bf16, 28 layers, 2 kv heads of 128.
  config = config_from_hf_dict(roofline.KNOWN_ARCHITECTURES[roofline.FULL["model"]])
  params = jax.eval_shape(lambda: models.init_params(config, jax.random.key(0),
                                                     dtype=np.dtype("bfloat16")))
  weights, kv = roofline.step_bytes(config, params, batch=64, context=1000.0, itemsize=2)
  D, F, V, L = 1536, 8960, 151936, 28
  per_layer = D * D + 2 * D * 256 + D * D + 3 * D * F + (D + 2 * 256) + 2 * D  # q k v o mlp b norms
  assert weights == 2 * (L * per_layer + D + V * D + 64 * D)  # final norm, head, 64 embed rows
  assert kv == 64 * 1000.0 * L * 2 * 2 * 128 * 2


def test_quick_run_reports_consistent_figures():
  out = roofline.main(["--quick", "--peak-gbps=20", "--repeats=3"])
  assert out["decode_s"] > 0 and out["decode_tokens_per_s"] == pytest.approx(
      out["batch"] * out["new"] / out["decode_s"])
  steps_bytes = out["new"] * (out["weight_bytes_per_step"] + out["kv_live_bytes_per_step"])
  assert out["roofline_fraction"] == pytest.approx(steps_bytes / 20e9 / out["decode_s"])
  assert out["kv_bucket_bytes_per_step"] > out["kv_live_bytes_per_step"]


copies = _load("decode_copies")


def test_layer_copy_detector_matches_whole_layer_caches_only():
  hlo = "\n".join([
      '  %copy.1 = bf16[1,8,2,64,128]{4,3,2,1,0:T(8,128)(2,1)} copy(%p), metadata={op_name='
      '"jit(decode)/while/body/dynamic_slice"}',
      '  ROOT %copy.2 = bf16[8,2,64,128]{3,2,1,0} copy(%q)',
      '  %copy.3 = bf16[8,2,32,128]{3,2,1,0} copy(%r)',        # half a layer's entries
      '  %copy.4 = bf16[2,8,2,64,128]{4,3,2,1,0} copy(%s)',    # two layers (a stacked slice)
      '  %fusion.5 = bf16[8,2,64,128]{3,2,1,0} fusion(%t), kind=kLoop',  # not a copy
  ])
  found = copies.layer_copies(hlo, batch=8, kv_heads=2, cache_len=64, head_dim=128)
  assert [line.split()[0] for line in found] == ["%copy.1", "ROOT"]


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu (pip install -e .[test]) compiles for TPUs")
def test_quick_copy_count_compiles_both_layer_loops_for_a_tpu():
  import json
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "decode_copies.py"),
                         "--quick"], capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  rows = {r["scan_layers"]: r for r in out["rows"] if r["steps"] == out["new"]}
  assert set(rows) == {True, False} and out["num_layers"] == 2
  first_phase = [r for r in out["rows"] if r["steps"] == out["phase"]]
  assert len(first_phase) == 1 and first_phase[0]["layer_cache_copies"] == 0
  # A shorter window reads less per token, and never less than the roofline.
  assert (rows[False]["bytes_accessed_per_token"] > first_phase[0]["bytes_accessed_per_token"]
          > first_phase[0]["roofline_bytes_per_token"])
  # libtpu materializes the scanned layer's dynamic slice of the stacked cache (K and V) on
  # every step. The unrolled loop (the sampler's default) writes each new token with one
  # dynamic_update_slice at an entry common to all rows and copies no layer's cache at all
  # (with a per-row scatter, libtpu re-laid-out every layer's K and V on every step).
  assert rows[True]["sources"].get("dynamic_slice", 0) >= 2
  assert rows[False]["layer_cache_copies"] == 0, rows[False]["copies"]
  # Top-k/top-p cut by bisection: no sort of the vocab per step (a sort in each token choice
  # would cost most of a probe decode step on CPU).
  assert rows[True]["sort_ops"] == rows[False]["sort_ops"] == 0
  # The between-phase move, compiled for the same chip: one source and two (working + parked),
  # from the first phase's window to the next; cache sizes from the shapes (bf16, K and V).
  moves = {m["parked"]: m for m in out["repack"]}
  assert set(moves) == {False, True}
  # Per entry, all layers' K and V: 2 bytes x batch x 2 kv heads x head_dim 128 (1.5B family).
  entry_bytes = 2 * out["num_layers"] * 2 * out["batch"] * 2 * 128
  for parked, m in moves.items():
    assert (m["window_in"], m["window_out"]) == (out["prompt"] + out["phase"],
                                                 out["prompt"] + 2 * out["phase"])
    assert m["cache_out_bytes"] == entry_bytes * m["window_out"]
    assert m["cache_in_bytes"] == (1 + parked) * entry_bytes * m["window_in"]
    assert m["temp_bytes"] > 0


def test_verifier_benchmark_smoke_run_agrees_and_ends_with_json():
  import json
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "verifier.py"),
                         "--calls=20", "--workers=1"], capture_output=True, text=True,
                        timeout=300, cwd=ROOT,
                        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                            [ROOT, os.environ.get("PYTHONPATH", "")])))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["calls"] == 20 and out["workers"] == 1
  assert out["single_process_calls_per_s"] > 0 and out["pool_calls_per_s"] > 0
  # The table's verdicts: of its 20 rows, the 3 wrong answers (rows 12, 14 and 20) score 0.
  assert out["reward_mean"] == 0.85



def test_attention_quick_run_reports_its_ratios(capsys):
  out = _load("attention").main(["--quick"])
  assert sorted(out) == sorted(f"{part}_blocks_over_{peer}" for peer in ("one_pass", "token_major")
                              for part in ("attention_forward", "attention_backward", "sft_step"))
  assert all(v > 0 for v in out.values())
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert json.loads(last) == out
