"""Small-scale reproduction of MRT vs GRPO on the CPU demo's task; writes docs/RESULTS.md.

  nice -n 5 python experiments/reproduce_demo.py   # the full run, ~40 min (docs/RESULTS.md)
  python experiments/reproduce_demo.py --quick               # smoke run, a few minutes

1. Builds the demo's assets once (configs/demo_cpu.py): elimination problems, tiny tokenizer,
   tiny model, SFT warm start, held-out test problems.
2. Evaluates the warm start with `python -m mrt_jax.evaluate`, once per seed (the seed moves
   only the evaluation's sampling).
3. Trains `grpo` and `mrt` from that warm start with `python -m mrt_jax.launch` for every seed:
   the same prompts per step, samples per prompt, steps and optimizer; they differ only in
   `advantage.estimator` (MRT also samples the forced-answer probes its progress needs).
4. Evaluates every final checkpoint with `python -m mrt_jax.evaluate` on the test problems.
5. Writes the table (mean and 95% interval over seeds), per-seed figures, timings and plots.

Everything goes under --out; a step whose output exists is skipped, so an interrupted run
resumes with the same command. All runs share a persistent XLA compilation cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mrt_jax import config_cli  # noqa: E402  (after the path: runnable from a checkout)
from experiments import summarize  # noqa: E402

CONFIG = "configs/demo_cpu.py"
METHODS = ("grpo", "mrt")
# Evaluation of every run: held-out problems, n samples, m probes per budget cut, a budget grid
# dense enough to read tokens-to-accuracy off J(c); no "Wait" extrapolation (not compared here).
EVAL = ["eval.num_problems=32", "eval.num_samples=4", "eval.num_probes=4",
        "eval.budgets=(32,64,96,128,160,192)", "eval.extrapolation_budgets=()",
        "eval.num_resamples=200"]
# The reproduction's model: about 1-10M parameters is the aim. 4 layers and FFN 384 at the
# demo's width 128 make 0.84M. configs/demo_cpu.py keeps 2 layers and FFN 256 (0.35M): that warm
# start builds in half the time (5 min against 9.5 on 2 cores), so the demo fits its 10 minutes.
MODEL = ["demo.num_layers=4", "demo.intermediate_size=384"]
# --quick: a tiny warm start and 3 RL steps, 8 problems, 2 seeds (checks the pipeline only).
QUICK = ["demo.sft_trace_steps=20", "demo.sft_answer_steps=10", "demo.sft_problems=64",
         "train.total_steps=3",
         "eval.num_problems=8", "eval.num_samples=2", "eval.num_probes=2"]


def _overrides(args, out: str) -> list[str]:
  assets = os.path.join(out, "assets")
  return [f"model.path={assets}/model", f"model.tokenizer_path={assets}/tokenizer",
          f"data.path={assets}/train.jsonl", f"eval.data_path={assets}/test.jsonl",
          "train.eval_every=0", *MODEL, *EVAL, *(QUICK if args.quick else []),
          *([] if args.quick else ["train.total_steps=%d" % args.steps]), *args.set]


def _run(cmd: list[str], log: str, env: dict) -> float:
  """Runs a command with its output in `log`; returns its wall time; raises on failure."""
  start = time.perf_counter()
  with open(log, "w", encoding="utf-8") as f:
    proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
  return time.perf_counter() - start


def _flags(overrides: list[str]) -> list[str]:
  return [f"--config={CONFIG}"] + [f"--config.{o}" for o in overrides]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="smoke run (minutes, not a result)")
  parser.add_argument("--out", default=None, help="work directory (default /tmp/mrt_jax/"
                      "reproduce, or reproduce_quick with --quick)")
  parser.add_argument("--docs", default=None, help="where RESULTS.md and the PNGs go (default "
                      "docs/; <out>/docs with --quick)")
  parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0..7; "
                      "0,1 with --quick)")
  parser.add_argument("--steps", type=int, default=60, help="RL steps (default 60; the demo "
                      "config's 20 with --quick's 3)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="extra config override for every run (repeatable), e.g. "
                      "--set=probe.num_probes=8; the warm start must not depend on it")
  args = parser.parse_args(argv)
  out = os.path.abspath(args.out or ("/tmp/mrt_jax/reproduce_quick" if args.quick
                                     else "/tmp/mrt_jax/reproduce"))
  docs = os.path.abspath(args.docs or (os.path.join(out, "docs") if args.quick
                                       else os.path.join(ROOT, "docs")))
  seeds = [int(s) for s in (args.seeds or ("0,1" if args.quick else "0,1,2,3,4,5,6,7")
                            ).split(",")]
  os.makedirs(out, exist_ok=True)
  overrides = _overrides(args, out)
  config = config_cli.load_config(CONFIG, overrides)
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
             JAX_COMPILATION_CACHE_DIR=os.path.join(out, "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  timings_path = os.path.join(out, "timings.json")
  timings = json.load(open(timings_path)) if os.path.exists(timings_path) else {}

  def step(name: str, done: str, cmd: list[str]) -> None:
    if os.path.exists(done):
      print(f"[skip] {name}: {done} exists", flush=True)
      return
    print(f"[run ] {name}", flush=True)
    timings[name] = _run(cmd, os.path.join(out, f"{name.replace('/', '_')}.log"), env)
    print(f"[done] {name} in {timings[name]:.0f}s", flush=True)
    with open(timings_path, "w") as f:
      json.dump(timings, f, indent=2)

  build = ("from mrt_jax import config_cli; from mrt_jax.train import demo; "
           f"demo.build_assets(config_cli.load_config({CONFIG!r}, {overrides!r}))")
  step("warm_start", os.path.join(config.model.path, "demo.json"),
       [sys.executable, "-c", build])
  for seed in seeds:
    base_out = os.path.join(out, "base", f"seed{seed}")
    step(f"base/seed{seed}", os.path.join(base_out, "eval.json"),
         [sys.executable, "-m", "mrt_jax.evaluate", *_flags(overrides + [f"seed={seed}"]),
          f"--checkpoint={config.model.path}", f"--out={base_out}"])
  for method in METHODS:
    for seed in seeds:
      work = os.path.join(out, method, f"seed{seed}")
      run = overrides + [f"seed={seed}", f"advantage.estimator={method}", f"workdir={work}"]
      step(f"{method}/seed{seed}/train",
           os.path.join(work, "checkpoints", str(config.train.total_steps)),
           [sys.executable, "-m", "mrt_jax.launch", *_flags(run)])
      step(f"{method}/seed{seed}/eval", os.path.join(work, "eval", "final", "eval.json"),
           [sys.executable, "-m", "mrt_jax.evaluate", *_flags(run),
            f"--checkpoint={work}/checkpoints", f"--out={work}/eval/final"])
  write_results(out, docs, seeds, config, timings, args.quick)


def write_results(out: str, docs: str, seeds, config, timings: dict, quick: bool) -> None:
  """docs/RESULTS.md's measured part and the PNGs (see `summarize`)."""
  from mrt_jax.evaluation.runner import eval_problems
  problems = {p["id"]: p for p in eval_problems(config)[0]}
  base_dirs = [os.path.join(out, "base", f"seed{s}") for s in seeds]
  # Target success for tokens-to-target: 90% of the lower of the two trained methods' mean J
  # at the largest budget, so every trained run's curve can reach it; the figure is how many
  # thinking tokens each model spends (under budget forcing) to get there.
  finals = {}
  for method in METHODS:
    finals[method] = sum(json.load(open(os.path.join(out, method, f"seed{s}", "eval", "final",
                                                     "eval.json")))["budget_forcing"]["J"][-1]
                         for s in seeds) / len(seeds)
  target = 0.9 * min(finals.values())
  figures = {"warm start": [summarize.run_figures(d, problems, target) for d in base_dirs]}
  curves = {"warm start": []}
  for method in METHODS:
    works = [os.path.join(out, method, f"seed{s}") for s in seeds]
    figures[method] = [summarize.run_figures(os.path.join(w, "eval", "final"), problems, target)
                       for w in works]
    curves[method] = [[json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
                      for w in works]
  pngs = summarize.plot_all(figures, curves, docs, "results_")
  record = {"seeds": list(seeds), "target_accuracy": target, "timings_s": timings,
            "figures": {k: [{n: v for n, v in f.items() if not isinstance(v, list)}
                            for f in runs] for k, runs in figures.items()},
            "train_probes_per_step": {m: [sum(l["num_probes"] for l in c) / len(c) for c in
                                          curves[m]] for m in METHODS}}
  os.makedirs(docs, exist_ok=True)
  with open(os.path.join(docs, "results.json"), "w") as f:
    json.dump(record, f, indent=2, default=float)
  measured = summarize.markdown(figures, seeds, target, timings, config, pngs, docs, quick,
                                parameters=summarize.count_parameters(config.model.path))
  splice(os.path.join(docs, "RESULTS.md"), measured)
  print(f"wrote {docs}/RESULTS.md, results.json and the plots", flush=True)


BEGIN = "<!-- measured: begin (written by experiments/reproduce_demo.py; edits here are lost) -->"
END = "<!-- measured: end -->"


def splice(path: str, measured: str) -> None:
  """Replaces the measured section of `path` (created if missing), keeping the text around it."""
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else (
      "# Results: MRT vs GRPO on the CPU demo's task\n\n")
  if BEGIN not in text:
    text += f"{BEGIN}\n{END}\n"
  head, rest = text.split(BEGIN, 1)
  tail = rest.split(END, 1)[1] if END in rest else "\n"
  with open(path, "w", encoding="utf-8") as f:
    f.write(f"{head}{BEGIN}\n{measured}{END}{tail}")


if __name__ == "__main__":
  main()
