"""KV-cache copies in the compiled decode loop, scanned vs unrolled layers, compiled for a TPU.

Decode is bound by memory traffic: every step reads the weights and the KV cache once. A copy
of a layer's cache inside the loop adds a write and a read of it on every step. This program
compiles the sampler's real decode loop (`mrt_jax.sampling.decode.phase`) through libtpu on
this machine (no TPU needed) for one chip: one phase over the whole window with the layers
scanned over a stacked cache and unrolled over per-layer buffers (the `Sampler` default), and
the first phase of phased decoding (prompt + `phase` steps, unrolled); it counts the copies in
the optimized HLO whose shape is a whole layer's keys or values [B, K, S, E] (with or without
a leading unit layer axis), by the op that made them, and prints the compiler's temporary
memory, and XLA's bytes accessed per generated token by one step of the unrolled loop
(`one_step_bytes`) against the roofline: every weight read once plus the KV of the live
context at the middle of the phase. A copy is counted once however often it runs:
one in the layer loop's body runs for every layer of every step.

Shapes: DeepSeek-R1-Distill-Qwen-1.5B with bf16 weights, batch 64, a cache of 512 + 1024
entries (those of `decode_roofline.py`); `--quick`: a 2-layer model of the same family.

  python benchmarks/decode_copies.py             # ~1 min on 2 cores
  python benchmarks/decode_copies.py --quick     # seconds
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Importing jax starts no backend: libtpu reads its environment (`quiet_libtpu_env`, in main)
# when the first topology is built.
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import SingleDeviceSharding  # noqa: E402

from mrt_jax import aot_topologies  # noqa: E402
from mrt_jax.aot import KNOWN_ARCHITECTURES  # noqa: E402
from mrt_jax.models import init_params  # noqa: E402
from mrt_jax.models.config import config_from_hf_dict  # noqa: E402
from mrt_jax.models.transformer import KVCache, forward, unstack_params  # noqa: E402
from mrt_jax.sampling import SamplingRules, decode  # noqa: E402

FULL = dict(batch=64, prompt=512, new=1024, phase=128)
QUICK = dict(batch=8, prompt=32, new=32, phase=16)


def layer_copies(hlo_text: str, batch: int, kv_heads: int, cache_len: int,
                 head_dim: int) -> list[str]:
  """Copy instructions of the HLO whose result is one layer's [B, K, S, E] cache array."""
  dims = f"{batch},{kv_heads},{cache_len},{head_dim}"
  pattern = re.compile(r"=\s*\w+\[(?:1,)?" + dims + r"\]\S*\s+copy\(")
  return [line.strip() for line in hlo_text.splitlines() if pattern.search(line)]


def one_step_bytes(config, params, cache, rows, rule_arrays, scan_layers: bool) -> float:
  """XLA's bytes accessed by one decode step of the phase's loop body, compiled alone.

  XLA's cost analysis counts a loop body once and the code around it (the phase's one split
  of the stacked weights) in full, so the step is compiled on its own, with the weights already
  split per layer as the loop body sees them.
  """
  per_layer = jax.eval_shape(unstack_params, params)
  device = jax.tree.leaves(params)[0].sharding
  per_layer = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                           per_layer)

  def step(params, cache, rows, rule_arrays):
    logits_Bx1xV, cache = forward(config, params, rows.token_B[:, None], cache=cache,
                                  compute_dtype=jnp.bfloat16, rules=(), scan_layers=scan_layers,
                                  write_at=cache.max_len - 1)
    # pylint: disable-next=protected-access
    return (cache,) + decode._emit(rows, logits_Bx1xV[:, 0], rule_arrays)

  compiled = jax.jit(step, donate_argnums=1).lower(per_layer, cache, rows, rule_arrays).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["bytes accessed"])


def abstract_rows(batch: int, stops_width: int, sharding) -> decode.Rows:
  """Shapes of the decode state `decode.Rows` of `batch` rows on `sharding`."""
  per_row = lambda dtype, *more: jax.ShapeDtypeStruct((batch,) + more, dtype, sharding=sharding)
  key_dtype = jax.eval_shape(lambda: jax.random.key(0)).dtype
  return decode.Rows(token_B=per_row(jnp.int32), pending_B=per_row(jnp.bool_),
                     done_B=per_row(jnp.bool_), stopped_B=per_row(jnp.bool_),
                     emitted_B=per_row(jnp.int32), budget_B=per_row(jnp.int32),
                     window_BxW=per_row(jnp.int32, stops_width), keys_B=per_row(key_dtype))


def compile_decode(config, s: dict, scan_layers: bool, device, hlo_dir: str | None = None,
                   steps: int | None = None) -> dict:
  """Compiles `decode.phase` for one device; returns copies, temp bytes and compile time.

  The phase has `steps` steps (default: the whole new-token bucket, the static batch's one
  phase) in a window of prompt + steps entries.
  """
  steps = steps or s["new"]
  B, S = s["batch"], s["prompt"] + steps
  sharding = SingleDeviceSharding(device)
  on = lambda tree: jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
  params = on(jax.eval_shape(lambda: init_params(config, jax.random.key(0),
                                                 dtype=jnp.bfloat16)))
  layer = (B, config.num_kv_heads, S, config.head_dim)
  if scan_layers:
    kv = jax.ShapeDtypeStruct((config.num_layers,) + layer, jnp.bfloat16, sharding=sharding)
  else:
    kv = (jax.ShapeDtypeStruct(layer, jnp.bfloat16, sharding=sharding),) * config.num_layers
  per_row = lambda dtype, *more: jax.ShapeDtypeStruct((B,) + more, dtype, sharding=sharding)
  cache = KVCache(kv, kv, per_row(jnp.int32), per_row(jnp.int32))
  rules = on(jax.eval_shape(lambda: SamplingRules(1.0).to_arrays(config.vocab_size, s["new"])))
  rows = abstract_rows(B, rules.stops_XxW.shape[1], sharding)
  start = time.perf_counter()
  compiled = decode.phase.lower(config, params, cache, rows, rules, rules=(),
                                compute_dtype=jnp.bfloat16, steps=steps,
                                scan_layers=scan_layers).compile()
  seconds = time.perf_counter() - start
  if hlo_dir:
    name = ("scanned" if scan_layers else "unrolled") + f"_{S}"
    with open(os.path.join(hlo_dir, f"decode_{name}.hlo.txt"), "w") as f:
      f.write(compiled.as_text())
  copies = layer_copies(compiled.as_text(), *layer)
  # What each copy materializes, from its op_name (e.g. "dynamic_slice", "scatter").
  ops = (re.search(r'op_name="[^"]*/([^/"]+)"', line) for line in copies)
  sources = collections.Counter(op.group(1) if op else "?" for op in ops)
  # Sort ops anywhere in the program: choosing tokens must not sort the vocab (`rules.truncate`).
  sorts = len(re.findall(r"\ssort\(", compiled.as_text()))
  # The scanned loop's step holds a layer scan (counted once): measured for the unrolled only.
  step_bytes = (float("nan") if scan_layers
                else one_step_bytes(config, params, cache, rows, rules, scan_layers))
  # Roofline of one step: every weight read once (the embedding: the batch's rows) and the KV
  # of the live context, at the middle of the phase.
  weights = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params))
  embed = params["embed"]["embedding"]
  if not config.tie_word_embeddings:
    weights -= (embed.shape[0] - B) * embed.shape[1] * embed.dtype.itemsize
  kv_per_entry = config.num_layers * 2 * config.num_kv_heads * config.head_dim * 2
  live = s["prompt"] + steps / 2
  return {"scan_layers": scan_layers, "window": S, "steps": steps,
          "bytes_accessed_per_token": step_bytes / B,
          "roofline_bytes_per_token": (weights + B * live * kv_per_entry) / B,
          "layer_cache_copies": len(copies),
          "sources": dict(sources), "sort_ops": sorts,
          "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
          "layer_cache_bytes": int(2 * B * config.num_kv_heads * S * config.head_dim),
          "compile_s": round(seconds, 1), "copies": copies[:4]}


def compile_repack(config, s: dict, device, parked: bool) -> dict:
  """Compiles `decode.repack` between the first two phases (unrolled, per-layer buffers) for
  one device: a batch of `batch` rows moves from a window of prompt + phase entries to one of
  prompt + 2 * phase; with `parked`, from two sources (the working and the parked rows, as
  parking and the final gather of a kept cache do).

  Returns the compiler's temporary bytes beside the caches in and out: the between-phase peak
  is the arguments, the outputs and the temporaries together.
  """
  B = s["batch"]
  before, after = s["prompt"] + s["phase"], s["prompt"] + 2 * s["phase"]
  sharding = SingleDeviceSharding(device)
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  layer = spec((B, config.num_kv_heads, before, config.head_dim), jnp.bfloat16)
  per_row = lambda dtype, *more: spec((B,) + more, dtype)
  cache = KVCache((layer,) * config.num_layers, (layer,) * config.num_layers,
                  per_row(jnp.int32), per_row(jnp.int32))
  rows = abstract_rows(B, 4, sharding)
  take, shift = per_row(jnp.int32), spec((), jnp.int32)
  fresh = ((cache, rows), take, shift) if parked else (None, None, None)
  compiled = decode.repack.lower(cache, rows, take, shift, *fresh, rules=(),
                                 length=after).compile()
  layer_bytes = lambda entries: 2 * B * config.num_kv_heads * entries * config.head_dim
  return {"parked": parked, "window_in": before, "window_out": after,
          "cache_in_bytes": (1 + parked) * 2 * config.num_layers * layer_bytes(before),
          "cache_out_bytes": 2 * config.num_layers * layer_bytes(after),
          "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes)}


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="a 2-layer model, small shapes")
  ap.add_argument("--topology", default="v5p-8", help="TPU slice whose chip to compile for")
  ap.add_argument("--hlo-dir", default=None, help="also write the optimized HLO texts here")
  args = ap.parse_args(argv)
  topology = aot_topologies.parse(args.topology)
  aot_topologies.quiet_libtpu_env(topology)  # before libtpu loads

  hf = dict(KNOWN_ARCHITECTURES["DeepSeek-R1-Distill-Qwen-1.5B"])
  if args.quick:
    hf.update(num_hidden_layers=2, vocab_size=1024)
  config = config_from_hf_dict(hf, where="benchmark shapes")
  s = QUICK if args.quick else FULL
  device = aot_topologies.devices(topology)[0]
  rows = [compile_decode(config, s, scan, device, args.hlo_dir) for scan in (True, False)]
  # The first phase of phased decoding: the prompt window plus s["phase"] steps.
  rows.append(compile_decode(config, s, False, device, args.hlo_dir, steps=s["phase"]))
  print(f"decode loop of {'a 2-layer' if args.quick else 'the 1.5B'} model, batch {s['batch']}, "
        f"cache {s['prompt']} + {s['new']}, bf16, compiled for one {device.device_kind} chip")
  print("| layers | window (steps) | copies of one layer's K or V cache (by source op) | "
        "temp MiB | MB accessed per token (XLA) | roofline MB per token | compile s |")
  print("|---|---|---|---:|---:|---:|---:|")
  for r in rows:
    name = "scanned, stacked cache" if r["scan_layers"] else "unrolled, per-layer buffers"
    sources = ", ".join(f"{n} {op}" for op, n in sorted(r["sources"].items())) or "none"
    print(f"| {name} | {r['window']} ({r['steps']}) | {r['layer_cache_copies']} ({sources}) | "
          f"{r['temp_bytes'] / 2**20:.1f} | {r['bytes_accessed_per_token'] / 1e6:.2f} | "
          f"{r['roofline_bytes_per_token'] / 1e6:.2f} | {r['compile_s']} |")
  moves = [compile_repack(config, s, device, parked) for parked in (False, True)]
  print("between phases (`decode.repack`, unrolled): | sources | window in -> out | cache in MiB "
        "| cache out MiB | temp MiB |")
  for m in moves:
    print(f"| {'working + parked rows' if m['parked'] else 'working rows'} | {m['window_in']} -> "
          f"{m['window_out']} | {m['cache_in_bytes'] / 2**20:.1f} | "
          f"{m['cache_out_bytes'] / 2**20:.1f} | {m['temp_bytes'] / 2**20:.1f} |")
  print(json.dumps({"device": device.device_kind, **s, "num_layers": config.num_layers,
                    "rows": rows, "repack": moves}))
  return rows


if __name__ == "__main__":
  main()
