"""A lower bound of one RL step's time on a TPU slice, from the AOT report of `mrt_jax.aot`.

Every phase costs at least the slower of its compute and its HBM traffic at the chip's published
peaks (`aot_topologies.GENERATIONS`: bf16 FLOP/s and HBM bytes/s per chip), all chips busy:
- sampling: the prefill (analytic FLOPs; bytes: the compiled program's footprint, each byte
  touched once), then one decode step per new token of the completion bucket (every row running
  to rollout.max_completion_len). A decode step does the analytic FLOPs of one token for every
  row and reads at least the compiled decode program's arguments: the sampling-layout params
  and the KV cache, whose every slot the attention reads; with a fixed meta-prover
  (`probe.meta_prover`), its prefill of every rollout (analytic FLOPs; bytes its footprint);
- log-probs: π_old's (and π_ref's when β > 0) forward pass over the train batch;
- training: the train step with each layer recomputed in the backward pass (layer remat:
  4 forward passes' worth of FLOPs where a step without remat does 3), or its compiled
  footprint over the HBM bandwidth if that is slower.
Left out, so the real step is slower: the meta-prover probes' sampling (MRT), interconnect
traffic (FSDP all-gathers, tensor-parallel reductions), host work (segmentation, verification)
and any idle chip.

MFU (model FLOPs utilization): the train step's model FLOPs (3 × forward, no recompute) over
the predicted time × chips × peak; `train_step_mfu` counts the train step alone, `rl_step_mfu`
the whole RL step.
"""

from __future__ import annotations

from typing import Any

from mrt_jax.aot_topologies import Topology

# Forward passes' worth of FLOPs in a train step: forward, the layer's recomputation, backward
# (2 forwards' worth: gradients of activations and of weights).
REMAT_FORWARDS = 4
MODEL_FORWARDS = 3


def _roofline(flops: float, num_bytes: float, chips: int, topology: Topology) -> float:
  """Seconds of a phase: FLOPs spread over every chip, bytes per chip, at the peaks."""
  gen = topology.generation
  return max(flops / (chips * gen.peak_flops_per_chip), num_bytes / gen.hbm_bytes_per_second)


def predict(report: dict[str, Any], topology: Topology) -> dict[str, Any]:
  """Predicted seconds per phase and MFU of an RL step (see the module docstring).

  Args:
    report: `mrt_jax.aot.report`'s dict (programs, shapes, analytic FLOPs, resident bytes).
    topology: the slice it was compiled for.

  Returns:
    {"sampling_s", "prefill_s", "decode_step_s", "decode_steps", "prover_prefill_s" (0 without
    a fixed meta-prover), "logprobs_s", "train_s",
    "step_s" (their sum), "train_step_mfu", "rl_step_mfu", "peak_flops_per_chip",
    "hbm_bytes_per_second", "bound" (per phase: "compute" or "memory")}; a program the
    compiler refused contributes its compute term only.
  """
  chips = topology.num_chips
  gen = topology.generation
  programs = report["programs"]
  bytes_of = lambda name, key: programs[name].get(key) or 0
  forward = report["flops_per_step"] / MODEL_FORWARDS
  steps = report["sampler_shapes"]["new_tokens"]
  phases = {
      "prefill": (report["prefill_flops"], bytes_of("prefill", "total_bytes")),
      "decode_step": (report["decode_flops_per_token_step"],
                      bytes_of("decode", "argument_bytes")),
      "train": (REMAT_FORWARDS * forward, bytes_of("train", "total_bytes")),
  }
  if "prover_prefill" in programs:
    phases["prover_prefill"] = (report["prover_prefill_flops"],
                                bytes_of("prover_prefill", "total_bytes"))
  seconds = {k: _roofline(f, b, chips, topology) for k, (f, b) in phases.items()}
  bound = {k: "compute" if f / (chips * gen.peak_flops_per_chip) >= b / gen.hbm_bytes_per_second
           else "memory" for k, (f, b) in phases.items()}
  passes = 2 if report["resident_bytes"]["ref_params_bytes"] else 1
  logprobs = _roofline(passes * forward, 0, chips, topology)
  prover = seconds.get("prover_prefill", 0.0)
  sampling = seconds["prefill"] + steps * seconds["decode_step"] + prover
  step = sampling + logprobs + seconds["train"]
  peak = chips * gen.peak_flops_per_chip
  return {
      "peak_flops_per_chip": gen.peak_flops_per_chip,
      "hbm_bytes_per_second": gen.hbm_bytes_per_second,
      "prefill_s": seconds["prefill"], "decode_step_s": seconds["decode_step"],
      "decode_steps": steps, "prover_prefill_s": prover, "sampling_s": sampling,
      "logprobs_s": logprobs,
      "train_s": seconds["train"], "step_s": step, "bound": bound,
      "train_step_mfu": report["flops_per_step"] / (seconds["train"] * peak),
      "rl_step_mfu": report["flops_per_step"] / (step * peak),
  }


def summary(predicted: dict[str, Any]) -> str:
  """One human-readable line of `predict`'s figures."""
  p = predicted
  return (f"predicted RL step >= {p['step_s']:.1f} s: sampling {p['sampling_s']:.1f} s "
          f"(prefill {p['prefill_s']:.2f} s + {p['decode_steps']} decode steps x "
          f"{p['decode_step_s'] * 1e3:.2f} ms, {p['bound']['decode_step']}-bound"
          + (f", meta-prover prefill {p['prover_prefill_s']:.2f} s" if p["prover_prefill_s"]
             else "") + "), log-probs "
          f"{p['logprobs_s']:.1f} s, train {p['train_s']:.1f} s; MFU <= "
          f"{p['train_step_mfu']:.0%} (train step), {p['rl_step_mfu']:.0%} (RL step)")
