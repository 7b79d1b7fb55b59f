"""A full MRT step (rollouts + probes + update) against a plain GRPO step, same G, same model.

  python benchmarks/learner.py            # the default: 8 blocks, 4 probes per boundary
  python benchmarks/learner.py --quick    # smoke run

Both steps sample the same prompts with the same tiny random Qwen2 model (which never stops, so
every trace is exactly `--completion` tokens; the segmenter ignores "</think>", which the random
model writes now and then, so fixed-chunk segmentation gives exactly `--blocks` blocks). Probe
answers never stop either: each is exactly `--answer` tokens (a trained model's stop earlier:
6.0 on average in the CPU demo's runs). The MRT step adds m probes at each of the K + 1
boundaries, forked from the rollouts' KV cache in place (b_0 once per prompt). Times are
medians over `--repeats` steps after one warm-up step (compiles excluded), GRPO and MRT steps
interleaved. Prints the time split (rollout / verify / probes / update) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrt_jax import models  # noqa: E402
from mrt_jax.data import elimination  # noqa: E402
from mrt_jax.learner import losses  # noqa: E402
from mrt_jax.learner.logprobs import token_logprobs  # noqa: E402
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer  # noqa: E402
from mrt_jax.learner.state import create_state  # noqa: E402
from mrt_jax.learner.step import StepConfig, make_train_step  # noqa: E402
from mrt_jax.models import tokenizer as tokenizer_lib  # noqa: E402
from mrt_jax.mrt.segment import SegmentConfig  # noqa: E402
from mrt_jax.rewards import verify_batch  # noqa: E402
from mrt_jax.sampling import Sampler  # noqa: E402
from mrt_jax.sampling.buckets import pow2_at_least  # noqa: E402
from mrt_jax.train.rollout import ExperienceConfig, collect, learner_batch  # noqa: E402


def _args():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--prompts", type=int, default=8)
  p.add_argument("--generations", type=int, default=4, help="G")
  p.add_argument("--completion", type=int, default=256, help="tokens per rollout")
  p.add_argument("--blocks", type=int, default=8, help="K blocks per rollout")
  p.add_argument("--probes", type=int, default=4, help="m probes per boundary")
  p.add_argument("--answer", type=int, default=16, help="tokens a probe writes")
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--quick", action="store_true")
  a = p.parse_args()
  if a.quick:
    a.prompts, a.completion, a.hidden, a.layers, a.repeats, a.answer = 2, 32, 32, 2, 1, 4
  return a


def main():
  a = _args()
  with tempfile.TemporaryDirectory() as tmp:
    tokenizer_lib.build_tiny_tokenizer(tmp, elimination.tokenizer_corpus(50), vocab_size=384)
    tok = tokenizer_lib.load_tokenizer(tmp)
  config = models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": 384, "hidden_size": a.hidden,
      "intermediate_size": 3 * a.hidden, "num_hidden_layers": a.layers,
      "num_attention_heads": max(2, a.hidden // 64), "num_key_value_heads": 2,
      "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096})
  params = models.init_params(config, jax.random.key(0))
  problems = elimination.generate_problems(a.prompts, 0)
  prompts = [tokenizer_lib.render_prompt(tok, p["problem"]) for p in problems]
  suffix = tuple(tok.encode("\n\nTime is up.\n</think>\n\n", add_special_tokens=False))
  reward_fn = lambda r, t, i: verify_batch("elimination", r, t, i)
  decode = lambda ids: tok.decode(list(ids))
  sampler = Sampler(config)
  optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-5, total_steps=100))
  step_fn = make_train_step(config, StepConfig(loss=losses.LossConfig()), optimizer)
  logprobs = jax.jit(token_logprobs, static_argnums=0)
  state = create_state(params, optimizer)

  def one_step(cfg, seed):
    nonlocal state
    exp = collect(sampler, state.params, prompts, problems, cfg, reward_fn, decode, seed)
    t = time.perf_counter()
    batch = learner_batch(exp, pow2_at_least(max(len(p) + len(c) for p, c in
                                                 zip(exp.prompts, exp.completions))))
    batch["old_logprobs"], _ = logprobs(config, state.params, batch["tokens"])
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics["loss"])
    return {"rollout": exp.stats["time_rollout_s"], "verify": exp.stats["time_verify_s"],
            "probes": exp.stats["time_probes_s"] + exp.stats["time_segment_s"],
            "update": time.perf_counter() - t, "num_probes": exp.stats["num_probes"]}

  common = dict(num_generations=a.generations, max_completion_len=a.completion, temperature=1.0,
                top_p=1.0, probe_temperature=0.6, probe_top_p=0.95, probe_max_answer_len=a.answer,
                suffix_tokens=suffix, stop_token_ids=(), alpha=1.0,
                segment=SegmentConfig(method="fixed_chunk", chunk_tokens=a.completion // a.blocks,
                                      end_think="<no end tag>"))
  cfgs = {"grpo": ExperienceConfig(num_probes=0, estimator="grpo", **common),
          "mrt": ExperienceConfig(num_probes=a.probes, estimator="mrt", **common)}
  for cfg in cfgs.values():
    one_step(cfg, 0)  # Warm-up: compiles.
  runs = {name: [] for name in cfgs}
  for s in range(a.repeats):  # Interleaved, so drifts in machine load hit both alike.
    for name, cfg in cfgs.items():
      runs[name].append(one_step(cfg, s + 1))
  results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
             for name, rs in runs.items()}
  total = {n: sum(r[k] for k in ("rollout", "verify", "probes", "update"))
           for n, r in results.items()}
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"device: {jax.devices()[0].device_kind}, model: {num_params / 1e6:.1f}M params, "
        f"{a.prompts} prompts x G={a.generations}, {a.completion} tokens, K={a.blocks} blocks, "
        f"m={a.probes} probes/boundary, {a.answer} answer tokens")
  print(f"{'step':6} {'rollout s':>10} {'verify s':>9} {'probes s':>9} {'update s':>9} "
        f"{'total s':>8} {'probes':>7}")
  for n, r in results.items():
    print(f"{n:6} {r['rollout']:10.3f} {r['verify']:9.3f} {r['probes']:9.3f} {r['update']:9.3f} "
          f"{total[n]:8.3f} {int(r['num_probes']):7d}")
  print(f"MRT step / GRPO step: {total['mrt'] / total['grpo']:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
  main()
