"""Tables and plots of the GRPO-vs-MRT reproduction (`reproduce_demo.py`) from its eval.json files.

Every figure is per run first (one run = one method and one seed, evaluated by
`mrt_jax.evaluate` on held-out problems), then averaged over seeds with a 95% Student-t
interval: mean ± t_{0.975, n-1} · sd / sqrt(n). With 3 seeds t = 4.30, so intervals are wide
on purpose: they are intervals over training seeds, not over problems.

Figures of a run:
  accuracy            pass@1 (n samples per problem, the evaluation's temperature).
  thinking tokens     mean thinking tokens per trace (the tokens before "</think>").
  normalized regret   1 − (1/C0)·∫_0^C0 J(c) dc at the largest budget C0 (docs/method.md).
  tokens to target    thinking tokens spent at the smallest budget where the budget-forced
                      success J(c) reaches the target accuracy (linear between budgets).
  wasteful blocks     blocks per trace that re-check a clue already checked.
  real clues          fraction of the traces' clue lines that copy a clue of the problem.
  harmful traces      fraction of traces with a block striking the hidden letter.
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

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..10.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def interval(values: Sequence[float]) -> tuple[float, float, float]:
  """(mean, low, high): the 95% Student-t interval of the mean over seeds (nan if n < 2)."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if x.size == 0:
    return math.nan, math.nan, math.nan
  if x.size < 2:
    return float(x.mean()), math.nan, math.nan
  t = _T975[min(x.size - 1, len(_T975)) - 1] if x.size <= len(_T975) + 1 else 1.96
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


def wasteful_blocks(samples_path: str, problems: Mapping[int, dict]) -> float:
  """Mean number of blocks per trace that re-check a clue already checked (samples.jsonl)."""
  counts = []
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      text = s["completion"].split("</think>")[0]
      order = elimination.checked_clues(text, problems[s["problem_id"]])
      counts.append(len(order) - len(set(order)))
  return float(np.mean(counts))


_CLUE_LINE = re.compile(r"^Wait, clue: (.*)$", re.MULTILINE)
_STRIKE_LINE = re.compile(r"^Strike ([A-Z ]*)\.$", re.MULTILINE)


def block_quality(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """What the blocks of a run's traces do (samples.jsonl; thinking only).

  real_clues: fraction of "Wait, clue: ..." lines that copy a clue of the problem exactly.
  harmful_traces: fraction of traces with a block that strikes the hidden letter (after such a
    block the trace's own answer cannot be right).
  """
  real = lines = harmful = traces = 0
  with open(samples_path, encoding="utf-8") as f:
    for line in f:
      s = json.loads(line)
      problem = problems[s["problem_id"]]
      thinking = s["completion"].split("</think>")[0]
      clues = {elimination.clue_text(items) for items in problem["clues"]}
      found = _CLUE_LINE.findall(thinking)
      real += sum(c in clues for c in found)
      lines += len(found)
      harmful += any(problem["answer"] in g.split() for g in _STRIKE_LINE.findall(thinking))
      traces += 1
  return {"real_clues": real / max(lines, 1), "harmful_traces": harmful / max(traces, 1)}


_BLOCK_START = re.compile(r"(?=^Wait, clue:)", re.MULTILINE)


def progress_by_kind(samples_path: str, problems: Mapping[int, dict]) -> dict[str, float]:
  """Mean measured progress ΔJ (the evaluation's probes) of blocks, by what the block checks.

  A block starts at a "Wait, clue:" line; its ΔJ is j_values[j + 1] − j_values[j]. Kinds:
  `progress_new` (a real clue not checked before), `progress_recheck` (a real clue already
  checked) and `progress_madeup` (no clue of the problem). `progress_spread` is the standard
  deviation of ΔJ within the kinds, pooled. A trace whose blocks do not line up one to one with
  its probed boundaries (the segmenter found another count) is skipped. NaN for a kind with no
  block.
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
  return out


def run_figures(eval_dir: str, problems: Mapping[int, dict], target: float) -> dict:
  """The figures of one evaluated run (see the module docstring)."""
  with open(os.path.join(eval_dir, "eval.json"), encoding="utf-8") as f:
    record = json.load(f)
  m, bf = record["metrics"], record["budget_forcing"]
  return {
      "accuracy": m["pass@1"], "thinking_tokens": m["mean_thinking_tokens"],
      "completion_tokens": m["mean_thinking_tokens"] + m["mean_answer_tokens"],
      "regret": m["normalized_regret"], "episode_regret": m["episode_normalized_regret"],
      "tokens_to_target": tokens_to_reach(bf["mean_thinking_tokens"], bf["J"], target),
      "blocks": m["mean_blocks"],
      "wasteful_blocks": wasteful_blocks(os.path.join(eval_dir, "samples.jsonl"), problems),
      **block_quality(os.path.join(eval_dir, "samples.jsonl"), problems),
      **progress_by_kind(os.path.join(eval_dir, "samples.jsonl"), problems),
      "budgets": bf["budgets"], "J": bf["J"], "J_tokens": bf["mean_thinking_tokens"]}


# (key, label, format, what a NaN value means): one row of the results table each.
_NEVER = "never reach it"
_NONE = "have no such block"
ROWS = (("accuracy", "accuracy (pass@1)", "{:.3f}", _NONE),
        ("thinking_tokens", "thinking tokens", "{:.1f}", _NONE),
        ("completion_tokens", "completion tokens", "{:.1f}", _NONE),
        ("regret", "normalized regret", "{:.3f}", _NONE),
        ("tokens_to_target", "tokens to target accuracy", "{:.1f}", _NEVER),
        ("blocks", "blocks per trace", "{:.2f}", _NONE),
        ("wasteful_blocks", "wasteful blocks per trace", "{:.2f}", _NONE),
        ("real_clues", "clue lines that copy a real clue", "{:.3f}", _NONE),
        ("harmful_traces", "traces that strike the hidden letter", "{:.3f}", _NONE),
        ("progress_new", "measured ΔJ of a block that checks a new clue", "{:+.3f}", _NONE),
        ("progress_recheck", "measured ΔJ of a block that re-checks a clue", "{:+.3f}", _NONE),
        ("progress_madeup", "measured ΔJ of a block that checks a made-up clue", "{:+.3f}",
         _NONE),
        ("progress_spread", "spread (std) of ΔJ within those three kinds", "{:.3f}", _NONE))


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
      lines.append(f"| {name} | {seed} | {f['accuracy']:.3f} | {f['thinking_tokens']:.1f} | "
                   f"{f['regret']:.3f} | {f['wasteful_blocks']:.2f} |")
  return "\n".join(lines)


def plot_all(figures: Mapping[str, Sequence[dict]], curves: Mapping[str, Sequence[dict]],
             out_dir: str, prefix: str) -> dict[str, str]:
  """PNGs: J(c) over thinking tokens, accuracy vs tokens per run, training curves.

  Args:
    figures: method -> per-seed `run_figures`.
    curves: method -> per-seed training metrics lines (metrics.jsonl), empty for the base.
    out_dir: where the PNGs go.
    prefix: file name prefix.
  """
  os.makedirs(out_dir, exist_ok=True)
  out = {}
  j = {name: (runs[0]["budgets"], np.array([r["J"] for r in runs])) for name, runs in
       figures.items()}
  out["j_curves"] = plots.plot_j_curves(j, os.path.join(out_dir, f"{prefix}j_curves.png"),
                                        title="Budget-forced success J(c), mean ± s.e. over seeds")
  acc = {f"{name} seed {i}": (r["J_tokens"], r["J"]) for name, runs in figures.items()
         for i, r in enumerate(runs)}
  out["accuracy_vs_tokens"] = plots.plot_accuracy_vs_tokens(
      acc, os.path.join(out_dir, f"{prefix}accuracy_vs_tokens.png"),
      title="J at each budget vs thinking tokens used, every run")
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


def target_check(figures: Mapping[str, Sequence[dict]], baseline: str = "grpo",
                 method: str = "mrt", token_ratio: float = 1.2) -> str:
  """Markdown lines: does `method` meet the reproduction's target against `baseline`, per item."""
  g, m = figures[baseline], figures[method]
  col = lambda runs, k: [r[k] for r in runs]
  regret_ok = (interval(col(m, "regret"))[0] < interval(col(g, "regret"))[0]
               and not _overlap(col(m, "regret"), col(g, "regret")))
  ratio = _ratio(interval(col(g, "thinking_tokens"))[0], interval(col(m, "thinking_tokens"))[0])
  scaled = [t * token_ratio for t in col(m, "thinking_tokens")]
  tokens_ok = ratio >= token_ratio and not _overlap(scaled, col(g, "thinking_tokens"))
  reach = lambda runs: [v for v in col(runs, "tokens_to_target") if math.isfinite(v)]
  reach_ratio = _ratio(interval(reach(g))[0], interval(reach(m))[0])
  reach_ok = reach_ratio >= token_ratio and not _overlap([t * token_ratio for t in reach(m)],
                                                          reach(g))
  acc_ok = interval(col(m, "accuracy"))[0] >= interval(col(g, "accuracy"))[0]
  yes = lambda ok: "**yes**" if ok else "**no**"
  return "\n".join([
      f"- {method} regret below {baseline}'s, intervals apart: {yes(regret_ok)}",
      f"- {baseline} / {method} thinking tokens = {ratio:.2f}× (target ≥ {token_ratio}×, "
      f"{method}'s interval × {token_ratio} apart from {baseline}'s): {yes(tokens_ok)}",
      f"- {baseline} / {method} budget-forced tokens to the target J = {reach_ratio:.2f}× "
      f"(same test): {yes(reach_ok)}",
      f"- {method} accuracy ≥ {baseline}'s (means): {yes(acc_ok)}"])


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


def markdown(figures: Mapping[str, Sequence[dict]], seeds: Sequence[int], target: float,
             timings: Mapping[str, float], config, pngs: Mapping[str, str], docs: str,
             quick: bool, parameters: int | None = None) -> str:
  """The measured section of RESULTS.md: settings, table, target check, per-seed, plots.

  `parameters` is the warm start's parameter count (`count_parameters`), printed with the
  architecture when given.
  """
  t, r, e, d = config.train, config.rollout, config.eval, config.demo
  rel = lambda p: os.path.relpath(p, docs)
  minutes = sum(timings.values()) / 60
  lines = [
      "" if not quick else "**Quick smoke run: too small to mean anything.**\n",
      f"Seeds {', '.join(map(str, seeds))}; every run starts from the same warm start and trains "
      f"{t.total_steps} steps × {t.global_batch_prompts} prompts × G = {r.num_generations} "
      f"rollouts (temperature {r.temperature}, at most {r.max_completion_len} tokens), lr "
      f"{config.optimizer.learning_rate}, KL β = {config.loss.kl_beta}; MRT adds α = "
      f"{config.advantage.alpha} × progress with m = {config.probe.num_probes} probes per "
      f"boundary. Evaluation: {e.num_problems} held-out problems × n = {e.num_samples} samples "
      f"(temperature {e.temperature}), J(c) from m = {e.num_probes} forced answers at budgets "
      f"0, {', '.join(str(b) for b in e.budgets)} and at every block boundary. Task: "
      f"{d.num_candidates} letters, {d.num_clues} clues, waste probability {d.waste_prob} in "
      f"the warm start's data. Model: Qwen2-style, {d.num_layers} layers, hidden "
      f"{d.hidden_size}, FFN {d.intermediate_size}, {d.num_heads} heads / {d.num_kv_heads} kv "
      f"heads" + ("" if parameters is None else f", {parameters / 1e6:.2f}M parameters") +
      f". Wall time of the whole run: {minutes:.1f} min.",
      "",
      f"Mean [95% interval over seeds]. Target for *tokens to target*: J = {target:.3f}, 90% "
      f"of the lower of the trained methods' mean J at the largest budget.",
      "",
      table(figures),
      "",
      "The reproduction's target, checked on these numbers:",
      "",
      target_check(figures),
      "",
      "Every run:",
      "",
      per_seed(figures, seeds),
      "",
      "Wall time per step of the run (s): " + ", ".join(
          f"{k} {v:.0f}" for k, v in timings.items()),
      "",
      f"![J(c)]({rel(pngs['j_curves'])})",
      f"![accuracy vs tokens]({rel(pngs['accuracy_vs_tokens'])})",
      f"![reward]({rel(pngs['reward_mean'])})",
      f"![tokens]({rel(pngs['completion_tokens_mean'])})",
      f"![blocks]({rel(pngs['blocks_mean'])})",
  ]
  return "\n".join(lines) + "\n"
