"""Sampler speed, side by side with its peers, measured in one run on this machine.

1. Generation: tokens/s of `mrt_jax.sampling` vs `transformers` `generate` (PyTorch CPU) on the
   same random Qwen2 checkpoint (~19M params), batch 16, prompt 64, 256 new tokens, T = 1.
2. Long tail: 64 sequences whose lengths follow a log-normal (median a quarter of the
   2,048-token budget, sigma 1, capped at 2,048; prompt 64, T = 1), each row's length forced by
   its own budget so that the workload is the same in every run: useful (generated) tokens/s of
   the phased sampler (growing windows, finished rows leaving the batch) vs the static batch
   (`Sampler(phased=False)`: every row over the whole bucket until the longest ends); and the
   phased sampler keeping the cache (`keep_cache=True`, as an MRT rollout does to fork its
   probes: finished rows are parked outside the working batch) vs the same static batch.
3. Probes: 8 traces of 512 tokens, 8 boundaries each, 4 probes per boundary, an 8-token
   termination suffix and 32 answer tokens: forking from the traces' KV cache (prefilling the
   traces once, included in the time) vs re-prefilling every prefix + suffix (the same jitted
   sampler, tight prompt bucket, each prefix prefilled once and shared by its 4 probes).

Each measurement is the best of `--repeats` timed runs after one warm-up run (compiles are not
timed); the sides of each ratio take turns (ours, peer, ours, peer, ...), so that the
machine's drift reaches both. XLA's CPU client uses every core the process may run on; torch
runs with each of `--threads` intra-op thread counts and the peer figure is its best (on a
loaded machine, OpenMP's spinning threads can make 2 threads several times slower than 1; run
both under the same `taskset` to give them the same cores).

  python benchmarks/sampler.py            # the figures in BENCHMARKS.md
  python benchmarks/sampler.py --quick    # smoke run (seconds)
  python benchmarks/sampler.py --parts=longtail --tail-budget=512   # one workload, shorter

The last line is one JSON object of the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from benchmarks.timing import best_time, best_times  # noqa: E402
from mrt_jax import models, sampling  # noqa: E402
from mrt_jax.models.transformer import unstack_params  # noqa: E402

# ~19M params: 8 layers, width 384, 6 query / 2 kv heads of 64, FFN 1024, vocab 8192, untied.
MODEL = dict(vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
             num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=2048,
             rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, pad_token_id=0)

FULL = dict(batch=16, prompt=64, new=256, traces=8, trace_len=512, boundaries=8, probes=4,
            suffix=8, answer=32, tail_rows=64, tail_budget=2048)
QUICK = dict(batch=4, prompt=16, new=32, traces=2, trace_len=64, boundaries=2, probes=2,
             suffix=4, answer=8, tail_rows=8, tail_budget=64)


def build_model(directory: str):
  torch.manual_seed(0)
  model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**MODEL))
  model.eval()
  model.generation_config.eos_token_id = None  # generate the full budget on both sides
  model.save_pretrained(directory)
  config, params = models.load_hf(directory)
  return model, config, params


def bench_generate(model, config, params, s: dict, repeats: int,
                   threads: list[int]) -> tuple[float, dict[int, float]]:
  rng = np.random.default_rng(0)
  prompts = rng.integers(3, config.vocab_size, size=(s["batch"], s["prompt"]))
  sampler = sampling.Sampler(config)

  def ours():
    result = sampler.generate(params, prompts.tolist(), max_new_tokens=s["new"],
                              temperature=1.0, seed=0)
    assert all(len(t) == s["new"] for t in result.tokens)

  def theirs(new=s["new"]):
    with torch.no_grad():
      out = model.generate(torch.tensor(prompts), attention_mask=torch.ones(prompts.shape),
                           do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                           max_new_tokens=new, pad_token_id=0)
    assert out.shape == (s["batch"], s["prompt"] + new)

  def with_threads(n, fn):
    def run():
      torch.set_num_threads(n)
      fn()
    return run

  tokens = s["batch"] * s["new"]
  fns = {"ours": ours, **{n: with_threads(n, theirs) for n in threads}}
  warmups = {n: with_threads(n, lambda: theirs(8)) for n in threads}
  seconds = best_times(fns, repeats, warmups)
  return tokens / seconds["ours"], {n: tokens / seconds[n] for n in threads}


def matmul_ceiling(params, s: dict, repeats: int, steps: int = 32) -> float:
  """Tokens/s of decode steps that are nothing but their weight matmuls (XLA:CPU, f32).

  Each step multiplies `batch` rows through every layer's q/k/v/o and MLP projections and the
  LM head, chained so that none is skipped or hoisted; no attention, norms, cache, sampling or
  loop bookkeeping. No change to the cache, the attention or the decode loop can make a step
  cheaper than this, so `ceiling / transformers` bounds the generation ratio on this machine.
  """
  layers = unstack_params(params)["layers"]
  head_DxV = params["lm_head"]["kernel"]

  @jax.jit
  def run(x_BxD, layers, head_DxV):
    def step(_, x_BxD):
      for p in layers:
        q_BxHxE = jnp.einsum("BD,DHE->BHE", x_BxD, p["q"])
        k_BxKxE = jnp.einsum("BD,DKE->BKE", x_BxD, p["k"])
        v_BxKxE = jnp.einsum("BD,DKE->BKE", x_BxD, p["v"])
        x_BxD = x_BxD + 1e-3 * jnp.einsum("BHE,HED->BD", q_BxHxE, p["o"])
        x_BxD = x_BxD + 1e-3 * (k_BxKxE.sum((1, 2)) + v_BxKxE.sum((1, 2)))[:, None]
        hidden_BxF = (x_BxD @ p["gate"]) * (x_BxD @ p["up"])
        x_BxD = x_BxD + 1e-3 * (hidden_BxF @ p["down"])
      return x_BxD + 1e-3 * (x_BxD @ head_DxV)[:, :x_BxD.shape[1]]
    return jax.lax.fori_loop(0, steps, step, x_BxD)

  x_BxD = jnp.ones((s["batch"], head_DxV.shape[0]), jnp.float32)
  seconds = best_time(lambda: run(x_BxD, layers, head_DxV).block_until_ready(), repeats)
  return s["batch"] * steps / seconds


def tail_lengths(rows: int, budget: int) -> np.ndarray:
  """Log-normal lengths: median budget / 4, sigma 1, in [1, budget]; the longest is `budget`."""
  rng = np.random.default_rng(2)
  lengths = np.exp(rng.normal(np.log(budget / 4), 1.0, size=rows)).round().astype(int)
  lengths = np.clip(lengths, 1, budget)
  lengths[np.argmax(lengths)] = budget
  return lengths


def bench_long_tail(config, params, s: dict, repeats: int
                    ) -> tuple[float, float, float, np.ndarray]:
  """Useful tokens/s of the phased sampler, of the phased sampler keeping the cache (as an MRT
  rollout does, to fork its probes), and of the static sampler on the long-tail workload."""
  lengths = tail_lengths(s["tail_rows"], s["tail_budget"])
  prompts = np.random.default_rng(3).integers(3, config.vocab_size,
                                              size=(s["tail_rows"], s["prompt"])).tolist()
  kwargs = dict(temperature=1.0, seed=0)

  def run(sampler, budgets, keep_cache=False):
    def go():
      result = sampler.generate(params, prompts, max_new_tokens=budgets.tolist(),
                                keep_cache=keep_cache, **kwargs)
      assert [len(t) for t in result.tokens] == budgets.tolist()
    return go

  phased = run(sampling.Sampler(config), lengths)
  kept = run(sampling.Sampler(config), lengths, keep_cache=True)
  static = run(sampling.Sampler(config, phased=False), lengths)

  def warm_static():
    """The static batch compiles one program whatever the lengths: warm it up on the same
    buckets with every row stopped at its first token (the phased one warms up on the real
    workload, whose lengths decide its phases)."""
    sampling.Sampler(config, phased=False).generate(
        params, prompts, max_new_tokens=lengths.tolist(), forced=[(0, [2])],
        stop_token_ids=[2], **kwargs)

  useful = int(lengths.sum())
  seconds = best_times(dict(phased=phased, kept=kept, static=static), repeats,
                       dict(static=warm_static))
  return (useful / seconds["phased"], useful / seconds["kept"], useful / seconds["static"],
          lengths)


def bench_probes(config, params, s: dict, repeats: int) -> tuple[float, float]:
  rng = np.random.default_rng(1)
  traces = rng.integers(3, config.vocab_size, size=(s["traces"], s["trace_len"])).tolist()
  suffix = rng.integers(3, config.vocab_size, size=s["suffix"]).tolist()
  step = s["trace_len"] // s["boundaries"]
  bounds = [step * (j + 1) for j in range(s["boundaries"])]
  probes = [sampling.Probe(i, b, suffix, s["probes"]) for i in range(s["traces"]) for b in bounds]
  kwargs = dict(max_new_tokens=s["answer"], temperature=0.6, top_p=0.95, seed=0)
  longest = s["trace_len"] + s["suffix"]
  fork_sampler = sampling.Sampler(config, prompt_buckets=(s["trace_len"],))
  # The re-prefill baseline gets one tight bucket (no padding waste beyond 8 tokens).
  naive_sampler = sampling.Sampler(config, prompt_buckets=(-(-longest // 8) * 8,))

  def fork():
    trunk = fork_sampler.prefill(params, traces)
    result = fork_sampler.fork(params, trunk, probes, **kwargs)
    assert len(result.tokens) == len(probes) * s["probes"]

  def reprefill():
    prompts = [traces[p.source][:p.boundary] + suffix for p in probes]
    result = naive_sampler.generate(params, prompts, num_samples=s["probes"], **kwargs)
    assert len(result.tokens) == len(probes) * s["probes"]

  answers = len(probes) * s["probes"] * s["answer"]
  seconds = best_times(dict(fork=fork, reprefill=reprefill), repeats)
  return answers / seconds["fork"], answers / seconds["reprefill"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run")
  parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement")
  parser.add_argument("--threads", default="1,2",
                      help="torch intra-op thread counts to try (comma-separated)")
  parser.add_argument("--parts", default="generate,probes,longtail",
                      help="workloads to measure (comma-separated)")
  parser.add_argument("--tail-budget", type=int, default=None,
                      help="the long-tail budget (default 2048; --quick 64)")
  args = parser.parse_args()
  threads = [int(n) for n in args.threads.split(",")]
  parts = set(args.parts.split(","))
  if parts - {"generate", "probes", "longtail"}:
    raise SystemExit(f"--parts: unknown {sorted(parts - {'generate', 'probes', 'longtail'})}; "
                     "expected generate, probes, longtail")
  s = dict(QUICK if args.quick else FULL)
  if args.tail_budget:
    s["tail_budget"] = args.tail_budget
  with tempfile.TemporaryDirectory() as directory:
    model, config, params = build_model(directory)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  print(f"Qwen2 random checkpoint: {num_params / 1e6:.1f}M params, f32; jax "
        f"{jax.__version__} on {jax.devices()[0].platform} ({len(os.sched_getaffinity(0))} cores), "
        f"torch {torch.__version__}, transformers {transformers.__version__}")
  rows, headline = [], {}
  if "generate" in parts:
    gen_ours, gen_peer = bench_generate(model, config, params, s, args.repeats, threads)
    print(f"generate: mrt_jax {gen_ours:.1f} tokens/s", flush=True)
    print("transformers generate tokens/s by torch threads: "
          + ", ".join(f"{n}: {v:.1f}" for n, v in gen_peer.items()))
    best = max(gen_peer, key=gen_peer.get)
    ceiling = matmul_ceiling(params, s, args.repeats)
    print(f"matmul-only decode steps (batch {s['batch']}, no attention/cache/sampling): "
          f"{ceiling:.1f} tokens/s = {ceiling / gen_peer[best]:.1f}x transformers, the most any "
          "decode loop on this machine's XLA:CPU dots can reach", flush=True)
    rows.append((f"generate: batch {s['batch']}, prompt {s['prompt']}, {s['new']} new, T=1 "
                 "(tokens/s)", gen_ours, f"transformers, {best} thr", gen_peer[best]))
    headline.update(generate_over_transformers=round(gen_ours / gen_peer[best], 2),
                    matmul_ceiling_over_transformers=round(ceiling / gen_peer[best], 2))
  if "longtail" in parts:
    tail_phased, tail_kept, tail_static, lengths = bench_long_tail(config, params, s,
                                                                   args.repeats)
    print(f"long-tail lengths: {len(lengths)} rows, median {int(np.median(lengths))}, mean "
          f"{lengths.mean():.0f}, max {lengths.max()} of a {s['tail_budget']}-token budget "
          f"({lengths.sum() / (len(lengths) * lengths.max()):.0%} of the static batch's "
          "row-steps are useful)", flush=True)
    rows.append((f"long tail: {s['tail_rows']} rows, prompt {s['prompt']}, log-normal lengths up "
                 f"to {s['tail_budget']}, T=1 (useful tokens/s)", tail_phased, "static batch",
                 tail_static))
    rows.append(("long tail as above, the cache kept for probes (an MRT rollout)", tail_kept,
                 "static batch", tail_static))
    headline.update(longtail_over_static=round(tail_phased / tail_static, 2),
                    longtail_cache_kept_over_static=round(tail_kept / tail_static, 2))
  if "probes" in parts:
    probe_ours, probe_naive = bench_probes(config, params, s, args.repeats)
    print(f"probes: fork {probe_ours:.1f}, re-prefill {probe_naive:.1f} answer tokens/s",
          flush=True)
    rows.append((f"probes: {s['traces']} traces x {s['trace_len']} tok, {s['boundaries']} "
                 f"boundaries x {s['probes']} probes, {s['answer']} answer tok (answer tokens/s)",
                 probe_ours, "re-prefill each prefix", probe_naive))
    headline.update(fork_over_reprefill=round(probe_ours / probe_naive, 2))
  print(f"| {'workload':<92} | {'mrt_jax':>9} | {'peer':<22} | {'peer value':>10} | ratio |")
  print(f"|{'-' * 94}|{'-' * 11}|{'-' * 24}|{'-' * 12}|-------|")
  for name, ours, peer, theirs in rows:
    print(f"| {name:<92} | {ours:>9.1f} | {peer:<22} | {theirs:>10.1f} | "
          f"{ours / theirs:>4.1f}x |")
  print(json.dumps(headline))

if __name__ == "__main__":
  main()
