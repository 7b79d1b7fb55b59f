"""Figures, tables and plots of the reproduction (`reproduce_demo.py`) from its eval.json files.

Every figure is per run first (one run = one arm and one seed, evaluated by `mrt_jax.evaluate`
on held-out problems), then averaged over seeds with a 95% Student-t interval:
mean ± t_{0.975, n-1} · sd / sqrt(n). With 3 seeds t = 4.30, so intervals are wide on purpose:
they are intervals over training seeds, not over problems. `pooled_pass_at_1` is the other
kind: every sample of every seed pooled into one proportion (Wilson interval).

Figures of a run (`run_figures`; the keys of docs/results.json):
  pass@1              accuracy (n samples per problem, the evaluation's temperature).
  thinking_tokens     mean thinking tokens per trace (the tokens before "</think>").
  completion_tokens   thinking and answer tokens per trace.
  normalized_regret   1 − (1/C0)·∫_0^C0 J(c) dc at the largest budget C0 (docs/method.md);
                      episode_normalized_regret from the J curve at the traces' own blocks.
  normalized_regret_fixed_prover   the same, J(c) from a fixed meta-prover (the warm start's)
                      on the same traces (`fixed_prover_regret`; set by the study).
  normalized_regret_task   the same, J from the task's exact meta-prover at the traces'
                      block boundaries (`task_regret`; no model).
  normalized_regret_left   the same, J from the letters the trace's last "Left" line keeps
                      (`elimination_left_success`; 0 once a line strikes the hidden letter).
  tokens_to_target    thinking tokens spent at the smallest budget where the budget-forced
                      success J(c) reaches the target accuracy (linear between budgets).
  blocks              blocks per trace.
  wasteful_blocks     blocks per trace that re-check a clue already checked.
  real_clues          fraction of the traces' clue lines that copy a clue of the problem.
  harmful_traces      fraction of traces with a block striking the hidden letter.
  true_strikes        fraction of blocks checking a real clue whose "Strike" line strikes
                      exactly that clue's letters.
  unclosed_traces     fraction of traces that never write "</think>" (the verifier fails them).
  progress_*          measured ΔJ of a block by kind (`progress_by_kind`).
  flat_new, flat_recheck   shares of new-clue blocks and re-checks whose ΔJ is at most
                      `FLAT_TAU` (`progress_by_kind`).
  num_correct, num_samples   the samples' successes and count (for the pooled interval).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from typing import Mapping, Sequence

import numpy as np

from mrt_jax.data import elimination
from mrt_jax.evaluation import plots

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30; beyond 30 the df = 30 value
# (at most 4% wider than the exact quantile).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def interval(values: Sequence[float]) -> tuple[float, float, float]:
  """(mean, low, high): the 95% Student-t interval of the mean over seeds (nan if n < 2)."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if x.size == 0:
    return math.nan, math.nan, math.nan
  if x.size < 2:
    return float(x.mean()), math.nan, math.nan
  t = _T975[min(x.size - 1, len(_T975)) - 1]
  half = t * x.std(ddof=1) / math.sqrt(x.size)
  return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def tokens_to_reach(tokens_C: Sequence[float], j_C: Sequence[float], target: float) -> float:
  """Thinking tokens at which a budget-forced curve first reaches `target` (inf if never).

  Linear between consecutive budgets of the curve (tokens_C: mean thinking tokens actually
  used at each budget, increasing; j_C: J there).
  """
  tokens_C, j_C = np.asarray(tokens_C, np.float64), np.asarray(j_C, np.float64)
  for i in range(len(j_C)):
    if j_C[i] >= target:
      if i == 0 or j_C[i] == j_C[i - 1]:
        return float(tokens_C[i])
      f = (target - j_C[i - 1]) / (j_C[i] - j_C[i - 1])
      return float(tokens_C[i - 1] + f * (tokens_C[i] - tokens_C[i - 1]))
  return math.inf


def recheck_positions(order) -> tuple[int, int]:
  """(re-checks before the trace's last new clue, re-checks after it) of a clue order.

  A re-check before the last new clue delays the progress still to come: the dense MRT
  advantage prices it (the new clue in its place would have earned progress). One after it
  follows a J that no block can raise, so no progress-based advantage tells it from stopping.
  """
  new = [i for i, k in enumerate(order) if k not in order[:i]]
  last = new[-1] if new else -1
  rechecks = [i for i in range(len(order)) if i not in new]
  return sum(i < last for i in rechecks), sum(i > last for i in rechecks)


def wasteful_blocks(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """Blocks per trace that re-check a clue already checked (samples.jsonl): all of them
  (`wasteful_blocks`), and those before / after the trace's last new clue
  (`rechecks_before_last_new`, `rechecks_after_last_new`; see `recheck_positions`)."""
  counts = []
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      text = s["completion"].split("</think>")[0]
      order = elimination.checked_clues(text, problems[s["problem_id"]])
      counts.append((len(order) - len(set(order)), *recheck_positions(order)))
  total, before, after = np.mean(np.asarray(counts, np.float64).reshape(-1, 3), axis=0)
  return {"wasteful_blocks": float(total), "rechecks_before_last_new": float(before),
          "rechecks_after_last_new": float(after)}


_CLUE_LINE = re.compile(r"^Wait, clue: (.*)$", re.MULTILINE)
_STRIKE_LINE = re.compile(r"^Strike ([A-Z ]*)\.$", re.MULTILINE)
_BLOCK_START = re.compile(r"(?=^Wait, clue:)", re.MULTILINE)


def block_quality(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """What the blocks of a run's traces do (samples.jsonl; thinking only).

  real_clues: fraction of "Wait, clue: ..." lines that copy a clue of the problem exactly.
  harmful_traces: fraction of traces with a block that strikes the hidden letter (after such a
    block the trace's own answer cannot be right).
  true_strikes: of the blocks whose clue line copies a real clue, the fraction whose next
    "Strike" line (the block's) strikes exactly that clue's letters, in any order.
  unclosed_traces: fraction of traces without "</think>" (answered without closing the
    thinking, or cut off by the token budget).
  """
  real = lines = harmful = traces = true = unclosed = 0
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      problem = problems[s["problem_id"]]
      thinking = s["completion"].split("</think>")[0]
      unclosed += "</think>" not in s["completion"]
      strikes = {elimination.clue_text(items): sorted(struck)
                 for items, struck in zip(problem["clues"], problem["strikes"])}
      found = _CLUE_LINE.findall(thinking)
      real += sum(c in strikes for c in found)
      lines += len(found)
      harmful += any(problem["answer"] in g.split() for g in _STRIKE_LINE.findall(thinking))
      traces += 1
      for block in _BLOCK_START.split(thinking):
        clue, struck = _CLUE_LINE.match(block), _STRIKE_LINE.search(block)
        if clue and clue.group(1) in strikes and struck:
          true += sorted(struck.group(1).split()) == strikes[clue.group(1)]
  return {"real_clues": real / max(lines, 1), "harmful_traces": harmful / max(traces, 1),
          "true_strikes": true / max(real, 1), "unclosed_traces": unclosed / max(traces, 1)}


# τ of the study's flat-price arms (`advantage.flat_threshold`): a block whose ΔJ is at most
# this is flat. `flat_new` / `flat_recheck` are the shares of new-clue blocks and re-checks
# that the evaluation's meta-prover judges flat.
FLAT_TAU = 0.02


def progress_by_kind(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """Mean measured progress ΔJ (the evaluation's probes) of blocks, by what the block checks.

  A block starts at a "Wait, clue:" line; its ΔJ is j_values[j + 1] − j_values[j]. Kinds:
  `progress_new` (a real clue not checked before), `progress_recheck` (a real clue already
  checked) and `progress_madeup` (no clue of the problem). `progress_spread` is the standard
  deviation of ΔJ within the kinds, pooled. A trace whose blocks do not line up one to one with
  its probed boundaries (the segmenter found another count) is skipped. NaN for a kind with no
  block. `flat_new` and `flat_recheck`: the shares of new-clue blocks and of re-checks whose ΔJ
  is at most `FLAT_TAU` (what a price on flat blocks would charge, under this J).
  """
  kinds = {"progress_new": [], "progress_recheck": [], "progress_madeup": []}
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      problem = problems[s["problem_id"]]
      blocks = [b for b in _BLOCK_START.split(s["completion"].split("</think>")[0]) if b.strip()]
      j_values = s.get("j_values") or []
      if len(j_values) != len(blocks) + 1:
        continue
      index = {elimination.clue_text(items): k for k, items in enumerate(problem["clues"])}
      seen = set()
      for j, block in enumerate(blocks):
        clue = _CLUE_LINE.match(block)
        k = index.get(clue.group(1)) if clue else None
        kind = ("progress_madeup" if k is None else
                "progress_recheck" if k in seen else "progress_new")
        seen.add(k)
        kinds[kind].append(j_values[j + 1] - j_values[j])
  out = {k: float(np.mean(v)) if v else math.nan for k, v in kinds.items()}
  residuals = [x - out[k] for k, v in kinds.items() for x in v]
  out["progress_spread"] = float(np.sqrt(np.mean(np.square(residuals)))) if residuals else math.nan
  for kind, key in (("progress_new", "flat_new"), ("progress_recheck", "flat_recheck")):
    v = np.asarray(kinds[kind])
    out[key] = float(np.mean(v <= FLAT_TAU)) if v.size else math.nan
  return out


def task_regret(samples_path: str, problems: Mapping[int, dict], horizon: float,
                prover: str = "elimination") -> float:
  """Normalized regret at `horizon` thinking tokens with J from a task prover of the puzzle
  (`prover`, a registered name: `elimination` reads the clue lines, `elimination_left` the
  "Left" lines), read at the traces' block boundaries.

  J(c) is the exact J of the blocks a trace has completed by token c (a step at each boundary
  b_j of samples.jsonl's "blocks", J_N from the end of thinking on), so the regret
  1 − (1/C0)·∫_0^C0 J(c) dc is read off the samples without a model: the same traces as the
  evaluation's, judged by a meta-prover that neither drifts with training nor misjudges the clue
  a block checks.
  A trace whose blocks do not line up with its boundaries is skipped (as in
  `progress_by_kind`); NaN when every trace is.
  """
  from mrt_jax.rewards import get_task_prover  # pylint: disable=import-outside-toplevel
  success = get_task_prover(prover)
  regrets = []
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      problem = problems[s["problem_id"]]
      blocks = [b for b in _BLOCK_START.split(s["completion"].split("</think>")[0]) if b.strip()]
      bounds = s["blocks"]
      if len(bounds) != len(blocks) + 1:
        continue
      j_N1 = [success(problem, "".join(blocks[:k])) for k in range(len(blocks) + 1)]
      edges = np.clip(np.array([*bounds, horizon], np.float64), 0.0, horizon)
      area = float(np.sum(np.diff(edges) * np.array(j_N1)))
      regrets.append(1.0 - area / horizon)
  return float(np.mean(regrets)) if regrets else math.nan


def run_figures(eval_dir: str, problems: Mapping[int, dict], target: float) -> dict:
  """The figures of one evaluated run (see the module docstring)."""
  with open(os.path.join(eval_dir, "eval.json"), encoding="utf-8") as f:
    record = json.load(f)
  m, bf = record["metrics"], record["budget_forcing"]
  samples = os.path.join(eval_dir, "samples.jsonl")
  return {
      "pass@1": m["pass@1"], "thinking_tokens": m["mean_thinking_tokens"],
      "completion_tokens": m["mean_thinking_tokens"] + m["mean_answer_tokens"],
      "normalized_regret": m["normalized_regret"],
      "episode_normalized_regret": m["episode_normalized_regret"],
      "tokens_to_target": tokens_to_reach(bf["mean_thinking_tokens"], bf["J"], target),
      "normalized_regret_task": task_regret(samples, problems, bf["budgets"][-1]),
      "normalized_regret_left": task_regret(samples, problems, bf["budgets"][-1],
                                            "elimination_left"),
      "blocks": m["mean_blocks"],
      **wasteful_blocks(samples, problems),
      **block_quality(samples, problems), **progress_by_kind(samples, problems),
      **correct_count(samples),
      "budgets": bf["budgets"], "J": bf["J"], "J_tokens": bf["mean_thinking_tokens"]}


def fixed_prover_regret(fixed_dir: str, own_dir: str) -> float:
  """normalized_regret of an evaluation whose J came from a fixed meta-prover (`fixed_dir`),
  after checking that it scored the same traces as the evaluation in `own_dir`."""
  def load(d):
    with open(os.path.join(d, "samples.jsonl"), encoding="utf-8") as f:
      return [(r["problem_id"], r["completion"]) for r in map(json.loads, f)]
  if load(fixed_dir) != load(own_dir):
    raise ValueError(f"{fixed_dir}: its samples differ from {own_dir}'s; a fixed meta-prover's "
                     "evaluation must score the same traces (same checkpoint, seed and settings)")
  with open(os.path.join(fixed_dir, "eval.json"), encoding="utf-8") as f:
    record = json.load(f)
  if record.get("meta_prover", "policy") == "policy":
    raise ValueError(f"{fixed_dir}/eval.json: J came from the policy itself, not a fixed "
                     "meta-prover (eval.meta_prover was empty)")
  return record["metrics"]["normalized_regret"]


# (key, label, format, what a NaN value means): one row of the results table each.
_NEVER = "never reach it"
_NONE = "have no such block"
ROWS = (("pass@1", "accuracy (pass@1)", "{:.3f}", _NONE),
        ("thinking_tokens", "thinking tokens", "{:.1f}", _NONE),
        ("completion_tokens", "completion tokens", "{:.1f}", _NONE),
        ("normalized_regret", "normalized regret", "{:.3f}", _NONE),
        ("normalized_regret_fixed_prover", "normalized regret, J from the warm start's "
         "meta-prover", "{:.3f}", _NONE),
        ("normalized_regret_task", "normalized regret, J from the task's exact meta-prover "
         "(at block boundaries)", "{:.3f}", _NONE),
        ("normalized_regret_left", "normalized regret, J from the letters the trace's \"Left\" "
         "lines keep (at block boundaries)", "{:.3f}", _NONE),
        ("tokens_to_target", "tokens to target accuracy", "{:.1f}", _NEVER),
        ("blocks", "blocks per trace", "{:.2f}", _NONE),
        ("wasteful_blocks", "wasteful blocks per trace", "{:.2f}", _NONE),
        ("rechecks_before_last_new", "… of them before the trace's last new clue", "{:.2f}",
         _NONE),
        ("rechecks_after_last_new", "… of them after it", "{:.2f}", _NONE),
        ("real_clues", "clue lines that copy a real clue", "{:.3f}", _NONE),
        ("harmful_traces", "traces that strike the hidden letter", "{:.3f}", _NONE),
        ("true_strikes", "blocks on a real clue that strike exactly its letters", "{:.3f}",
         _NONE),
        ("unclosed_traces", "traces that never close their thinking (no \"</think>\")",
         "{:.3f}", _NONE),
        ("progress_new", "measured ΔJ of a block that checks a new clue", "{:+.3f}", _NONE),
        ("progress_recheck", "measured ΔJ of a block that re-checks a clue", "{:+.3f}", _NONE),
        ("progress_madeup", "measured ΔJ of a block that checks a made-up clue", "{:+.3f}",
         _NONE),
        ("progress_spread", "spread (std) of ΔJ within those three kinds", "{:.3f}", _NONE),
        ("flat_new", f"new-clue blocks with ΔJ ≤ {FLAT_TAU} (judged flat)", "{:.2f}", _NONE),
        ("flat_recheck", f"re-checks with ΔJ ≤ {FLAT_TAU} (judged flat)", "{:.2f}", _NONE))


def _cell(values: Sequence[float], fmt: str, missing: str) -> str:
  """mean [interval] over the finite values, then how many seeds had none (`missing`)."""
  reached = [v for v in values if math.isfinite(v)]
  mean, low, high = interval(reached)
  if not reached:
    return f"all {len(values)} seeds {missing}"
  text = fmt.format(mean) + ("" if math.isnan(low) else
                             f" [{fmt.format(low)}, {fmt.format(high)}]")
  if len(reached) < len(values):
    text += f" ({len(values) - len(reached)} of {len(values)} seeds {missing})"
  return text


def table(figures: Mapping[str, Sequence[dict]]) -> str:
  """Markdown table: one column per method, mean [95% interval] over its seeds."""
  names = list(figures)
  lines = ["| figure | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
  for key, label, fmt, missing in ROWS:
    lines.append(f"| {label} | " + " | ".join(_cell([f[key] for f in figures[n]], fmt, missing)
                                             for n in names) + " |")
  return "\n".join(lines)


def per_seed(figures: Mapping[str, Sequence[dict]], seeds: Sequence[int]) -> str:
  """Markdown table of every run's accuracy, thinking tokens and regret."""
  lines = ["| run | seed | accuracy | thinking tokens | normalized regret | wasteful blocks |",
           "|---|---|---|---|---|---|"]
  for name, runs in figures.items():
    for seed, f in zip(seeds, runs):
      lines.append(f"| {name} | {seed} | {f['pass@1']:.3f} | {f['thinking_tokens']:.1f} | "
                   f"{f['normalized_regret']:.3f} | {f['wasteful_blocks']:.2f} |")
  return "\n".join(lines)


def plot_all(figures: Mapping[str, Sequence[dict]], curves: Mapping[str, Sequence[dict]],
             out_dir: str, prefix: str) -> dict[str, str]:
  """PNGs: J(c) over thinking tokens, accuracy vs tokens per arm, training curves per arm.

  Args:
    figures: name (an arm, or the warm start) -> per-seed `run_figures`.
    curves: name -> per-seed training metrics lines (metrics.jsonl); empty for the warm start.
    out_dir: where the PNGs go.
    prefix: file name prefix.
  """
  os.makedirs(out_dir, exist_ok=True)
  out = {}
  j = {name: (runs[0]["budgets"], np.array([r["J"] for r in runs])) for name, runs in
       figures.items()}
  out["j_curves"] = plots.plot_j_curves(j, os.path.join(out_dir, f"{prefix}j_curves.png"),
                                        title="Budget-forced success J(c), mean ± s.e. over seeds")
  acc = {name: (np.mean([r["J_tokens"] for r in runs], axis=0),
                np.mean([r["J"] for r in runs], axis=0)) for name, runs in figures.items()}
  out["accuracy_vs_tokens"] = plots.plot_accuracy_vs_tokens(
      acc, os.path.join(out_dir, f"{prefix}accuracy_vs_tokens.png"),
      title="J at each budget vs thinking tokens used, mean over seeds")
  for key, ylabel in (("reward_mean", "outcome reward"),
                      ("completion_tokens_mean", "completion tokens"),
                      ("blocks_mean", "blocks per trace")):
    series = {name: (np.arange(1, len(runs[0]) + 1), np.array([[l[key] for l in r]
                                                               for r in runs]))
              for name, runs in curves.items() if runs}
    out[key] = plots.plot_mean_band(
        series, os.path.join(out_dir, f"{prefix}train_{key}.png"),
        title=f"Training rollouts: {ylabel}, mean ± s.e. over seeds", xlabel="step",
        ylabel=ylabel)
  return out


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
  """Whether the 95% seed intervals of two sets of runs overlap (True if either is undefined)."""
  _, a_lo, a_hi = interval(a)
  _, b_lo, b_hi = interval(b)
  if any(math.isnan(v) for v in (a_lo, a_hi, b_lo, b_hi)):
    return True
  return a_lo <= b_hi and b_lo <= a_hi


def _ratio(a: float, b: float) -> float:
  """a / b, nan when b is 0 or either is undefined (e.g. a target reached at budget 0)."""
  return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def target_checks(baseline: Sequence[dict], arm: Sequence[dict], token_ratio: float = 1.2
                  ) -> dict:
  """The reproduction's target for one arm against the baseline's runs (per-seed figures).

  Returns:
    {"pass@1_not_lower": mean pass@1 >= the baseline's;
     "thinking_tokens_ratio": baseline / arm mean thinking tokens;
     "thinking_tokens": that ratio >= `token_ratio` and the arm's seed interval scaled by
       `token_ratio` apart from the baseline's;
     "tokens_to_target_ratio", "tokens_to_target": the same for the budget-forced tokens to the
       target J (runs that never reach it left out);
     "regret_lower": mean normalized regret below the baseline's, seed intervals apart;
     "reached": pass@1_not_lower and (thinking_tokens or tokens_to_target) and regret_lower}.
  """
  col = lambda runs, k: [r[k] for r in runs]
  mean = lambda runs, k: interval(col(runs, k))[0]
  regret_ok = (mean(arm, "normalized_regret") < mean(baseline, "normalized_regret")
               and not _overlap(col(arm, "normalized_regret"),
                                col(baseline, "normalized_regret")))
  ratio = _ratio(mean(baseline, "thinking_tokens"), mean(arm, "thinking_tokens"))
  tokens_ok = ratio >= token_ratio and not _overlap(
      [t * token_ratio for t in col(arm, "thinking_tokens")], col(baseline, "thinking_tokens"))
  reach = lambda runs: [v for v in col(runs, "tokens_to_target") if math.isfinite(v)]
  reach_ratio = _ratio(interval(reach(baseline))[0], interval(reach(arm))[0])
  reach_ok = reach_ratio >= token_ratio and not _overlap(
      [t * token_ratio for t in reach(arm)], reach(baseline))
  acc_ok = mean(arm, "pass@1") >= mean(baseline, "pass@1")
  return {"pass@1_not_lower": bool(acc_ok), "thinking_tokens_ratio": ratio,
          "thinking_tokens": bool(tokens_ok), "tokens_to_target_ratio": reach_ratio,
          "tokens_to_target": bool(reach_ok), "regret_lower": bool(regret_ok),
          "reached": bool(acc_ok and (tokens_ok or reach_ok) and regret_ok)}


# Paired differences, arm − baseline per seed (`paired_differences`): key, label, format.
PAIRED = (("pass@1", "pass@1", "{:+.3f}"),
          ("normalized_regret", "normalized regret", "{:+.3f}"),
          ("normalized_regret_fixed_prover", "regret, the warm start's meta-prover", "{:+.3f}"),
          ("normalized_regret_task", "regret, the task's exact meta-prover", "{:+.3f}"),
          ("tokens_to_target", "budget-forced tokens to the target J", "{:+.1f}"),
          ("thinking_tokens", "thinking tokens", "{:+.1f}"))


def paired_differences(baseline: Sequence[dict], arm: Sequence[dict]) -> dict[str, dict]:
  """Figure -> {"mean", "low", "high", "n"}: the 95% interval of arm − baseline, seed by seed.

  The runs are paired by position (the same seed, warm start and prompts); a seed where either
  value is not finite (a run that never reaches the target) is left out, and n says how many
  remain.
  """
  out = {}
  for key, _, _ in PAIRED:
    diffs = [a[key] - b[key] for a, b in zip(arm, baseline, strict=True)
             if math.isfinite(a[key]) and math.isfinite(b[key])]
    mean, low, high = interval(diffs)
    out[key] = {"mean": mean, "low": low, "high": high, "n": len(diffs)}
  return out


def paired_table(paired: Mapping[str, Mapping[str, dict]], baseline: str, num_seeds: int) -> str:
  """Markdown table of `paired_differences` per arm (a cell names the seeds it leaves out);
  an undefined bound may be nan or None (as results.json stores it)."""
  lines = [f"| arm − {baseline} | " + " | ".join(label for _, label, _ in PAIRED) + " |",
           "|---|" + "---|" * len(PAIRED)]
  for arm, figures in paired.items():
    cells = []
    for key, _, fmt in PAIRED:
      d = figures[key]
      if d["n"] == 0:
        cells.append(f"(all {num_seeds} seeds left out: never reach it)")
        continue
      cell = fmt.format(d["mean"]) + ("" if d["low"] is None or math.isnan(d["low"]) else
                                      f" [{fmt.format(d['low'])}, {fmt.format(d['high'])}]")
      if d["n"] < num_seeds:
        cell += f" ({num_seeds - d['n']} of {num_seeds} seeds left out: never reach it)"
      cells.append(cell)
    lines.append(f"| {arm} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def against_warm_start(warm: Sequence[dict], arm: Sequence[dict]) -> dict[str, int]:
  """Seeds where the arm's final model has lower normalized regret (J its own; J from the
  warm start's meta-prover), lower pass@1 than the warm start's evaluation with the same seed,
  and how many seeds there are."""
  pairs = list(zip(arm, warm, strict=True))
  return {"regret_lower": sum(a["normalized_regret"] < w["normalized_regret"] for a, w in pairs),
          "fixed_prover_regret_lower": sum(
              a["normalized_regret_fixed_prover"] < w["normalized_regret"] for a, w in pairs),
          "pass@1_lower": sum(a["pass@1"] < w["pass@1"] for a, w in pairs),
          "n": len(pairs)}


def target_lines(checks: Mapping[str, dict], baseline: str = "grpo",
                 token_ratio: float = 1.2) -> str:
  """Markdown lines of `target_checks` per arm, then one line naming the arms that reach it."""
  yes = lambda ok: "**yes**" if ok else "**no**"
  lines = []
  for arm, c in checks.items():
    lines += [
        f"- {arm}: pass@1 ≥ {baseline}'s (means): {yes(c['pass@1_not_lower'])}; "
        f"{baseline} / {arm} thinking tokens = {c['thinking_tokens_ratio']:.2f}× (≥ "
        f"{token_ratio}×, intervals apart at that margin): {yes(c['thinking_tokens'])}; "
        f"budget-forced tokens to the target J = {c['tokens_to_target_ratio']:.2f}× (same "
        f"test): {yes(c['tokens_to_target'])}; normalized regret below {baseline}'s, intervals "
        f"apart: {yes(c['regret_lower'])}"]
  if not checks:
    return f"**target: not checked (no arm to compare with {baseline})**"
  reached = [arm for arm, c in checks.items() if c["reached"]]
  lines += ["", f"**target: reached by {', '.join(reached)}**" if reached else
            "**target: not reached**"]
  return "\n".join(lines)


def correct_count(samples_path: str) -> dict[str, int]:
  """{"num_correct", "num_samples"}: the run's samples whose verdict is a success (> 0.5)."""
  with open(samples_path, encoding="utf-8") as f:
    verdicts = [json.loads(line)["verdict"] for line in f if line.strip()]
  return {"num_correct": sum(v > 0.5 for v in verdicts), "num_samples": len(verdicts)}


def wilson(k: int, n: int, z: float = 1.96) -> dict[str, float]:
  """{"p", "low", "high", "n"}: the proportion k / n with its Wilson score interval (95%)."""
  if n < 1:
    raise ValueError(f"n={n}; expected at least one sample for a proportion")
  p = k / n
  denom = 1 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  return {"p": p, "low": center - half, "high": center + half, "n": n}


def pooled_pass_at_1(runs: Sequence[dict]) -> dict[str, float]:
  """pass@1 of every sample of every seed's evaluation pooled (`wilson`), from `run_figures`."""
  return wilson(sum(r["num_correct"] for r in runs), sum(r["num_samples"] for r in runs))


def regime_figures(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """The training regime at a checkpoint, from an evaluation sampled the way training samples
  (rollout temperature, G samples per problem, training problems; samples.jsonl).

  Returns:
    group_size (G), num_groups, all_correct / all_wrong / all_equal (fractions of groups whose
    G outcomes are all successes / all failures / either: GRPO's advantage is 0 there),
    pass@1, wasteful_blocks (per trace) and `progress_by_kind`'s ΔJ per block kind.
  """
  groups: dict[int, list[bool]] = {}
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      groups.setdefault(s["problem_id"], []).append(s["verdict"] > 0.5)
  sizes = {len(g) for g in groups.values()}
  if len(sizes) != 1:
    raise ValueError(f"{samples_path}: groups of sizes {sorted(sizes)}; expected every problem "
                     "sampled the same number of times")
  correct = sum(all(g) for g in groups.values())
  wrong = sum(not any(g) for g in groups.values())
  return {"group_size": sizes.pop(), "num_groups": len(groups),
          "all_correct": correct / len(groups), "all_wrong": wrong / len(groups),
          "all_equal": (correct + wrong) / len(groups),
          "pass@1": float(np.mean([v for g in groups.values() for v in g])),
          **wasteful_blocks(samples_path, problems), **progress_by_kind(samples_path, problems)}


def count_parameters(model_dir: str) -> int:
  """Number of parameters in a Hugging Face checkpoint directory's *.safetensors files."""
  from safetensors import safe_open
  files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
  if not files:
    raise FileNotFoundError(f"{model_dir}: no *.safetensors files to count parameters in")
  total = 0
  for path in files:
    with safe_open(path, framework="numpy") as f:
      total += sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
  return total
