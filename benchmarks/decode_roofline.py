"""Decode speed on an accelerator against its HBM-bandwidth roofline.

DeepSeek-R1-Distill-Qwen-1.5B shapes (`mrt_jax.aot.KNOWN_ARCHITECTURES`) with random bf16
weights, batch 64, prompt 512, 1024 new tokens at temperature 1 with no stop token: every row
decodes the full budget.

  decode s      = (generate) − (prefill of the same prompts), each the best of --repeats runs
                  after a warm-up (compiles are not timed); the prefill timed alone writes a
                  cache without the new-token slots, so allocating those counts as decode;
  tokens/s      = batch × new tokens / decode s;
  bytes/step    = every weight read once (the embedding table: only the batch's rows) + the KV
                  cache of the live context, averaged over the steps (context 512 … 1535);
  roofline s    = steps × bytes/step / peak HBM bandwidth;
  fraction      = roofline s / decode s (target: >= 50%).

A second fraction counts the KV bytes of the whole cache bucket (prompt bucket + new-token
bucket), which is what a static batch's decode attention reads every step; the phased sampler
reads a window that grows with the rows (`sampling/schedule.py`), between the two.

The peak bandwidth comes from the device kind (table below) or --peak-gbps. One JSON line at
the end holds every figure.

  python benchmarks/decode_roofline.py              # on a GPU/TPU: the roofline figure
  python benchmarks/decode_roofline.py --quick --peak-gbps=20   # CPU smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.timing import best_time  # noqa: E402
from mrt_jax import models, sampling  # noqa: E402
from mrt_jax.aot import KNOWN_ARCHITECTURES  # noqa: E402
from mrt_jax.models.config import config_from_hf_dict  # noqa: E402

# Peak HBM bandwidth (bytes/s) by substring of `device.device_kind`, most specific first.
PEAK_BANDWIDTH = (
    ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12), ("GH200", 4.0e12),
    ("H200", 4.8e12), ("A100-SXM4-80GB", 2.039e12), ("A100-PCIE-80GB", 1.935e12),
    ("A100", 1.555e12), ("L4", 0.3e12), ("TPU v5p", 2.765e12), ("TPU v5 lite", 0.819e12),
    ("TPU v5e", 0.819e12), ("TPU v6", 1.64e12), ("TPU v4", 1.2e12),
)
FULL = dict(model="DeepSeek-R1-Distill-Qwen-1.5B", batch=64, prompt=512, new=1024)
QUICK = dict(batch=2, prompt=16, new=64)
TINY_QWEN2 = dict(KNOWN_ARCHITECTURES["DeepSeek-R1-Distill-Qwen-1.5B"], hidden_size=64,
                  intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                  num_hidden_layers=2, vocab_size=512)


def peak_bandwidth(device_kind: str, override_gbps: float | None) -> float:
  if override_gbps:
    return override_gbps * 1e9
  for name, bandwidth in PEAK_BANDWIDTH:
    if name.lower() in device_kind.lower():
      return bandwidth
  raise SystemExit(f"no peak bandwidth known for device kind {device_kind!r}; pass "
                   "--peak-gbps=<GB/s>")


def step_bytes(config, params, batch: int, context: float, itemsize: int) -> tuple[int, float]:
  """(weight bytes read per decode step, KV bytes per step at `context` cached tokens)."""
  weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  embed = params["embed"]["embedding"]
  # The input embedding is a gather of `batch` rows; a tied table is also the LM head (read).
  if not config.tie_word_embeddings:
    weights -= embed.size * embed.dtype.itemsize - batch * embed.shape[1] * embed.dtype.itemsize
  kv_per_token = config.num_layers * 2 * config.num_kv_heads * config.head_dim * itemsize
  return weights, batch * context * kv_per_token


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="tiny model and shapes (CPU smoke run)")
  ap.add_argument("--peak-gbps", type=float, default=None,
                  help="peak memory bandwidth in GB/s (default: from the device kind)")
  ap.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
  ap.add_argument("--dtype", default="bfloat16", help="params and KV cache dtype")
  args = ap.parse_args(argv)

  s = QUICK if args.quick else FULL
  hf = TINY_QWEN2 if args.quick else KNOWN_ARCHITECTURES[FULL["model"]]
  config = config_from_hf_dict(hf, where="benchmark shapes")
  dtype = jnp.dtype(args.dtype)
  device = jax.devices()[0]
  peak = peak_bandwidth(device.device_kind, args.peak_gbps)
  params = models.init_params(config, jax.random.key(0), dtype=dtype)
  sampler = sampling.Sampler(config, prompt_buckets=(s["prompt"],),
                             new_token_buckets=(s["new"],))
  prompts = np.random.default_rng(0).integers(3, config.vocab_size,
                                              size=(s["batch"], s["prompt"])).tolist()

  def generate():
    result = sampler.generate(params, prompts, max_new_tokens=s["new"], temperature=1.0, seed=0)
    assert all(len(t) == s["new"] for t in result.tokens), "a row stopped early"

  def prefill():
    jax.block_until_ready(sampler.prefill(params, prompts))

  generate_s = best_time(generate, args.repeats)
  prefill_s = best_time(prefill, args.repeats)
  decode_s = generate_s - prefill_s
  if decode_s <= 0:
    raise SystemExit(f"generate took {generate_s:.4f} s and its prefill alone {prefill_s:.4f} s: "
                     "the machine is too noisy for this measurement; run it idle")
  steps = s["new"]
  weights, kv_live = step_bytes(config, params, s["batch"], s["prompt"] + (steps - 1) / 2,
                                dtype.itemsize)
  _, kv_bucket = step_bytes(config, params, s["batch"], s["prompt"] + s["new"], dtype.itemsize)
  roofline_s = steps * (weights + kv_live) / peak
  out = {
      "device": device.device_kind, "platform": device.platform,
      "model": "tiny" if args.quick else FULL["model"], "dtype": str(dtype), **s,
      "params": int(sum(x.size for x in jax.tree.leaves(params))),
      "generate_s": generate_s, "prefill_s": prefill_s, "decode_s": decode_s,
      "decode_tokens_per_s": s["batch"] * steps / decode_s,
      "step_ms": 1e3 * decode_s / steps,
      "weight_bytes_per_step": weights, "kv_live_bytes_per_step": kv_live,
      "kv_bucket_bytes_per_step": kv_bucket, "peak_bytes_per_s": peak,
      "roofline_step_ms": 1e3 * roofline_s / steps,
      "roofline_fraction": roofline_s / decode_s,
      "roofline_fraction_bucket": steps * (weights + kv_bucket) / peak / decode_s,
  }
  print(f"{out['model']} ({out['params'] / 1e9:.3f}B params, {out['dtype']}) on "
        f"{out['device']}: batch {s['batch']}, prompt {s['prompt']}, {s['new']} new tokens")
  print(f"  generate {generate_s:.3f} s, prefill {prefill_s:.3f} s, decode {decode_s:.3f} s "
        f"({out['step_ms']:.2f} ms/step)")
  print(f"  decode {out['decode_tokens_per_s']:.0f} tokens/s; bytes/step: weights "
        f"{weights / 1e9:.2f} GB + KV {kv_live / 1e9:.2f} GB (live; {kv_bucket / 1e9:.2f} GB "
        f"for the whole bucket)")
  print(f"  roofline at {peak / 1e12:.2f} TB/s: {out['roofline_step_ms']:.2f} ms/step; "
        f"fraction {out['roofline_fraction']:.1%} (target >= 50%); counting the whole "
        f"cache bucket {out['roofline_fraction_bucket']:.1%}")
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
