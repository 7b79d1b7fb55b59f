"""Choosing the demo's warm start among several SFT seeds by a check on problems SFT never saw.

A tiny model's SFT lands in a different place for every init and batch order: with the demo's
settings, five seeds' warm starts scored held-out pass@1 from 0.26 to 0.57 (docs/RESULTS.md).
The demo trains `demo.num_warm_starts` candidates (candidate 0 is the single warm start a
1-candidate build makes) and keeps the one with the best pass@1 on `demo.check_problems` RL
prompts that the SFT did not see, `demo.check_samples` samples each, sampled as the evaluation
samples (eval.temperature, eval.top_p). The held-out test problems (eval.data_path) are never
read, so the test stays an unbiased measure of the chosen warm start.

Every candidate's check is written under <model>/warm_starts/candidate_<i>/ (eval.json,
samples.jsonl), and the choice into the model's manifest.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
from ml_collections import ConfigDict

from mrt_jax.data import elimination
from mrt_jax.evaluation.runner import evaluate

CHECK_DIR = "warm_starts"  # in the model directory: one candidate_<i>/ per candidate's check


def candidate_key(seed: int, index: int) -> jax.Array:
  """The init key of candidate `index`: candidate 0 is key(seed), the 1-candidate warm start."""
  key = jax.random.key(seed)
  return key if index == 0 else jax.random.fold_in(key, index)


def candidate_sft_seed(seed: int, index: int) -> int | list[int]:
  """The SFT batch-order seed of candidate `index` (candidate 0: `seed`, as a 1-candidate
  build)."""
  return seed if index == 0 else [seed, index]


def check_problems(config: ConfigDict, rl_problems: Sequence[elimination.Record],
                   sft_problems: Sequence[elimination.Record]) -> list[elimination.Record]:
  """The first demo.check_problems of `rl_problems` (the RL prompts) whose puzzle is not one of
  `sft_problems`.

  Raises:
    ValueError: demo.check_problems < 1, or fewer RL prompts than that are unseen by SFT.
  """
  d = config.demo
  if d.check_problems < 1 or d.check_samples < 1:
    raise ValueError(f"demo.check_problems = {d.check_problems}, demo.check_samples = "
                     f"{d.check_samples}; choosing among demo.num_warm_starts = "
                     f"{d.num_warm_starts} candidates needs at least 1 of each")
  seen = {p["problem"] for p in sft_problems}
  out = [p for p in rl_problems if p["problem"] not in seen][:d.check_problems]
  if len(out) < d.check_problems:
    raise ValueError(f"demo.check_problems = {d.check_problems}: only {len(out)} of the "
                     f"{len(rl_problems)} RL prompts (demo.num_problems) are unseen by the SFT; ask "
                     "for fewer check problems or more RL prompts")
  return out


def check_config(config: ConfigDict, num_problems: int) -> ConfigDict:
  """`config` with the evaluation cut down to the check: demo.check_samples samples per
  problem, no extrapolation, sampling seeded by demo.seed (runs that differ only in `seed`
  build the same warm start); temperature, top-p, budgets and the J estimator stay the
  evaluation's."""
  c = ConfigDict(config.to_dict())
  c.seed = config.demo.seed
  c.eval.num_problems = num_problems
  c.eval.num_samples = config.demo.check_samples
  c.eval.k_values = ()
  c.eval.extrapolation_budgets = ()
  return c


def check_candidate(config: ConfigDict, model_config, params, tokenizer,
                    problems: Sequence[elimination.Record], index: int) -> dict:
  """Evaluates candidate `index` on the check problems; returns its manifest entry
  {"candidate", "check_pass@1", "check_pass@1_ci", "check_thinking_tokens", "check_dir"}."""
  out_dir = os.path.join(config.model.path, CHECK_DIR, f"candidate_{index}")
  record = evaluate(check_config(config, len(problems)), params, model_config, tokenizer,
                    out_dir, checkpoint=f"warm start candidate {index}",
                    name=f"candidate_{index}", records=problems, make_plots=False)
  m = record["metrics"]
  return {"candidate": index, "check_pass@1": float(m["pass@1"]),
          "check_pass@1_ci": [float(x) for x in m["pass@1_ci"]],
          "check_thinking_tokens": float(m["mean_thinking_tokens"]),
          "check_dir": os.path.relpath(out_dir, config.model.path)}


def choose(entries: Sequence[dict]) -> int:
  """The index of the candidate with the highest check pass@1 (the lowest index on ties)."""
  if not entries:
    raise ValueError("no warm-start candidates to choose from")
  return max(range(len(entries)), key=lambda i: (entries[i]["check_pass@1"], -i))
