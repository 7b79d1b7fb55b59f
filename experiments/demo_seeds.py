"""The whole CPU demo, warm start included, over several seeds: does training beat the warm start?

  nice -n 10 python experiments/demo_seeds.py                # seeds 0..9 (docs/RESULTS.md)
  python experiments/demo_seeds.py --quick                   # smoke run, not a result

For seed S it runs the README's first command as a new user would,
`python -m mrt_jax.launch --config=configs/demo_cpu.py`, with demo.seed = seed = S and every asset
(model, tokenizer, training and held-out problems) and the workdir under <out>/seedS: each seed
builds its own problems, tokenizer and SFT warm start, then trains and evaluates at step 0 (the
warm start) and at the end (`train.eval_every`). No compilation cache is shared, so each run's
wall time is a fresh machine's.

It writes docs/demo_seeds.json:
  seeds     the seeds.
  quick     whether this was a --quick smoke run; overrides: the --quick and --set overrides.
  runs      one per seed: {"seed", "wall_s" (the launch command, null if it ran in an earlier
            invocation without a record), "before" and "after": {"pass@1", "low", "high" (its
            bootstrap 95% interval over problems), "thinking_tokens", "normalized_regret",
            "num_problems", "num_samples"}, "warm_start": {"chosen", "check_pass@1" (one per
            candidate)} or null (one candidate)}; before is the step-0 evaluation, after the last;
            warm_start is the choice among SFT seeds recorded in the model's demo.json.
  summary   {"before", "after", "after_minus_before": figure -> {"mean", "low", "high"} (95%
            Student-t interval over seeds), "num_seeds", "regret_drops" (seeds whose regret
            falls), "pass@1_kept" (seeds whose after pass@1 is not below the before interval's
            low end), "improved" (both), "max_wall_s"}.
and the per-seed table into docs/RESULTS.md between the `BEGIN` / `END` markers. A seed whose
final evaluation exists is not rerun (resume with the same command).
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mrt_jax import config_cli  # noqa: E402  (after the path: runnable from a checkout)
from experiments import reproduce_demo, summarize  # noqa: E402

CONFIG = "configs/demo_cpu.py"
BEGIN = "<!-- demo seeds: begin (written by experiments/demo_seeds.py; edits here are lost) -->"
END = "<!-- demo seeds: end -->"
FIGURES = ("pass@1", "thinking_tokens", "normalized_regret")
# --quick: a tiny warm start and 2 RL steps (checks the pipeline only).
QUICK = ("demo.sft_trace_steps=20", "demo.sft_answer_steps=10", "demo.sft_problems=64",
         "demo.check_problems=8",
         "train.total_steps=2", "eval.num_problems=8")


def seed_overrides(out: str, seed: int, extra) -> list[str]:
  """The demo config's overrides for one seed: seeds, assets and workdir under <out>/seed<S>."""
  d = os.path.join(out, f"seed{seed}")
  return [f"demo.seed={seed}", f"seed={seed}", f"model.path={d}/model",
          f"model.tokenizer_path={d}/tokenizer", f"data.path={d}/train.jsonl",
          f"eval.data_path={d}/test.jsonl", f"workdir={d}/run", *extra]


def evaluations(workdir: str) -> tuple[dict, dict]:
  """(first, last) eval.json records of a run: workdir/eval/step_<N>/eval.json by step."""
  paths = sorted(glob.glob(os.path.join(workdir, "eval", "step_*", "eval.json")),
                 key=lambda p: int(os.path.basename(os.path.dirname(p))[len("step_"):]))
  if len(paths) < 2:
    raise FileNotFoundError(f"{workdir}/eval: {len(paths)} step_<N>/eval.json; expected the "
                            "warm start's (step 0) and the final one (train.eval_every > 0)")
  if not paths[0].endswith(os.path.join("step_0", "eval.json")):
    raise ValueError(f"{paths[0]}: the first evaluation is not step 0 (the warm start)")
  return tuple(json.load(open(p, encoding="utf-8")) for p in (paths[0], paths[-1]))


def side(record: dict) -> dict:
  """One evaluation's row: pass@1 with its interval, thinking tokens, normalized regret."""
  m = record["metrics"]
  low, high = m["pass@1_ci"]
  return {"pass@1": m["pass@1"], "low": low, "high": high,
          "thinking_tokens": m["mean_thinking_tokens"], "normalized_regret": m["normalized_regret"],
          "num_problems": record["num_problems"], "num_samples": record["num_samples"]}


def summary(runs) -> dict:
  """The over-seeds summary of `runs` (module docstring)."""
  stat = lambda values: {k: v if math.isfinite(v) else None  # n < 2 seeds: no interval
                         for k, v in zip(("mean", "low", "high"), summarize.interval(values))}
  out = {k: {f: stat([r[k][f] for r in runs]) for f in FIGURES} for k in ("before", "after")}
  out["after_minus_before"] = {f: stat([r["after"][f] - r["before"][f] for r in runs])
                               for f in FIGURES}
  drops = [r["after"]["normalized_regret"] < r["before"]["normalized_regret"] for r in runs]
  kept = [r["after"]["pass@1"] >= r["before"]["low"] for r in runs]
  walls = [r["wall_s"] for r in runs if r["wall_s"] is not None]
  out.update(num_seeds=len(runs), regret_drops=sum(drops), **{"pass@1_kept": sum(kept)},
             improved=sum(a and b for a, b in zip(drops, kept)),
             max_wall_s=max(walls) if walls else None)
  return out


def warm_start(model_dir: str) -> dict | None:
  """The choice among SFT seeds that the model's demo.json records: {"chosen", "check_pass@1"
  (per candidate)}, or None when it was built from one candidate."""
  with open(os.path.join(model_dir, "demo.json"), encoding="utf-8") as f:
    built = json.load(f)
  if "warm_starts" not in built:
    return None
  return {"chosen": built["chosen"],
          "check_pass@1": [e["check_pass@1"] for e in built["warm_starts"]]}


def _choice(w: dict | None) -> str:
  """A table cell: the chosen candidate (1-based) and every candidate's check pass@1."""
  if w is None:
    return "1 of 1"
  checks = ", ".join(f"{p:.3f}" for p in w["check_pass@1"])
  return f"{w['chosen'] + 1} of {len(w['check_pass@1'])} ({checks})"


def table(record: dict) -> str:
  """Markdown: one row per seed (before → after), then the summary line."""
  fmt = lambda s: f"{s['pass@1']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
  first = record["runs"][0]["after"]
  lines = ["**Quick smoke run: too small to mean anything.**\n" if record["quick"] else "",
           f"The whole demo (`python -m mrt_jax.launch --config={CONFIG}`, warm start included) "
           f"per seed; before = its step-0 evaluation (the warm start), after = its last; "
           f"{first['num_problems']} held-out problems × {first['num_samples']} samples each, "
           "pass@1 with its 95% bootstrap interval over problems; warm start = the SFT candidate kept "
           "(every candidate's check pass@1).", "",
           "| seed | warm start (check) | pass@1 before | pass@1 after | thinking tokens before → "
           "after | normalized regret before → after | wall time |",
           "|---|---|---|---|---|---|---|"]
  for r in record["runs"]:
    b, a = r["before"], r["after"]
    wall = "n/a" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f} min"
    lines.append(f"| {r['seed']} | {_choice(r.get('warm_start'))} | {fmt(b)} | {fmt(a)} | {b['thinking_tokens']:.1f} → "
                 f"{a['thinking_tokens']:.1f} | {b['normalized_regret']:.3f} → "
                 f"{a['normalized_regret']:.3f} | {wall} |")
  s = record["summary"]
  d = s["after_minus_before"]
  num = lambda v, f: "n/a" if v is None else f"{v:{f}}"
  cell = lambda x, f: f"{num(x['mean'], f)} [{num(x['low'], f)}, {num(x['high'], f)}]"
  lines += ["", f"Over {s['num_seeds']} seeds, after − before (mean [95% interval over seeds]): "
            f"pass@1 {cell(d['pass@1'], '+.3f')}, thinking tokens "
            f"{cell(d['thinking_tokens'], '+.1f')}, normalized regret "
            f"{cell(d['normalized_regret'], '+.3f')}. Regret drops in {s['regret_drops']} of "
            f"{s['num_seeds']} seeds; pass@1 stays at or above the warm start's interval in "
            f"{s['pass@1_kept']}; both in {s['improved']}." + (
                "" if s["max_wall_s"] is None else
                f" Longest run: {s['max_wall_s'] / 60:.1f} min (the demo's budget: 10 min on 2 "
                "cores).")]
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = reproduce_demo.study_parser(__doc__, "demo_seeds", "0,1,2,3,4,5,6,7,8,9", "0",
                                       "RESULTS.md and demo_seeds.json")
  args = parser.parse_args(argv)
  out, docs, seeds = reproduce_demo.study_paths(args)
  extra = [*(QUICK if args.quick else ()), *args.set]
  os.makedirs(out, exist_ok=True)
  step = reproduce_demo.Steps(out, reproduce_demo.environment(out, cache=False))
  runs = []
  for seed in seeds:
    run = seed_overrides(out, seed, extra)
    config = config_cli.load_config(CONFIG, run)
    if config.train.eval_every <= 0:
      raise ValueError(f"train.eval_every={config.train.eval_every}; expected > 0 (the demo "
                       "evaluates the warm start at step 0 and the trained model at the end)")
    step(f"seed{seed}", os.path.join(config.workdir, "eval", f"step_{config.train.total_steps}",
                                     "eval.json"),
         [sys.executable, "-m", "mrt_jax.launch", *reproduce_demo.flags(run)])
    before, after = evaluations(config.workdir)
    runs.append({"seed": seed, "wall_s": step.timings.get(f"seed{seed}"),
                 "before": side(before), "after": side(after),
                 "warm_start": warm_start(config.model.path)})
  record = {"seeds": seeds, "quick": args.quick, "overrides": extra, "runs": runs,
            "summary": summary(runs)}
  os.makedirs(docs, exist_ok=True)
  with open(os.path.join(docs, "demo_seeds.json"), "w") as f:
    json.dump(record, f, indent=2, allow_nan=False)
  text = table(record)
  reproduce_demo.splice(os.path.join(docs, "RESULTS.md"), text, BEGIN, END)
  print(text, flush=True)
  print(f"wrote {docs}/demo_seeds.json and RESULTS.md", flush=True)


if __name__ == "__main__":
  main()
