"""A full MRT step (rollouts + probes + update) against a plain GRPO step, same G, same model.

  python benchmarks/learner.py            # the default: 8 blocks, 4 probes per boundary
  python benchmarks/learner.py --quick    # smoke run

Three steps: GRPO (no J), MRT with the sampled meta-prover (m answers per boundary) and MRT with
the likelihood meta-prover (the reference answer scored by teacher forcing at every boundary,
one forward pass, no decoding).

All steps sample the same prompts with the same tiny random Qwen2 model (which never stops, so
every trace is exactly `--completion` tokens; the segmenter ignores "</think>", which the random
model writes now and then, so fixed-chunk segmentation gives exactly `--blocks` blocks). Probe
answers never stop either: each is exactly `--answer` tokens (a trained model's stop earlier:
6.0 on average in the CPU demo's runs). The MRT step adds m probes at each of the K + 1
boundaries, forked from the rollouts' KV cache in place (b_0 once per prompt). Times are
medians over `--repeats` steps after one warm-up step (compiles excluded), GRPO and MRT steps
interleaved. Prints the time split (rollout / verify / probes / update) and the ratios.

Noise of progress: on the traces of one step, p = J_j − J_{j−1} is estimated 5 times with
different probe seeds; printed is the mean over blocks of the standard deviation of p across
the 5 estimates, for the likelihood prover and for sampled answers with m = 8. The random model
never writes a correct answer, so the sampled verdicts there come from a stand-in verifier
(the first answer token is even: J near 1/2, the sampled estimator's worst case).

The last line is one JSON object of the headline figures.
"""

from __future__ import annotations

import argparse
import json
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
from mrt_jax.mrt.meta_prover import (J_ESTIMATORS, AnswerTemplate, Cuts,  # noqa: E402
                                     ProverSettings)
from mrt_jax.mrt.segment import SegmentConfig, segment, stack_segmentations  # noqa: E402
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
  suffix_text = "\n\nTime is up.\n</think>\n\n"
  suffix = tuple(tok.encode(suffix_text, add_special_tokens=False))
  answer = AnswerTemplate("\\boxed{{{answer}}}", tok.eos_token_id,
                          lambda text: tok.encode(text, add_special_tokens=False))
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
          "mrt": ExperienceConfig(num_probes=a.probes, estimator="mrt", **common),
          "mrt_lik": ExperienceConfig(num_probes=0, estimator="mrt", j_estimator="likelihood",
                                      answer=answer, **common)}
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
  print(f"{'step':8} {'rollout s':>10} {'verify s':>9} {'probes s':>9} {'update s':>9} "
        f"{'total s':>8} {'probes':>7}")
  for n, r in results.items():
    print(f"{n:8} {r['rollout']:10.3f} {r['verify']:9.3f} {r['probes']:9.3f} {r['update']:9.3f} "
          f"{total[n]:8.3f} {int(r['num_probes']):7d}")
  spread = _progress_spread(sampler, params, prompts, problems, common, answer, a)
  figures = {"mrt_sampled_over_grpo": round(total["mrt"] / total["grpo"], 3),
             "mrt_likelihood_over_grpo": round(total["mrt_lik"] / total["grpo"], 3),
             "progress_spread_likelihood": spread["likelihood"],
             "progress_spread_sampled_m8": spread["sampled"]}
  print(f"MRT (sampled, m={a.probes}) step / GRPO step: {figures['mrt_sampled_over_grpo']:.2f}x "
        "(target <= 1.3x)")
  print(f"MRT (likelihood) step / GRPO step: {figures['mrt_likelihood_over_grpo']:.2f}x "
        "(target <= 1.05x)")
  print(f"spread of p over 5 estimations of the same traces: likelihood "
        f"{spread['likelihood']:.4f}, sampled m=8 {spread['sampled']:.4f}")
  print(json.dumps(figures))


def _progress_spread(sampler, params, prompts, problems, common, answer, a) -> dict:
  """Mean over blocks of the std of p across 5 estimations on the same traces (docstring)."""
  G = a.generations
  out = sampler.generate(params, prompts, max_new_tokens=a.completion, temperature=1.0,
                         num_samples=G, seed=99, keep_cache=True)
  segs = [segment(t, ["x"] * len(t), common["segment"]) for t in out.tokens]
  stack = stack_segmentations(segs)
  B, N1 = stack.boundaries_BxN1.shape
  rows = [(i, j) for i in range(B) for j in range(N1) if stack.boundary_mask_BxN1[i, j]]
  cuts = Cuts([i for i, _ in rows],
              [len(prompts[i // G]) + int(stack.boundaries_BxN1[i, j]) for i, j in rows],
              [problems[i // G] for i, _ in rows])
  stand_in = lambda recs, texts, ids: np.array([float(len(t) > len(common["suffix_tokens"]) and
                                                      t[len(common["suffix_tokens"])] % 2 == 0)
                                                for t in ids])
  spread = {}
  for name, m in (("likelihood", 0), ("sampled", 8)):
    settings = ProverSettings(common["suffix_tokens"], m, common["probe_max_answer_len"],
                              common["probe_temperature"], common["probe_top_p"], (), answer)
    p_RxBxN = []
    for r in range(5):
      j_U, _ = J_ESTIMATORS[name].fn(sampler, params, out.cache, cuts, settings, stand_in,
                                     lambda ids: "", 1000 + r)
      j_BxN1 = np.zeros((B, N1))
      j_BxN1[tuple(np.array(rows).T)] = j_U
      p_RxBxN.append(np.diff(j_BxN1, axis=1))
    real_BxN = stack.boundary_mask_BxN1[:, 1:]
    spread[name] = round(float(np.std(np.array(p_RxBxN), axis=0)[real_BxN].mean()), 4)
  return spread


if __name__ == "__main__":
  main()
