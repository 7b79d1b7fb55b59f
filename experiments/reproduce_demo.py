"""The reproduction: GRPO against seven MRT recipes on the CPU demo's task; writes docs/RESULTS.md.

  nice -n 10 python experiments/reproduce_demo.py           # the study (docs/RESULTS.md)
  python experiments/reproduce_demo.py --quick              # smoke run, minutes, not a result
  python experiments/reproduce_demo.py --arms=grpo,mrt_likelihood --seeds=0,1,2

1. Builds the demo's assets once (configs/demo_cpu.py): elimination problems, tiny tokenizer,
   tiny model, held-out test problems, and an SFT warm start trained longer than the demo's
   (`WARM_START`).
2. Measures the training regime at the warm start (`regime`): G samples per training problem
   at the rollout temperature, J at every block boundary from the likelihood meta-prover.
3. Evaluates the warm start once per seed (the seed moves only the evaluation's sampling).
4. Trains every arm of `ARMS` from that warm start with `python -m mrt_jax.launch` for every
   seed: the same prompts per step, samples per prompt, steps and optimizer; the arms differ only
   in their overrides (the advantage estimator and the meta-prover it reads).
5. Evaluates every final checkpoint on the held-out problems (`EVAL`: J(c) and regret from the
   likelihood meta-prover, no probe noise), then again with J from the warm start's meta-prover
   (`FIXED_PROVER`).
6. Writes docs/results.json, the measured section of docs/RESULTS.md and the plots.

Everything goes under --out; a step whose output exists is skipped, so an interrupted run
resumes with the same command. All runs share a persistent XLA compilation cache.

docs/results.json (schema 2; a figure is {"mean", "low", "high", "per_seed": [...], "n"}: the
mean and 95% Student-t interval over the seeds whose value is finite, n of them, and every
seed's value, null where not finite, e.g. a run that never reaches the target):
  schema          2.
  seeds           the seeds, in the order of every per_seed list.
  arms            arm -> figure name -> figure; the names are `summarize.run_figures`' scalar
                  keys: pass@1, thinking_tokens, completion_tokens, normalized_regret,
                  episode_normalized_regret, normalized_regret_task, normalized_regret_left,
                  tokens_to_target, blocks, wasteful_blocks, rechecks_before_last_new,
                  rechecks_after_last_new, real_clues, harmful_traces, true_strikes,
                  unclosed_traces, progress_new, progress_recheck, progress_madeup,
                  progress_spread, flat_new, flat_recheck, num_correct, num_samples;
                  normalized_regret_fixed_prover (set by the study); and
                  train_probe_answers_per_step (the meta-prover's answers per training step,
                  sampled or scored).
  warm_start      figure name -> figure, the warm start's evaluations (one per seed).
  pooled_pass@1   arm (and "warm_start") -> {"p", "low", "high", "n"}: every sample of every
                  seed pooled, Wilson 95% interval.
  regime          `summarize.regime_figures` at the warm start, plus "settings" (problems,
                  samples per problem, temperature).
  paired          MRT arm -> figure (pass@1, normalized_regret, normalized_regret_fixed_prover,
                  tokens_to_target, thinking_tokens) -> {"mean", "low", "high", "n"}: arm −
                  grpo seed by seed (the same warm start, seed and prompts), over the n seeds
                  where both are finite.
  against_warm_start  arm -> {"regret_lower", "fixed_prover_regret_lower", "pass@1_lower",
                  "n"}: in how many of the n seeds the final model's regret (its own J; J from
                  the warm start's meta-prover), pass@1 is below the warm start's (same seed).
  target          {"accuracy": the J of tokens_to_target, "checks": MRT arm ->
                  `summarize.target_checks` against grpo, "reached": any arm reached it,
                  "reached_by": those arms}.
  settings        the shared run settings, each arm's description and overrides, the model's
                  parameter count, the evaluation's settings.
  timings_s       step name -> wall seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mrt_jax import config_cli  # noqa: E402  (after the path: runnable from a checkout)
from experiments import summarize  # noqa: E402

CONFIG = "configs/demo_cpu.py"
BASELINE = "grpo"
WARM_START_PATH = "<warm_start>"  # in an arm's overrides: the study's warm start (model.path)
# How the flat-price arms measure J: the policy's likelihood, the frozen warm start's, the task's.
_LIKELIHOOD = ("advantage.estimator=mrt", "probe.estimator=likelihood")
_FROZEN = (*_LIKELIHOOD, f"probe.meta_prover={WARM_START_PATH}")
_TASK = ("advantage.estimator=mrt", "probe.estimator=task", "probe.task_prover=elimination")
_TASK_LEFT = ("advantage.estimator=mrt", "probe.estimator=task",
              "probe.task_prover=elimination_left")


def _priced(j_overrides: tuple[str, ...], norm: str, alpha: float) -> tuple[str, ...]:
  """An arm's overrides: J as `j_overrides` measure it, progress normalized by the flat-price
  `norm` (τ = 0.02) at `alpha`."""
  return (*j_overrides, f"advantage.progress_norm={norm}", "advantage.flat_threshold=0.02",
          f"advantage.alpha={alpha}")


# Arm name -> (description, config overrides). Every other setting is shared by all arms.
ARMS = {
    "grpo": ("GRPO: the group-normalized outcome on every token",
             ("advantage.estimator=grpo",)),
    "mrt_sampled": ("MRT-dense: outcome + α·progress, J from m = 8 sampled forced answers",
                    ("advantage.estimator=mrt", "probe.estimator=sampled",
                     "probe.num_probes=8")),
    "mrt_likelihood": ("MRT-dense: outcome + α·progress, J from the likelihood meta-prover",
                       ("advantage.estimator=mrt", "probe.estimator=likelihood")),
    "termination": ("the MRT authors' recipe: r − J_0, the group baseline replaced by forcing "
                    "the answer at the prompt, J_0 from m = 8 sampled answers",
                    ("advantage.estimator=termination", "probe.estimator=sampled",
                     "probe.num_probes=8")),
    "mrt_center3": ("MRT-dense with progress centered in the group, a price on every block "
                    "that makes less progress than the group's mean (α = 3, likelihood J)",
                    ("advantage.estimator=mrt", "probe.estimator=likelihood",
                     "advantage.progress_norm=center", "advantage.alpha=3.0")),
    "mrt_center4": ("the same at α = 4",
                    ("advantage.estimator=mrt", "probe.estimator=likelihood",
                     "advantage.progress_norm=center", "advantage.alpha=4.0")),
    "mrt_frozen": ("MRT-dense with J from the frozen warm start's forced answers "
                   "(`probe.meta_prover`; likelihood J): progress prices the traces, not the "
                   "drift of the policy's own forced answers",
                   ("advantage.estimator=mrt", "probe.estimator=likelihood",
                    f"probe.meta_prover={WARM_START_PATH}")),
    "mrt_frozen_center3": ("the same with progress centered in the group at α = 3",
                           ("advantage.estimator=mrt", "probe.estimator=likelihood",
                            f"probe.meta_prover={WARM_START_PATH}",
                            "advantage.progress_norm=center", "advantage.alpha=3.0")),
    "mrt_flat3": ("MRT-dense with a price on flat blocks of right traces: a block that moves J "
                  "by at most 0.02 in a trace that ends right is charged the group's mean block "
                  "progress; blocks that make progress and traces that fail keep plain progress "
                  "(α = 3, likelihood J)", _priced(_LIKELIHOOD, "flat_price", 3.0)),
    "mrt_flat6": ("the same at α = 6", _priced(_LIKELIHOOD, "flat_price", 6.0)),
    "mrt_stop3": ("the same price, except on a flat block's first token (the decision to go on "
                  "thinking): charged only when nothing from there on makes progress (α = 3, "
                  "likelihood J)", _priced(_LIKELIHOOD, "flat_price_stop", 3.0)),
    "mrt_frozen_stop3": ("the same with J from the frozen warm start's forced answers "
                         "(`probe.meta_prover`)", _priced(_FROZEN, "flat_price_stop", 3.0)),
    "mrt_frozen_stop6": ("the same at α = 6", _priced(_FROZEN, "flat_price_stop", 6.0)),
    "mrt_task": ("MRT-dense with J from the task's exact meta-prover (a guess among the "
                 "letters the trace's checked clues leave; `probe.estimator=task`): progress "
                 "without the model's misjudgements", _TASK),
    "mrt_task_stop3": ("the same J with the price on flat blocks of right traces "
                       "(`flat_price_stop`, α = 3): with the exact J a block is flat exactly "
                       "when it re-checks a clue", _priced(_TASK, "flat_price_stop", 3.0)),
    "mrt_task_stop6": ("the same at α = 6", _priced(_TASK, "flat_price_stop", 6.0)),
    "mrt_left": ("MRT-dense with J from the letters the trace's last \"Left\" line keeps "
                 "(`probe.task_prover=elimination_left`): a block that strikes the hidden "
                 "letter makes negative progress", _TASK_LEFT),
    "mrt_left_stop3": ("the same J with the price on flat blocks of right traces "
                       "(`flat_price_stop`, α = 3)", _priced(_TASK_LEFT, "flat_price_stop", 3.0)),
    "mrt_left_stop3_open": ("the same, with the last block of a completion that never closes "
                            "its thinking given the outcome advantage alone "
                            "(`advantage.open_block=outcome`)",
                            (*_priced(_TASK_LEFT, "flat_price_stop", 3.0),
                             "advantage.open_block=outcome")),
}
# The arms the study runs by default (docs/results.json); the others are run with --arms and
# their own --docs (RESULTS.md, "An exact meta-prover, and a price on flat blocks").
DEFAULT_ARMS = ("grpo", "mrt_sampled", "mrt_likelihood", "termination", "mrt_center3",
                "mrt_center4", "mrt_frozen", "mrt_frozen_center3")
# The study's warm start: the demo's SFT recipe trained longer (2,000 trace steps, the
# stop-or-continue tokens weighted 8) and chosen among 3 SFT candidates by the demo's check,
# so that it is mostly right and still wasteful (the regime the paper is about; RESULTS.md,
# "The regime at the warm start"). The demo itself keeps its 10-minute recipe.
WARM_START = ("demo.sft_trace_steps=2000", "demo.sft_decision_weight=8",
              "demo.num_warm_starts=3")
# Evaluation of every run on the held-out problems: 64 problems × n = 2 samples make 1024
# samples per arm over 8 seeds, a pooled pass@1 interval of about ±0.03; J(c) from the
# likelihood meta-prover at a budget grid dense enough to read tokens-to-target off it.
EVAL = ("eval.j_estimator=likelihood", "eval.num_problems=64", "eval.num_samples=2",
        "eval.budgets=(32,64,96,128,160,192)", "eval.extrapolation_budgets=()",
        "eval.num_resamples=200")
# Each final model is evaluated a second time with J from the warm start's meta-prover
# (`eval.meta_prover`): the same sampled traces (the same seed), J(c) the warm start's forced
# answers on them, so that a change in regret is the traces' alone, not the drift of the trained
# model's own forced answers. Its regret is `normalized_regret_fixed_prover`; the warm start's
# is its own normalized_regret (it is its own fixed meta-prover).
FIXED_PROVER = "fixed_prover"
REGIME_PROBLEMS = 64  # training problems sampled G times each for the regime figures
# --quick: a tiny warm start and 3 RL steps, 8 problems, 2 seeds (checks the pipeline only).
QUICK = ("demo.sft_trace_steps=20", "demo.sft_answer_steps=10", "demo.sft_problems=64",
         "demo.check_problems=8",
         "train.total_steps=3", "eval.num_problems=8")


def overrides(args, out: str) -> list[str]:
  """The overrides every run shares: the assets under `out`, EVAL, WARM_START, --quick, --steps,
  --set (later ones win)."""
  assets = os.path.join(out, "assets")
  return [f"model.path={assets}/model", f"model.tokenizer_path={assets}/tokenizer",
          f"data.path={assets}/train.jsonl", f"eval.data_path={assets}/test.jsonl",
          "train.eval_every=0", *EVAL, *WARM_START, *(QUICK if args.quick else ()),
          *([] if args.quick else ["train.total_steps=%d" % args.steps]), *args.set]


def arm_overrides(arm: str, config) -> list[str]:
  """The arm's overrides, WARM_START_PATH replaced by the study's warm start."""
  return [o.replace(WARM_START_PATH, config.model.path) for o in ARMS[arm][1]]


def regime_overrides(config, out: str, quick: bool) -> list[str]:
  """Evaluation overrides that sample the warm start as training does, on training problems."""
  r = config.rollout
  return [f"eval.data_path={os.path.join(out, 'assets', 'train.jsonl')}",
          f"eval.num_problems={8 if quick else REGIME_PROBLEMS}",
          f"eval.num_samples={r.num_generations}", f"eval.temperature={r.temperature}",
          f"eval.top_p={r.top_p}", "seed=0"]


def _run(cmd: list[str], log: str, env: dict) -> float:
  """Runs a command with its output in `log`; returns its wall time; raises on failure."""
  start = time.perf_counter()
  with open(log, "w", encoding="utf-8") as f:
    proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
  return time.perf_counter() - start


def flags(overrides_: list[str]) -> list[str]:
  return [f"--config={CONFIG}"] + [f"--config.{o}" for o in overrides_]


class Steps:
  """Runs named steps once each: a step whose `done` file exists is skipped (resume); wall
  times are kept in <out>/timings.json."""

  def __init__(self, out: str, env: dict):
    self.out, self.env = out, env
    self.path = os.path.join(out, "timings.json")
    self.timings = json.load(open(self.path)) if os.path.exists(self.path) else {}

  def __call__(self, name: str, done: str, cmd: list[str]) -> None:
    if os.path.exists(done):
      print(f"[skip] {name}: {done} exists", flush=True)
      return
    print(f"[run ] {name}", flush=True)
    self.timings[name] = _run(cmd, os.path.join(self.out, f"{name.replace('/', '_')}.log"),
                              self.env)
    print(f"[done] {name} in {self.timings[name]:.0f}s", flush=True)
    with open(self.path, "w") as f:
      json.dump(self.timings, f, indent=2)


def environment(out: str, cache: bool = True) -> dict:
  """The runs' environment: CPU, the checkout on the path, a shared compilation cache."""
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=os.path.join(out, "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return env


def study_parser(doc: str, name: str, seeds: str, quick_seeds: str, writes: str
                 ) -> argparse.ArgumentParser:
  """The options every study script shares: --quick, --out, --docs, --seeds, --set.

  `doc` is the script's docstring (its first line describes the command); `name` names the
  work directory; `seeds` and `quick_seeds` are the default --seeds; `writes` says what --docs
  receives. `study_paths` reads the parsed arguments.
  """
  parser = argparse.ArgumentParser(description=doc.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="smoke run (minutes, not a result)")
  parser.add_argument("--out", default=None, help=f"work directory (default /tmp/mrt_jax/{name}, "
                      f"or {name}_quick with --quick)")
  parser.add_argument("--docs", default=None, help=f"where {writes} go (default docs/; "
                      "<out>/docs with --quick)")
  parser.add_argument("--seeds", default=None, help=f"comma-separated seeds (default {seeds}; "
                      f"{quick_seeds} with --quick)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="extra config override for every run (repeatable), e.g. "
                      "--set=advantage.alpha=2.0")
  parser.set_defaults(study=(name, seeds, quick_seeds))
  return parser


def study_paths(args) -> tuple[str, str, list[int]]:
  """(work directory, docs directory, seeds) of a `study_parser` command line."""
  name, seeds, quick_seeds = args.study
  out = os.path.abspath(args.out or f"/tmp/mrt_jax/{name}{'_quick' if args.quick else ''}")
  docs = os.path.abspath(args.docs or (os.path.join(out, "docs") if args.quick
                                       else os.path.join(ROOT, "docs")))
  return out, docs, [int(x) for x in (args.seeds or (quick_seeds if args.quick else seeds)
                                      ).split(",")]


def main(argv=None) -> None:
  parser = study_parser(__doc__, "reproduce", "0,1,2,3,4,5,6,7", "0,1",
                        "RESULTS.md, results.json and the PNGs")
  parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated arms "
                      f"of {list(ARMS)} (default {','.join(DEFAULT_ARMS)}; {BASELINE} is the "
                      "target's baseline)")
  parser.add_argument("--steps", type=int, default=40, help="RL steps (default 40; 3 with "
                      "--quick)")
  args = parser.parse_args(argv)
  arms = args.arms.split(",")
  unknown = [a for a in arms if a not in ARMS]
  if unknown:
    parser.error(f"--arms: {unknown} unknown; expected names of {list(ARMS)}")
  out, docs, seeds = study_paths(args)
  os.makedirs(out, exist_ok=True)
  shared = overrides(args, out)
  config = config_cli.load_config(CONFIG, shared)
  arm_configs = {a: config_cli.load_config(CONFIG, shared + arm_overrides(a, config))
                 for a in arms}
  step = Steps(out, environment(out))
  build = ("from mrt_jax import config_cli; from mrt_jax.train import demo; "
           f"demo.build_assets(config_cli.load_config({CONFIG!r}, {shared!r}))")
  step("warm_start", os.path.join(config.model.path, "demo.json"),
       [sys.executable, "-c", build])
  regime = shared + regime_overrides(config, out, args.quick)
  step("regime", os.path.join(out, "regime", "eval.json"),
       [sys.executable, "-m", "mrt_jax.evaluate", *flags(regime),
        f"--checkpoint={config.model.path}", f"--out={out}/regime"])
  for seed in seeds:
    base_out = os.path.join(out, "base", f"seed{seed}")
    step(f"base/seed{seed}", os.path.join(base_out, "eval.json"),
         [sys.executable, "-m", "mrt_jax.evaluate", *flags(shared + [f"seed={seed}"]),
          f"--checkpoint={config.model.path}", f"--out={base_out}"])
  for seed in seeds:  # seed by seed, so a study cut short has every arm on its first seeds
    for arm in arms:
      work = os.path.join(out, arm, f"seed{seed}")
      run = shared + arm_overrides(arm, config) + [f"seed={seed}", f"workdir={work}"]
      step(f"{arm}/seed{seed}/train",
           os.path.join(work, "checkpoints", str(arm_configs[arm].train.total_steps)),
           [sys.executable, "-m", "mrt_jax.launch", *flags(run)])
      step(f"{arm}/seed{seed}/eval", os.path.join(work, "eval", "final", "eval.json"),
           [sys.executable, "-m", "mrt_jax.evaluate", *flags(run),
            f"--checkpoint={work}/checkpoints", f"--out={work}/eval/final"])
  for seed in seeds:  # the same traces' J from the warm start's meta-prover (μ held fixed)
    for arm in arms:
      work = os.path.join(out, arm, f"seed{seed}")
      run = shared + arm_overrides(arm, config) + [f"seed={seed}", f"workdir={work}",
                                           f"eval.meta_prover={config.model.path}"]
      step(f"{arm}/seed{seed}/eval_fixed_prover",
           os.path.join(work, "eval", FIXED_PROVER, "eval.json"),
           [sys.executable, "-m", "mrt_jax.evaluate", *flags(run),
            f"--checkpoint={work}/checkpoints", f"--out={work}/eval/{FIXED_PROVER}"])
  record = write_results(out, docs, seeds, arms, config, study_timings(step.timings, arms),
                         args.quick, regime_config=config_cli.load_config(CONFIG, regime))
  for arm, pooled in record["pooled_pass@1"].items():
    print(f"pooled pass@1 {arm}: {pooled['p']:.3f} [{pooled['low']:.3f}, {pooled['high']:.3f}] "
          f"over {pooled['n']} samples", flush=True)
  print("target: " + (f"reached by {', '.join(record['target']['reached_by'])}"
                      if record["target"]["reached"] else "not reached"), flush=True)


def _figure(values) -> dict:
  """{"mean", "low", "high", "per_seed", "n"} of one figure over seeds (JSON-safe)."""
  finite = [float(v) for v in values if v is not None and math.isfinite(v)]
  mean, low, high = summarize.interval(finite)
  safe = lambda v: v if v is not None and math.isfinite(v) else None
  return {"mean": safe(mean), "low": safe(low), "high": safe(high),
          "per_seed": [safe(float(v)) for v in values], "n": len(finite)}


def figure_record(runs) -> dict:
  """Figure name -> `_figure` over the per-seed `run_figures` (their scalar keys)."""
  keys = [k for k, v in runs[0].items() if not isinstance(v, (list, tuple)) and
          getattr(v, "ndim", 0) == 0]
  return {k: _figure([r[k] for r in runs]) for k in keys}


def study_timings(timings: dict, arms) -> dict:
  """The steps of this study: the shared ones (warm start, regime, the warm start's
  evaluations) and the given arms', not those of other arms run in the same directory."""
  return {k: v for k, v in timings.items() if k.split("/")[0] not in ARMS or
          k.split("/")[0] in arms}


def results_record(figures, curves, seeds, target, regime, settings, timings) -> dict:
  """docs/results.json (module docstring) from the per-seed figures of the warm start and arms.

  Args:
    figures: {"warm start": per-seed run_figures, arm: per-seed run_figures, ...}.
    curves: arm -> per-seed metrics.jsonl lines.
    seeds: the seeds, in order.
    target: the J target of tokens_to_target.
    regime: `summarize.regime_figures` at the warm start (with its settings).
    settings: the shared settings (JSON-able).
    timings: step name -> seconds.
  """
  arms = [a for a in figures if a != "warm start"]
  record_arms = {}
  for arm in arms:
    record_arms[arm] = figure_record(figures[arm])
    record_arms[arm]["train_probe_answers_per_step"] = _figure(
        [sum(l.get("probe_answers", 0) for l in c) / max(len(c), 1) for c in curves[arm]])
  checks = {arm: summarize.target_checks(figures[BASELINE], figures[arm])
            for arm in arms if arm != BASELINE and BASELINE in figures}
  reached = [arm for arm, c in checks.items() if c["reached"]]
  pooled = {arm: summarize.pooled_pass_at_1(figures[arm]) for arm in arms}
  pooled["warm_start"] = summarize.pooled_pass_at_1(figures["warm start"])
  safe = lambda v: v if not isinstance(v, float) or math.isfinite(v) else None
  paired = {arm: {k: {f: safe(v) for f, v in d.items()}
                  for k, d in summarize.paired_differences(figures[BASELINE], figures[arm]).items()}
            for arm in checks}
  return {"schema": 2, "seeds": list(seeds), "arms": record_arms,
          "warm_start": figure_record(figures["warm start"]), "pooled_pass@1": pooled,
          "paired": paired,
          "against_warm_start": {arm: summarize.against_warm_start(figures["warm start"],
                                                                   figures[arm]) for arm in arms},
          "regime": {k: safe(v) for k, v in regime.items()},
          "target": {"accuracy": target,
                     "checks": {a: {k: safe(v) for k, v in c.items()} for a, c in checks.items()},
                     "reached": bool(reached), "reached_by": reached},
          "settings": settings, "timings_s": timings}


def write_results(out: str, docs: str, seeds, arms, config, timings: dict, quick: bool,
                  regime_config) -> dict:
  """docs/results.json, RESULTS.md's measured part and the PNGs; returns the results record."""
  from mrt_jax.evaluation.runner import eval_problems
  problems = {p["id"]: p for p in eval_problems(config)[0]}
  train_problems = {p["id"]: p for p in eval_problems(regime_config)[0]}
  # Target for tokens-to-target: 90% of the lowest of the arms' mean J at the largest budget,
  # so every trained run's curve can reach it; the figure is how many thinking tokens each
  # model spends (under budget forcing) to get there.
  final_j = lambda arm, s: json.load(open(os.path.join(
      out, arm, f"seed{s}", "eval", "final", "eval.json")))["budget_forcing"]["J"][-1]
  target = 0.9 * min(sum(final_j(a, s) for s in seeds) / len(seeds) for a in arms)
  figures = {"warm start": [summarize.run_figures(os.path.join(out, "base", f"seed{s}"),
                                                  problems, target) for s in seeds]}
  for f in figures["warm start"]:
    f["normalized_regret_fixed_prover"] = f["normalized_regret"]
  curves = {"warm start": []}
  for arm in arms:
    works = [os.path.join(out, arm, f"seed{s}") for s in seeds]
    figures[arm] = [summarize.run_figures(os.path.join(w, "eval", "final"), problems, target)
                    for w in works]
    for f, w in zip(figures[arm], works):
      f["normalized_regret_fixed_prover"] = summarize.fixed_prover_regret(
          os.path.join(w, "eval", FIXED_PROVER), os.path.join(w, "eval", "final"))
    curves[arm] = [[json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
                   for w in works]
  regime = summarize.regime_figures(os.path.join(out, "regime", "samples.jsonl"), train_problems)
  r = regime_config.eval
  regime["settings"] = {"num_problems": r.num_problems, "num_samples": r.num_samples,
                        "temperature": r.temperature, "j_estimator": r.j_estimator}
  parameters = summarize.count_parameters(config.model.path)
  record = results_record(figures, curves, seeds, target, regime,
                          settings(config, arms, parameters, quick), timings)
  pngs = summarize.plot_all(figures, curves, docs, "results_")
  os.makedirs(docs, exist_ok=True)
  with open(os.path.join(docs, "results.json"), "w") as f:
    json.dump(record, f, indent=2, allow_nan=False)
  splice(os.path.join(docs, "RESULTS.md"),
         markdown(figures, record, config, pngs, docs, quick, parameters))
  print(f"wrote {docs}/RESULTS.md, results.json and the plots", flush=True)
  return record


def settings(config, arms, parameters: int, quick: bool) -> dict:
  """What every arm shares, and how the arms differ (results.json "settings")."""
  t, r, e, d = config.train, config.rollout, config.eval, config.demo
  return {"quick": quick, "config": CONFIG, "steps": t.total_steps,
          "prompts_per_step": t.global_batch_prompts, "num_generations": r.num_generations,
          "rollout_temperature": r.temperature, "max_completion_len": r.max_completion_len,
          "learning_rate": config.optimizer.learning_rate, "kl_beta": config.loss.kl_beta,
          "alpha": config.advantage.alpha,
          "eval": {"num_problems": e.num_problems, "num_samples": e.num_samples,
                   "temperature": e.temperature, "j_estimator": e.j_estimator,
                   "budgets": list(e.budgets)},
          "task": {"num_candidates": d.num_candidates, "num_clues": d.num_clues,
                   "waste_prob": d.waste_prob},
          "model": {"num_layers": d.num_layers, "hidden_size": d.hidden_size,
                    "intermediate_size": d.intermediate_size, "parameters": parameters},
          "warm_start": {"num_candidates": d.num_warm_starts, "sft_trace_steps": d.sft_trace_steps,
                         "sft_answer_steps": d.sft_answer_steps,
                         "sft_decision_weight": d.sft_decision_weight},
          "arms": {a: {"description": ARMS[a][0], "overrides": list(ARMS[a][1])} for a in arms}}


def _regime_lines(regime: dict) -> list[str]:
  s, f = regime["settings"], lambda k: regime[k]
  fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"
  return [
      f"At the warm start, sampled as training samples ({s['num_problems']} training problems × "
      f"G = {f('group_size')}, temperature {s['temperature']}, J at every block boundary from "
      f"the {s['j_estimator']} meta-prover):",
      "",
      f"- groups whose G outcomes are all equal (GRPO's advantage is 0): {f('all_equal'):.3f} "
      f"(all correct {f('all_correct'):.3f}, all wrong {f('all_wrong'):.3f})",
      f"- pass@1 at that temperature: {f('pass@1'):.3f}",
      f"- wasteful (re-check) blocks per trace: {f('wasteful_blocks'):.2f} "
      f"({f('rechecks_before_last_new'):.2f} before the trace's last new clue, "
      f"{f('rechecks_after_last_new'):.2f} after it)",
      f"- measured ΔJ of a block: new clue {fmt(f('progress_new'))}, re-check "
      f"{fmt(f('progress_recheck'))}, made-up clue {fmt(f('progress_madeup'))} (spread "
      f"{f('progress_spread'):.3f})"]


def markdown(figures, record: dict, config, pngs, docs: str, quick: bool,
             parameters: int) -> str:
  """The measured section of RESULTS.md: settings, arms, table, regime, target, runs, plots."""
  t, r, e, d = config.train, config.rollout, config.eval, config.demo
  rel = lambda p: os.path.relpath(p, docs)
  timings, seeds = record["timings_s"], record["seeds"]
  arms = [a for a in figures if a != "warm start"]
  pooled = record["pooled_pass@1"]
  lines = [
      "" if not quick else "**Quick smoke run: too small to mean anything.**\n",
      f"Seeds {', '.join(map(str, seeds))}; every arm starts from the same warm start and trains "
      f"{t.total_steps} steps × {t.global_batch_prompts} prompts × G = {r.num_generations} "
      f"rollouts (temperature {r.temperature}, at most {r.max_completion_len} tokens), lr "
      f"{config.optimizer.learning_rate}, KL β = {config.loss.kl_beta}, α = "
      f"{config.advantage.alpha} where progress enters (unless the arm sets it). Evaluation: "
      f"{e.num_problems} held-out problems × n = {e.num_samples} samples (temperature "
      f"{e.temperature}), J(c) from the "
      f"{e.j_estimator} meta-prover at budgets 0, {', '.join(str(b) for b in e.budgets)} and at "
      f"every block boundary. Task: {d.num_candidates} letters, {d.num_clues} clues, waste "
      f"probability {d.waste_prob} in the warm start's data. Warm start: the best of "
      f"{d.num_warm_starts} SFT candidates by the demo's check, each {d.sft_trace_steps} trace "
      f"steps (stop-or-continue tokens weighted {d.sft_decision_weight}) and "
      f"{d.sft_answer_steps} answer steps. Model: Qwen2-style, "
      f"{d.num_layers} layers, hidden {d.hidden_size}, FFN {d.intermediate_size}, "
      f"{parameters / 1e6:.2f}M parameters. Wall time of the whole run: "
      f"{sum(timings.values()) / 60:.1f} min.",
      "",
      "Arms:",
      "",
      *[f"- `{a}`: {ARMS[a][0]} (`{' '.join(ARMS[a][1])}`)" for a in arms],
      "",
      f"Mean [95% interval over seeds]. Target for *tokens to target*: J = "
      f"{record['target']['accuracy']:.3f}, 90% of the lowest of the arms' mean J at the "
      "largest budget.",
      "",
      summarize.table(figures),
      "",
      "pass@1 pooled over every sample of every seed [Wilson 95% interval]: " + "; ".join(
          f"{a.replace('_', ' ') if a == 'warm_start' else a} {p['p']:.3f} [{p['low']:.3f}, "
          f"{p['high']:.3f}] (n = {p['n']})" for a, p in pooled.items()),
      "",
      f"Paired against {BASELINE}, seed by seed (the same warm start, seed and prompts; mean "
      f"[95% interval over the paired seeds]):",
      "",
      summarize.paired_table(record["paired"], BASELINE, len(seeds)),
      "",
      "Against the warm start's evaluation with the same seed: " + "; ".join(
          f"{a} lowers regret in {w['regret_lower']} of {w['n']} seeds (with the warm start's "
          f"meta-prover in {w['fixed_prover_regret_lower']}) and pass@1 in "
          f"{w['pass@1_lower']}" for a, w in record["against_warm_start"].items()) + ".",
      "",
      *_regime_lines(record["regime"]),
      "",
      f"The reproduction's target, each MRT arm against {BASELINE}:",
      "",
      summarize.target_lines(record["target"]["checks"], BASELINE),
      "",
      "Every run:",
      "",
      summarize.per_seed(figures, seeds),
      "",
      "Wall time per step of the run (s): " + ", ".join(
          f"{k} {v:.0f}" for k, v in timings.items()),
      "",
      *[f"![{k}]({rel(p)})" for k, p in pngs.items()],
  ]
  return "\n".join(lines) + "\n"


BEGIN = "<!-- measured: begin (written by experiments/reproduce_demo.py; edits here are lost) -->"
END = "<!-- measured: end -->"


def splice(path: str, text: str, begin: str = BEGIN, end: str = END) -> None:
  """Replaces what lies between the `begin` and `end` lines of `path` with `text`, keeping the
  rest; a file without them (or a missing file) gets them appended."""
  body = open(path, encoding="utf-8").read() if os.path.exists(path) else (
      "# Results: MRT vs GRPO on the CPU demo's task\n\n")
  if begin not in body:
    body += f"{begin}\n{end}\n"
  head, rest = body.split(begin, 1)
  tail = rest.split(end, 1)[1] if end in rest else "\n"
  with open(path, "w", encoding="utf-8") as f:
    f.write(f"{head}{begin}\n{text}{end}{tail}")


if __name__ == "__main__":
  main()
