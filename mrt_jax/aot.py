"""AOT check: compiles the sampler and the train step of a config for a TPU slice, on a CPU.

  python -m mrt_jax.aot --config=configs/mrt_rl_7b.py --topology=v5p-64

libtpu compiles for the named slice (`aot_topologies.py`) without any TPU attached; every input
is an abstract `jax.ShapeDtypeStruct` carrying its sharding, so no weights are loaded or
allocated. Prints a line with the predicted lower bound of one RL step's time and the train
step's MFU (`aot_predict.py`: the compiled programs' bytes, the analytic FLOPs below and the
chip's published peaks), then one JSON line (the last line on stdout, with those figures under
"predicted"), and exits 1 if the peak does not fit in one chip's HBM.

Programs compiled, with the shapes the training loop gives them:
- `prefill`: the step's prompts (train.global_batch_prompts rows of data.max_prompt_len,
  bucketed) into a KV cache of G = rollout.num_generations samples per prompt;
- `decode`: the sampler's largest decode phase, one `while_loop` over that cache's whole
  window (rows x (prompt bucket + completion bucket)): the peak of the decode programs (phased
  decoding's later, smaller batches and earlier windows need less), weights in the sampling
  layout;
- `train`: one optimizer update on global_batch_prompts x G rows of max_prompt_len +
  max_completion_len tokens, accumulated over global / micro_batch_prompts micro-batches;
- `prover_prefill` (only with `probe.meta_prover`): the fixed meta-prover's prefill of every
  rollout (rows x the bucket of max_prompt_len + max_completion_len) into its own KV cache,
  which its probes fork instead of the rollouts' cache.

Peak per device: the train state (and the frozen reference params when β > 0, and a fixed
meta-prover's params in the sampling layout) stay resident while the sampler runs, so the
sampling phase costs resident + the largest sampler program's footprint, and the train phase
the train program's footprint (which holds the state) + the reference + the meta-prover.
The TPU compiler refuses a program that cannot fit (RESOURCE_EXHAUSTED); it is then reported
with the size the compiler's error names, and the peak is a lower bound.

FLOPs: XLA's cost analysis counts a loop body once (the layer scan, the micro-batch scan and the
decode loop all are loops), so `flops_per_step` is the analytic count of the matmuls the train
step runs: 3 x forward (forward + backward), forward = 2·(matmul params)·tokens + 4·L·T²·H·E per
row (scores and values over the full T x T causal mask, as `layers.attention` computes them
for sequences longer than `layers.QUERY_CHUNK`; shorter ones skip most of the masked half).
XLA's own figures are reported per program for reference (`xla_flops`, loop bodies once).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import flags
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from mrt_jax import aot_predict, aot_topologies
from mrt_jax.config_cli import run
from mrt_jax.learner.optimizer import make_optimizer
from mrt_jax.learner.state import init_state, state_layout
from mrt_jax.learner.step import batch_shardings, train_step
from mrt_jax.models import (CACHE_AXES, SAMPLE_RULES, TRAIN_RULES, ConfigError, KVCache,
                            ModelConfig, Rules, config_from_hf_dict, load_config, make_mesh,
                            named_sharding, param_specs)
from mrt_jax.models.weights import is_spec
from mrt_jax.sampling import Sampler, SamplingRules, buckets, decode
from mrt_jax.train import setup

_TOPOLOGY = flags.DEFINE_string("topology", None,
                                "TPU slice to compile for: v4-N, v5p-N, v5e-N or v6e-N")
_PROGRAM = flags.DEFINE_enum("program", None, ["prefill", "decode", "train", "prover_prefill"],
                             "internal: compile only this program and print its stats")

# Architectures of checkpoints the configs name, keyed by the checkpoint directory's basename,
# so the check runs on a machine without the weights (values from each model's config.json).
_QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 28, "rope_theta": 10000.0,
          "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "max_position_embeddings": 131072,
          "bos_token_id": 151646, "eos_token_id": 151643, "use_sliding_window": False}
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "DeepSeek-R1-Distill-Qwen-7B": dict(
        _QWEN2, hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064),
    "DeepSeek-R1-Distill-Qwen-1.5B": dict(
        _QWEN2, hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936),
}


def model_config(path: str) -> ModelConfig:
  """The architecture at `path` (its config.json), else the built-in entry of its basename."""
  if os.path.isfile(os.path.join(path, "config.json")):
    return load_config(path)
  name = os.path.basename(os.path.normpath(path))
  if name not in KNOWN_ARCHITECTURES:
    raise ConfigError(f"model.path={path!r} has no config.json and its basename {name!r} is not "
                      f"a built-in architecture; known: {sorted(KNOWN_ARCHITECTURES)}")
  return config_from_hf_dict(KNOWN_ARCHITECTURES[name], where=f"built-in entry {name!r}")


def build_mesh(config: ConfigDict, topology: aot_topologies.Topology):
  """The config's (data, fsdp, tensor) mesh over the topology's devices."""
  sizes = (config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  if -1 not in sizes and math.prod(sizes) != topology.num_chips:
    raise ValueError(f"config mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = "
                     f"{math.prod(sizes)} devices, but --topology={topology.name} has "
                     f"{topology.num_chips} chips; set --config.mesh.* to multiply to "
                     f"{topology.num_chips} or pick a slice of {math.prod(sizes)} chips")
  return make_mesh(*sizes, devices=aot_topologies.devices(topology))


def _abstract(shape, dtype, mesh, logical, rules: Rules) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, dtype,
                              sharding=named_sharding(mesh, logical, rules, shape))


def abstract_params(mc: ModelConfig, mesh, rules: Rules, dtype):
  return jax.tree.map(lambda s: _abstract(s.shape, dtype, mesh, s.logical, rules),
                      param_specs(mc), is_leaf=is_spec)


def _replicated(tree, mesh):
  rep = NamedSharding(mesh, PartitionSpec())
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), tree)


def device_bytes(tree) -> int:
  """Bytes one device holds of an abstract pytree (each leaf's shard)."""
  return sum(math.prod(a.sharding.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize
             for a in jax.tree.leaves(tree))


def _stats(compiled, seconds: float) -> dict[str, Any]:
  m = compiled.memory_analysis()
  cost = compiled.cost_analysis() or {}
  cost = cost[0] if isinstance(cost, list) else cost
  total = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
           + m.temp_size_in_bytes + m.generated_code_size_in_bytes)
  return {"compiled": True, "total_bytes": int(total),
          "argument_bytes": int(m.argument_size_in_bytes),
          "output_bytes": int(m.output_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes),
          "temp_bytes": int(m.temp_size_in_bytes),
          "code_bytes": int(m.generated_code_size_in_bytes),
          "xla_flops": float(cost.get("flops", 0.0)), "compile_seconds": round(seconds, 1)}


# The TPU compiler refuses a program that cannot fit, e.g. "RESOURCE_EXHAUSTED: Ran out of memory
# on HBM, the total memory required for HLO temporaries (152.38G) exceeds available HBM
# (95.74G)" or "... Used 20.53G of 15.75G hbm ..."; the first size is what the program needs.
_NEEDED = re.compile(r"(?:required for [^(]*\(|Used )([0-9.]+)([KMGT])")


def _refused(error: Exception, seconds: float) -> dict[str, Any]:
  """Stats of a program the compiler refused: its needed bytes (a lower bound) and why."""
  message = str(error).strip().splitlines()[0]
  match = _NEEDED.search(message)
  needed = (int(float(match.group(1)) * 1024 ** "KMGT".index(match.group(2)) * 1024)
            if match else None)
  return {"compiled": False, "total_bytes": needed, "error": message,
          "compile_seconds": round(seconds, 1)}


def _compile(fn, *args, mesh, **kwargs):
  start = time.perf_counter()
  try:
    with jax.set_mesh(mesh):
      compiled = fn.lower(*args, **kwargs).compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return _refused(e, time.perf_counter() - start)
  return _stats(compiled, time.perf_counter() - start)


def sampler_programs(mc: ModelConfig, config: ConfigDict, mesh, dtype):
  """The rollout prefill and decode loop with the `Sampler`'s buckets and layout.

  Returns ({name: (jitted fn, abstract args, static kwargs)}, shapes).
  """
  sampler = Sampler(mc, mesh=mesh, rules=SAMPLE_RULES)
  rules = sampler.rules
  prompts = config.train.global_batch_prompts
  G = config.rollout.num_generations
  width = buckets.bucket(config.data.max_prompt_len, sampler.prompt_buckets,
                         "data.max_prompt_len", "prompt_buckets")
  # The sampler's own bucketing, so the shapes are the ones a training step compiles.
  # pylint: disable=protected-access
  new_tokens = sampler._new_tokens(config.rollout.max_completion_len)
  P = buckets.batch_rows(prompts, sampler._batch_multiple())
  # pylint: enable=protected-access
  B, S = P * G, width + new_tokens
  params = abstract_params(mc, mesh, rules, dtype)
  static = dict(rules=rules, compute_dtype=dtype, scan_layers=sampler.scan_layers)
  prefill = (decode.prefill,
             (mc, params, _abstract((P, width), jnp.int32, mesh, ("batch", "seq"), rules),
              _abstract((P,), jnp.int32, mesh, ("batch",), rules)),
             dict(cache_dtype=dtype, cache_len=S, repeats=G, **static))
  # The cache in the layout the sampler's prefill returns: stacked when it scans the layers,
  # per-layer buffers when it unrolls them.
  if static["scan_layers"]:
    kv = _abstract((mc.num_layers, B, mc.num_kv_heads, S, mc.head_dim), dtype, mesh,
                   CACHE_AXES, rules)
  else:
    kv = (_abstract((B, mc.num_kv_heads, S, mc.head_dim), dtype, mesh, CACHE_AXES[1:],
                    rules),) * mc.num_layers
  rows = _abstract((B,), jnp.int32, mesh, ("batch",), rules)
  cache = KVCache(kv, kv, rows, rows)
  sampling = SamplingRules(config.rollout.temperature, config.rollout.top_p,
                           stop_token_ids=mc.eos_token_ids)
  rule_arrays = _replicated(jax.eval_shape(lambda: sampling.to_arrays(mc.vocab_size, new_tokens)),
                            mesh)
  key_dtype = jax.eval_shape(lambda: jax.random.key(0)).dtype
  per_row = lambda dtype, *more: _abstract((B,) + more, dtype, mesh,
                                           ("batch",) + (None,) * len(more), rules)
  rows = decode.Rows(token_B=per_row(jnp.int32), pending_B=per_row(jnp.bool_),
                     done_B=per_row(jnp.bool_), stopped_B=per_row(jnp.bool_),
                     emitted_B=per_row(jnp.int32), budget_B=per_row(jnp.int32),
                     window_BxW=per_row(jnp.int32, rule_arrays.stops_XxW.shape[1]),
                     keys_B=per_row(key_dtype))
  decode_loop = (decode.phase, (mc, params, cache, rows, rule_arrays),
                 dict(steps=new_tokens, **static))
  shapes = {"prompt_rows": P, "prompt_len": width, "rollout_rows": B, "cache_len": S,
            "new_tokens": new_tokens}
  programs = {"prefill": prefill, "decode": decode_loop}
  if config.probe.meta_prover:
    # The training loop's fixed meta-prover: a sampler whose buckets hold whole rollouts
    # (`loop._fixed_prover`), prefilling all B rollouts in one call.
    longest = config.data.max_prompt_len + config.rollout.max_completion_len
    full = buckets.bucket(longest, setup.prompt_buckets(longest), "a whole rollout",
                          "prompt_buckets")
    programs["prover_prefill"] = (
        decode.prefill,
        (mc, params, _abstract((B, full), jnp.int32, mesh, ("batch", "seq"), rules),
         _abstract((B,), jnp.int32, mesh, ("batch",), rules)),
        dict(cache_dtype=dtype, cache_len=full, repeats=1, **static))
    shapes["prover_prefill_len"] = full
  return programs, shapes


def abstract_state(params, optimizer: optax.GradientTransformation):
  """The abstract `TrainState`, laid out as `create_state` lays it out (`state_layout`)."""
  state = jax.eval_shape(lambda p: init_state(p, optimizer), params)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state,
                      state_layout(params, optimizer))


def train_program(mc: ModelConfig, config: ConfigDict, mesh, dtype):
  """One train step on the step's whole batch.

  Returns ({"train": (jitted fn, abstract args, {})}, shapes, per-device resident bytes).
  """
  # The launch loop's own mapping from config to step and optimizer.
  step_config = setup.step_config(config)
  optimizer = make_optimizer(setup.optimizer_config(config))
  params = abstract_params(mc, mesh, TRAIN_RULES, dtype)
  state = abstract_state(params, optimizer)
  state_shardings = jax.tree.map(lambda a: a.sharding, state)
  # One optimizer update sees one mini-batch (train.mini_batches of them per step).
  prompts = config.train.global_batch_prompts // config.train.mini_batches
  rows = prompts * config.rollout.num_generations
  T = config.data.max_prompt_len + config.rollout.max_completion_len
  fields = {"tokens": jnp.int32, "mask": jnp.float32, "advantages": jnp.float32,
            "old_logprobs": jnp.float32, "sampler_logprobs": jnp.float32}
  if step_config.loss.beta > 0:
    fields["ref_logprobs"] = jnp.float32
  batch = {k: jax.ShapeDtypeStruct((rows, T), d) for k, d in fields.items()}
  batch_sh = batch_shardings(mesh, batch)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k])
           for k, v in batch.items()}
  fn = jax.jit(lambda s, b: train_step(mc, step_config, optimizer, s, b),
               in_shardings=(state_shardings, batch_sh),
               out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
               donate_argnums=0)
  micro_rows = rows // step_config.num_micro_batches
  shard = named_sharding(mesh, ("batch", "seq", "vocab"), TRAIN_RULES,
                         (micro_rows, T - 1, mc.vocab_size))
  logits = math.prod(shard.shard_shape((micro_rows, T - 1, mc.vocab_size))) * 4
  shapes = {"rows": rows, "len": T, "micro_batches": step_config.num_micro_batches,
            "micro_batch_rows": micro_rows, "f32_logits_bytes_per_device": logits}
  resident = {"train_state_bytes": device_bytes(state),
              "ref_params_bytes": device_bytes(params) if step_config.loss.beta > 0 else 0}
  return {"train": (fn, (state, batch), {})}, shapes, resident


# Program name -> its builder (the sampler programs come from one builder).
PROGRAMS = {"prefill": sampler_programs, "decode": sampler_programs, "train": train_program,
            "prover_prefill": sampler_programs}


def program_names(config: ConfigDict) -> list[str]:
  """The programs a run of `config` compiles: prover_prefill only with a fixed meta-prover."""
  return [n for n in PROGRAMS if n != "prover_prefill" or config.probe.meta_prover]


def matmul_params(mc: ModelConfig) -> int:
  """Weights that multiply activations, per token (embedding lookups excluded, lm head in)."""
  D, H, K, E, F = (mc.hidden_size, mc.num_heads, mc.num_kv_heads, mc.head_dim,
                   mc.intermediate_size)
  return mc.num_layers * (2 * D * H * E + 2 * D * K * E + 3 * D * F) + D * mc.vocab_size


def analytic_flops(mc: ModelConfig, rows: int, q_len: int, kv_len: int) -> int:
  """Forward FLOPs of `rows` sequences of `q_len` new tokens attending to `kv_len` entries."""
  attention = 4 * mc.num_layers * q_len * kv_len * mc.num_heads * mc.head_dim
  return rows * (2 * matmul_params(mc) * q_len + attention)


def resolve(config: ConfigDict, topology_name: str):
  """(topology, model config, mesh) of a run; ValueError names a bad input."""
  topology = aot_topologies.parse(topology_name)
  aot_topologies.quiet_libtpu_env(topology)
  jax.config.update("jax_platforms", "cpu")  # Never grab a local accelerator: we only compile.
  mc = model_config(config.model.path)
  return topology, mc, build_mesh(config, topology)


def report(config: ConfigDict, topology: aot_topologies.Topology, mc: ModelConfig,
           mesh) -> dict[str, Any]:
  """Compiles every program for the slice and returns the JSON report (see module docstring).

  Each program compiles in a child process (`_in_child`): a TPU compiler crash (a failed
  CHECK aborts the process) then costs that program's figures, not the whole report.
  """
  dtype = jnp.dtype(config.model.dtype)
  _, ss = sampler_programs(mc, config, mesh, dtype)
  _, ts, resident = train_program(mc, config, mesh, dtype)
  # A fixed meta-prover's params, in the sampling layout, for the whole run (counted apart
  # from the reference's even where the loop can place the reference's there).
  resident["prover_params_bytes"] = (device_bytes(abstract_params(mc, mesh, SAMPLE_RULES, dtype))
                                     if config.probe.meta_prover else 0)
  kept = (resident["train_state_bytes"] + resident["ref_params_bytes"]
          + resident["prover_params_bytes"])
  programs = {name: _in_child(name) for name in program_names(config)}
  need = {k: p["total_bytes"] or 0 for k, p in programs.items()}  # None: refused, size unknown
  sampler_need = max(need.get(k, 0) for k in ("prefill", "decode", "prover_prefill"))
  phases = {"sampling": kept + sampler_need,
            "training": (need["train"] + resident["ref_params_bytes"]
                         + resident["prover_params_bytes"])}
  peak_phase = max(phases, key=phases.get)
  compiled = all(p["compiled"] for p in programs.values())
  hbm = topology.generation.hbm_bytes_per_chip
  T = ts["len"] - 1  # token_logprobs runs the model on tokens[:, :-1]
  out = {
      "topology": topology.name, "libtpu_topology": topology.libtpu_name,
      "device_kind": mesh.devices.flat[0].device_kind, "num_devices": topology.num_chips,
      "mesh": dict(mesh.shape), "config": config.name, "model": {
          "path": config.model.path, "architecture": mc.architecture, "dtype": str(dtype),
          "layers": mc.num_layers, "hidden": mc.hidden_size, "ffn": mc.intermediate_size,
          "heads": mc.num_heads, "kv_heads": mc.num_kv_heads, "head_dim": mc.head_dim,
          "vocab": mc.vocab_size, "params": int(sum(
              math.prod(s.shape) for s in jax.tree.leaves(param_specs(mc), is_leaf=is_spec)))},
      "sampler_shapes": ss, "train_shapes": ts,
      "programs": programs,
      "resident_bytes": resident, "phase_peak_bytes": phases, "peak_phase": peak_phase,
      "peak_bytes_per_device": int(phases[peak_phase]), "hbm_bytes_per_device": hbm,
      # A program the compiler refused contributes only the size its error names (a lower bound).
      "peak_is_lower_bound": not compiled,
      "fits": bool(compiled and phases[peak_phase] <= hbm),
      "flops_per_step": 3 * analytic_flops(mc, ts["rows"], T, T),
      "decode_flops_per_token_step": analytic_flops(mc, ss["rollout_rows"], 1, ss["cache_len"]),
      "prefill_flops": analytic_flops(mc, ss["prompt_rows"], ss["prompt_len"], ss["prompt_len"]),
      "prover_prefill_flops": (analytic_flops(mc, ss["rollout_rows"], ss["prover_prefill_len"],
                                              ss["prover_prefill_len"])
                               if "prover_prefill_len" in ss else 0),
  }
  out["predicted"] = aot_predict.predict(out, topology)
  return out


def compile_one(config: ConfigDict, mc: ModelConfig, mesh, name: str) -> dict[str, Any]:
  """Compiles program `name` of `PROGRAMS`; its memory stats, or why the compiler refused it."""
  fn, args, kwargs = PROGRAMS[name](mc, config, mesh, jnp.dtype(config.model.dtype))[0][name]
  return _compile(fn, *args, mesh=mesh, **kwargs)


def _in_child(name: str) -> dict[str, Any]:
  """`compile_one(name)` in `python -m mrt_jax.aot <this process's flags> --program=name`."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "mrt_jax.aot", *sys.argv[1:], f"--program={name}"],
                        capture_output=True, text=True)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode == 0 and lines:
    return json.loads(lines[-1])
  why = [l for l in proc.stderr.splitlines() if "Check failed" in l or "Error" in l]
  return {"compiled": False, "total_bytes": None, "compile_seconds":
          round(time.perf_counter() - start, 1),
          "error": f"the compiler process died (exit {proc.returncode}): "
                   f"{(why or proc.stderr.splitlines()[-1:] or ['no stderr'])[0].strip()}"}


def main(config: ConfigDict) -> None:
  try:
    if not _TOPOLOGY.value:
      raise ValueError("--topology is required, e.g. --topology=v5p-64 (v4-N, v5p-N, v5e-N, "
                       "v6e-N)")
    topology, mc, mesh = resolve(config, _TOPOLOGY.value)
  except ValueError as e:  # Bad input: one line naming it, no traceback.
    print(f"FATAL aot: {e}", file=sys.stderr)
    sys.exit(2)
  if _PROGRAM.value:
    print(json.dumps(compile_one(config, mc, mesh, _PROGRAM.value)), flush=True)
    return
  out = report(config, topology, mc, mesh)
  print(aot_predict.summary(out["predicted"]), flush=True)
  print(json.dumps(out), flush=True)
  if not out["fits"]:
    sys.exit(1)


if __name__ == "__main__":
  run(main)
