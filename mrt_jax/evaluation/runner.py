"""The evaluation of a policy on a local dataset: one call, from the CLI or the training loop.

For every problem (the evaluation conventions of the MRT and DeepSeek-R1 papers):
  - n samples (eval.num_samples, eval.temperature, eval.top_p; stop on end of sequence), graded
    by the config's verifier: pass@1 averaged over samples (bootstrap interval), unbiased
    pass@k and maj@k (bootstrap interval; the vote is over the answers of the task's answer
    extractor, `mrt_jax.task.answer_extractor`) for k in eval.k_values (default: powers of
    2 <= n), mean thinking and answer tokens;
  - budget forcing on each sample: the termination suffix forced after min(c, end of thinking)
    tokens for c in (0,) + eval.budgets gives J(c) on the budget grid, and forced at the trace's
    episode boundaries b_0..b_N (`mrt.segment`) gives its own J curve; m = eval.num_probes
    probes each (`budget.forced_success`). Normalized regret (docs/method.md) at every horizon
    C0 in eval.budgets, from both kinds of curve (`regret.mean_normalized_regret`);
  - extrapolation past the trained budget (`budget.extend_thinking`): the thinking is extended
    with "Wait" to each of eval.extrapolation_budgets and forced there; the accuracy is compared
    with J at the largest budget of eval.budgets.
Problems are processed eval.problems_per_batch at a time (that bounds the KV caches). They come
from eval.data_path, or, when that is empty, from the held-out split of data.path that training
leaves out (`data.split`); eval.json's "dataset" names which.

Outputs in `out_dir`: eval.json (`report.eval_record`), samples.jsonl (one line per sample) and
the PNGs accuracy_vs_tokens.png, j_curves.png, regret.png. `compare` plots several eval.json.

Config fields: the `eval` block of `config_defaults.base` (each commented there); 0 / ()
mean the documented default: eval.num_problems 0 = all, eval.k_values () = powers of 2 <= n,
eval.max_new_tokens 0 = rollout.max_completion_len, eval.extrapolation_budgets () = no
extrapolation.
eval.j_estimator "likelihood" scores the reference answer at every cut instead of
sampling m probes, so the J(c) curves and regrets carry no probe noise
(`mrt_jax.mrt.meta_prover`).
eval.meta_prover names a checkpoint whose forced answers J(c) measures instead of the policy's
own: the policy samples the traces, the fixed meta-prover prefills them into its own cache and
answers at every cut (eval.json "meta_prover" names it; "policy" by default).

Letters: P problems, R samples per problem, C budget-grid points (0 and eval.budgets),
N1 boundaries of a trace, H horizons, E extrapolation budgets.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import numpy as np

from mrt_jax import storage, task
from mrt_jax.data.pipeline import render_problem
from mrt_jax.data.sources import load_records
from mrt_jax.data.split import split_records
from mrt_jax.evaluation import budget, metrics, plots, regret, report
from mrt_jax.mrt.meta_prover import check_estimator, prover_answer, prover_task
from mrt_jax.mrt.segment import SegmentConfig, segment
from mrt_jax.rewards import pool_for, verify_batch
from mrt_jax.sampling import FINISH_STOP, Sampler

PLOTS = ("accuracy_vs_tokens.png", "j_curves.png", "regret.png")


def _increasing(values, field: str, above: int = 0) -> tuple[int, ...]:
  out = tuple(int(v) for v in values)
  if any(v <= lo for v, lo in zip(out, (above,) + out)):
    raise ValueError(f"{field} = {list(out)}; expected strictly increasing token counts > "
                     f"{above}")
  return out


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The evaluation's knobs, validated (module docstring names the config fields)."""
  num_problems: int | None
  num_samples: int
  temperature: float
  top_p: float
  max_new_tokens: int
  budgets: tuple[int, ...]
  k_values: tuple[int, ...]
  extrapolation_budgets: tuple[int, ...]
  max_waits: int
  wait_text: str
  problems_per_batch: int
  num_resamples: int

  @classmethod
  def from_config(cls, config) -> "EvalSettings":
    e = config.eval
    n = int(e.num_samples)
    if n < 1:
      raise ValueError(f"eval.num_samples = {n}; expected >= 1")
    budgets = _increasing(e.budgets, "eval.budgets")
    if not budgets:
      raise ValueError("eval.budgets is empty; expected at least one thinking budget")
    k_values = tuple(int(k) for k in e.k_values or [2**i for i in range(n.bit_length())])
    if any(not 1 <= k <= n for k in k_values):
      raise ValueError(f"eval.k_values = {list(k_values)} with eval.num_samples = {n}; expected "
                       "1 <= k <= n (pass@k and maj@k need n >= k samples)")
    extra = _increasing(e.extrapolation_budgets,
                        "eval.extrapolation_budgets (past the largest of eval.budgets)",
                        above=budgets[-1])
    settings = cls(
        num_problems=e.num_problems or None, num_samples=n,
        temperature=float(e.temperature), top_p=float(e.top_p),
        max_new_tokens=int(e.max_new_tokens or config.rollout.max_completion_len),
        budgets=budgets, k_values=k_values, extrapolation_budgets=extra,
        max_waits=int(e.max_waits), wait_text=str(e.wait_text),
        problems_per_batch=int(e.problems_per_batch), num_resamples=int(e.num_resamples))
    for name in ("max_new_tokens", "problems_per_batch", "num_resamples"):
      if getattr(settings, name) < 1:
        raise ValueError(f"eval.{name} = {getattr(settings, name)}; expected >= 1")
    return settings


@dataclasses.dataclass(frozen=True)
class _Model:
  """The policy and the token-level constants of its tokenizer."""
  sampler: Sampler
  params: Any
  tokenizer: Any
  stop_ids: tuple[int, ...]
  end_think: tuple[int, ...]
  wait: tuple[int, ...]
  probe: budget.ProbeSettings
  seg: SegmentConfig
  verifier: str
  extract_answer: Any  # text -> final answer or None (the task's, `task.answer_extractor`)
  pool: Any  # the verifier's worker pool (None: an inline verifier)
  prover_params: Any = None  # eval.meta_prover's params; None: the policy answers itself

  def decode(self, ids: Sequence[int]) -> str:
    return task.decode_text(self.tokenizer, ids)


def _model(config, sampler, params, model_config, tokenizer, s: EvalSettings,
           prover_params=None) -> _Model:
  encode = lambda text: tuple(tokenizer.encode(text, add_special_tokens=False))
  stop_ids = tuple(model_config.eos_token_ids) + (
      (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ())
  return _Model(
      sampler=sampler, params=params, tokenizer=tokenizer, stop_ids=tuple(dict.fromkeys(stop_ids)),
      end_think=encode(config.segment.end_think), wait=encode(s.wait_text),
      probe=budget.ProbeSettings(
          encode(config.probe.termination_suffix), _eval_probes(config),
          int(config.probe.max_answer_len), float(config.probe.temperature),
          float(config.probe.top_p), tuple(dict.fromkeys(stop_ids)), _j_estimator(config),
          prover_answer(config, tokenizer, "eval.j_estimator", _j_estimator(config)),
          prover_task(config, "eval.j_estimator", _j_estimator(config))),
      seg=task.segment_config(config), verifier=config.reward.verifier,
      extract_answer=task.answer_extractor(config.reward.verifier),
      pool=pool_for(config.reward.verifier, config.reward.num_workers, config.reward.timeout_s),
      prover_params=prover_params)


def _meta_prover(config, model_config, sampler: Sampler):
  """The params of eval.meta_prover on the sampler's mesh, or None ("": the policy itself)."""
  if not str(config.eval.meta_prover):
    return None
  if _j_estimator(config) == "task":
    raise ValueError(f"config.eval.meta_prover={config.eval.meta_prover!r} names a checkpoint, "
                     "but config.eval.j_estimator='task' runs no model; clear one of the two")
  from mrt_jax.train.restore import load_meta_prover  # pylint: disable=import-outside-toplevel
  return load_meta_prover(config, "eval.meta_prover", model_config, sampler.mesh, sampler.rules)


def eval_problems(config) -> tuple[list[dict], str]:
  """The evaluation's problem records and the name of where they come from (eval.json's
  "dataset"): eval.data_path, or the held-out split of data.path when that is empty."""
  data = config.data
  fields = dict(problem_field=data.problem_field, answer_field=data.answer_field)
  if config.eval.data_path:
    return load_records(config.eval.data_path, **fields), config.eval.data_path
  records = load_records(data.path, split=data.split, **fields)
  held = split_records(records, problem_field=data.problem_field,
                       fraction=float(config.eval.holdout_fraction), source=data.path)
  return held.heldout, held.description


def problem_records(records: Sequence[Mapping[str, Any]], problem_field: str, answer_field: str,
                    limit: int | None, source: str) -> list[dict]:
  """The first `limit` records as verifiers receive them (`mrt_jax.task.verifier_record`)."""
  records = list(records)[:limit]
  if not records:
    raise ValueError(f"{source} holds no problems; expected at least one record")
  out = []
  for i, r in enumerate(records):
    missing = [f for f in (problem_field, answer_field) if r.get(f) is None]
    if missing:
      raise ValueError(f"{source}: record {i} lacks {missing} (data.problem_field / "
                       f"data.answer_field); its fields: {sorted(r)}")
    out.append(task.verifier_record(r, i, problem_field, answer_field))
  return out


def _judge(m: _Model, counts: dict):
  """A `budget.Judge` that counts the verifier's failures."""
  def judge(records, texts, ids):
    verdicts, stats = verify_batch(m.verifier, records, texts, ids, pool=m.pool)
    counts["verifier_errors"] += stats["errors"]
    counts["verifier_timeouts"] += stats["timeouts"]
    return verdicts
  return judge


def _run_batch(m: _Model, s: EvalSettings, records, prompts, seed: int, counts) -> list[dict]:
  """Samples, grades, segments and budget-forces the traces of a few problems."""
  n = s.num_samples
  out = m.sampler.generate(m.params, prompts, max_new_tokens=s.max_new_tokens,
                           temperature=s.temperature, top_p=s.top_p, stop_token_ids=m.stop_ids,
                           num_samples=n, seed=seed, keep_cache=True)
  texts = [m.decode(t) for t in out.tokens]
  verdicts, stats = verify_batch(m.verifier, [r for r in records for _ in range(n)], texts,
                                 out.tokens, pool=m.pool)
  counts["verifier_errors"] += stats["errors"]
  counts["verifier_timeouts"] += stats["timeouts"]
  piece = {}
  decode_one = lambda t: piece.setdefault(t, m.decode([t]))
  traces = []
  for i, (tokens, reason) in enumerate(zip(out.tokens, out.finish_reasons)):
    stopped = reason == FINISH_STOP and tokens and tokens[-1] in m.stop_ids
    body = tokens[:-1] if stopped else tokens
    # Segmented as in training: the stop token is neither thinking nor a cut.
    seg = segment(tokens, decode_one, m.seg, m.stop_ids)
    traces.append(dict(
        problem=i // n, sample=i % n, tokens=tokens, text=texts[i], verdict=float(verdicts[i]),
        answer=m.extract_answer(texts[i]), finish=reason,
        think_end=seg.think_end, boundaries=[0, *seg.boundaries],
        ended=reason == FINISH_STOP or seg.think_end < len(body),
        budget_cuts=[min(c, seg.think_end) for c in (0, *s.budgets)]))
  judge = _judge(m, counts)
  prompt_lens = [len(p) for p in prompts for _ in range(n)]
  row_records = [r for r in records for _ in range(n)]
  cuts = [t["budget_cuts"] + t["boundaries"] for t in traces]
  prover, trunk = m.params, out.cache
  if m.prover_params is not None:  # a fixed meta-prover reads the traces from its own cache
    prover = m.prover_params
    trunk = m.sampler.prefill(prover, [list(prompts[i // n]) + list(t)
                                       for i, t in enumerate(out.tokens)])
  success = budget.forced_success(m.sampler, prover, trunk, prompt_lens, cuts, m.probe,
                                  judge, m.decode, seed + 1, row_records,
                                  [t["tokens"] for t in traces])
  C = len(s.budgets) + 1
  for t, j in zip(traces, success):
    t["j_budgets"], t["j_boundaries"] = j[:C], j[C:]
  if s.extrapolation_budgets:
    rows = [list(p) for p in prompts for _ in range(n)]
    ext = budget.extend_thinking(
        m.sampler, m.params, rows, [t["tokens"][:t["think_end"]] for t in traces],
        [t["ended"] for t in traces], budget=s.extrapolation_budgets[-1], wait_tokens=m.wait,
        end_think_tokens=m.end_think, stop_token_ids=m.stop_ids, max_waits=s.max_waits,
        temperature=s.temperature, top_p=s.top_p, seed=seed + 2)
    trunk = m.sampler.prefill(prover, [r + th for r, th in zip(rows, ext.thinking)])
    ext_cuts = [[min(b, len(th)) for b in s.extrapolation_budgets] for th in ext.thinking]
    ext_j = budget.forced_success(m.sampler, prover, trunk, prompt_lens, ext_cuts, m.probe,
                                  judge, m.decode, seed + 3, row_records, ext.thinking)
    for t, c, j, w in zip(traces, ext_cuts, ext_j, ext.waits):
      t.update(ext_cuts=c, j_ext=j, waits=int(w))
  return traces


def _pad_rows(rows: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
  """Ragged rows as a rectangle padded with each row's last value, and the lengths."""
  width = max(len(r) for r in rows)
  return (np.array([list(r) + [r[-1]] * (width - len(r)) for r in rows], np.float64),
          np.array([len(r) for r in rows], np.int64))


def _figures(traces: list[dict], P: int, s: EvalSettings) -> tuple[dict, dict]:
  """(metrics, curves) from the traces of P problems × R samples, problem-major."""
  R = s.num_samples
  correct_PxR = np.array([t["verdict"] > 0.5 for t in traces]).reshape(P, R)
  answers = [[t["answer"] for t in traces[p * R:(p + 1) * R]] for p in range(P)]
  out: dict[str, Any] = {}
  est = metrics.bootstrap_ci(metrics.pass_at_1(correct_PxR), num_resamples=s.num_resamples)
  out["pass@1"], out["pass@1_ci"] = est.value, [est.ci_low, est.ci_high]
  for k in s.k_values:
    out[f"pass@{k}"] = float(metrics.pass_at_k(np.full(P, R), correct_PxR.sum(1), k).mean())
  for k in s.k_values:
    est = metrics.maj_at_k_ci(answers, correct_PxR, k, num_resamples=s.num_resamples)
    out[f"maj@{k}"], out[f"maj@{k}_ci"] = est.value, [est.ci_low, est.ci_high]
  out.update(metrics.mean_token_counts([t["think_end"] for t in traces],
                                       [len(t["tokens"]) - t["think_end"] for t in traces]))
  grid_C = np.array((0, *s.budgets), np.float64)
  j_XxC = np.array([t["j_budgets"] for t in traces])
  for c, j in zip(grid_C, j_XxC.mean(0)):
    out[f"J@{c:g}"] = float(j)
  horizons_H = np.array(s.budgets, np.float64)
  regret_H = regret.mean_normalized_regret(grid_C, j_XxC, horizons_H)
  out.update(report.regret_metrics(horizons_H, regret_H))
  bounds_XxN1, num_points_X = _pad_rows([t["boundaries"] for t in traces])
  j_bounds_XxN1, _ = _pad_rows([t["j_boundaries"] for t in traces])
  episode_H = regret.mean_normalized_regret(bounds_XxN1, j_bounds_XxN1, horizons_H, num_points_X)
  out.update({f"episode_{k}": v for k, v in report.regret_metrics(horizons_H, episode_H).items()})
  out["mean_blocks"] = float(np.mean(num_points_X - 1))
  curves = {
      "budgets": grid_C, "J": j_XxC.mean(0),
      "mean_thinking_tokens": np.mean([t["budget_cuts"] for t in traces], axis=0),
      "episode_J": regret.resample_curve(bounds_XxN1, j_bounds_XxN1, grid_C,
                                         num_points_X).mean(0),
      "horizons": horizons_H, "regret": regret_H, "episode_regret": episode_H}
  return out, curves


def _extrapolation(traces: list[dict], s: EvalSettings, trained_j: float) -> dict:
  """Accuracy when thinking is extended with "Wait" past the largest eval budget."""
  acc_E = np.mean([t["j_ext"] for t in traces], axis=0)
  accuracy = [trained_j, *acc_E.tolist()]
  return {
      "mechanism": (f"thinking extended to each budget; where the model would end its thinking "
                    f"(end-of-thinking tag or end of sequence) the tag is dropped and "
                    f"{s.wait_text!r} appended, at most eval.max_waits={s.max_waits} times; "
                    "then the termination suffix is forced at the budget"),
      "budgets": [s.budgets[-1], *s.extrapolation_budgets], "accuracy": accuracy,
      "mean_thinking_tokens": [float(np.mean([t["budget_cuts"][-1] for t in traces])),
                               *np.mean([t["ext_cuts"] for t in traces], axis=0).tolist()],
      "mean_waits": float(np.mean([t["waits"] for t in traces])),
      "gain": accuracy[-1] - accuracy[0],
      "keeps_rising": bool(np.all(np.diff(accuracy) >= 0) and accuracy[-1] > accuracy[0])}


def _j_estimator(config) -> str:
  """How J(c) is estimated at the cuts: eval.j_estimator (checked)."""
  name = str(config.eval.j_estimator)
  check_estimator(name, "config.eval.j_estimator")
  return name


def _eval_probes(config) -> int:
  """m of the budget-forced probes: eval.num_probes, else probe.num_probes (GRPO runs train
  without probes, probe.num_probes = 0, yet their evaluation still measures J(c)). Not read by
  the likelihood estimator."""
  m = int(config.eval.num_probes or config.probe.num_probes)
  if m < 1 and _j_estimator(config) == "sampled":
    raise ValueError("eval.num_probes and probe.num_probes are both 0; J(c) needs m >= 1 "
                     "forced-answer probes per cut (set --config.eval.num_probes)")
  return m


def evaluate(config, params, model_config, tokenizer, out_dir: str, *,
             checkpoint: str = "params", name: str | None = None, sampler: Sampler | None = None,
             records: Sequence[Mapping[str, Any]] | None = None,
             extra: Mapping[str, Any] | None = None, make_plots: bool = True,
             prover_params: Any = None) -> dict:
  """Evaluates `params` and writes eval.json, samples.jsonl and the plots into `out_dir`.

  Args:
    config: the experiment config (`eval`, `probe`, `segment`, `reward`, `data` blocks).
    params: the policy's params (placed for `sampler`'s mesh when it has one).
    model_config: the architecture (`models.ModelConfig`).
    tokenizer: the policy's tokenizer.
    out_dir: directory for the outputs (created).
    checkpoint: what is evaluated (e.g. its directory), as named in eval.json.
    name: the short label of plot legends and of `compare` (eval.json "name"); default: the
      last component of `checkpoint`.
    sampler: the sampler to use (e.g. the training loop's, sharded); None = a default one.
    records: problems to use instead of `eval_problems(config)`; answers under the configured
      answer field.
    extra: more top-level fields for eval.json (e.g. {"step": 100}).
    make_plots: write the PNGs.
    prover_params: eval.meta_prover's params, already loaded and placed for `sampler` (a
      training run loads them once for all its evaluations); None = loaded here when
      eval.meta_prover names a checkpoint.

  Returns:
    The eval.json record: {"checkpoint", "config", "metrics" (with "pass@1" and
    "normalized_regret"), "budget_forcing", "extrapolation", "plots", ...}.
  """
  s = EvalSettings.from_config(config)
  if records is None:
    records, source = eval_problems(config)
  else:
    source = "records"
  problems = problem_records(records, config.data.problem_field, config.data.answer_field,
                             s.num_problems, source)
  task.check_thinking_tokens(tokenizer, config.segment.end_think, config.probe.termination_suffix)
  sampler = sampler or Sampler(model_config)
  m = _model(config, sampler, params, model_config, tokenizer, s,
             prover_params if prover_params is not None else
             _meta_prover(config, model_config, sampler))
  prompts = [render(tokenizer, r, config.data, source) for r in problems]
  counts = {"verifier_errors": 0, "verifier_timeouts": 0}
  traces = []
  for start in range(0, len(problems), s.problems_per_batch):
    stop = start + s.problems_per_batch
    batch = _run_batch(m, s, problems[start:stop], prompts[start:stop],
                       int(config.seed) * 1_000_003 + 4 * start, counts)
    for t in batch:
      t["problem"] += start
    traces += batch
  figures, curves = _figures(traces, len(problems), s)
  figures.update(counts)
  name = name or os.path.basename(os.path.normpath(checkpoint))
  fields = {"name": name, "dataset": source, "num_problems": len(problems),
            "num_samples": s.num_samples, "budget_forcing": curves,
            "meta_prover": (storage.absolute(str(config.eval.meta_prover))
                            if config.eval.meta_prover else "policy")}
  if s.extrapolation_budgets:
    fields["extrapolation"] = _extrapolation(traces, s, float(curves["J"][-1]))
    figures["extrapolation_gain"] = fields["extrapolation"]["gain"]
    figures["extrapolation_keeps_rising"] = fields["extrapolation"]["keeps_rising"]
  storage.makedirs(out_dir)
  if make_plots:
    fields["plots"] = plot_records({name: dict(fields, metrics=figures)}, out_dir)
  record = report.eval_record(config=config, checkpoint=checkpoint, metrics=figures,
                              extra={**fields, **(extra or {})})
  report.write_eval_json(os.path.join(out_dir, "eval.json"), record)
  report.write_samples_jsonl(os.path.join(out_dir, "samples.jsonl"),
                             (_sample_line(problems, t) for t in traces))
  return record


def render(tokenizer, record: Mapping[str, Any], data, source: str) -> list[int]:
  """The generation prompt of a problem, rendered as in training from the config's `data`
  block; longer than data.max_prompt_len is an error."""
  prompt = render_problem(tokenizer, record["problem"],
                          prompt_template=data.prompt_template,
                          system=data.system, thinking_opener=data.thinking_opener)
  max_prompt_len = data.max_prompt_len
  if len(prompt) > max_prompt_len:
    raise ValueError(f"{source}: problem {record['id']!r} renders to {len(prompt)} prompt tokens; "
                     f"expected at most data.max_prompt_len = {max_prompt_len}")
  return prompt


def _sample_line(problems, t: dict) -> dict:
  fields = dict(answer=t["answer"], finish_reason=t["finish"], thinking_tokens=t["think_end"],
                completion_tokens=len(t["tokens"]), budget_cuts=t["budget_cuts"],
                j_budgets=t["j_budgets"])
  if "j_ext" in t:
    fields.update(extended_cuts=t["ext_cuts"], j_extended=t["j_ext"], waits=t["waits"])
  return report.sample_record(problem_id=problems[t["problem"]]["id"], sample_index=t["sample"],
                              completion=t["text"], boundaries=t["boundaries"],
                              j_values=t["j_boundaries"], verdict=t["verdict"], **fields)


def plot_records(records: Mapping[str, Mapping[str, Any]], out_dir: str) -> dict[str, str]:
  """The three PNGs of one or several evaluations (label -> eval.json record), one line each."""
  accuracy, j_curves, regrets = {}, {}, {}
  for label, rec in records.items():
    bf = rec["budget_forcing"]
    accuracy[f"{label}: forced at c"] = (bf["mean_thinking_tokens"], bf["J"])
    ext = rec.get("extrapolation")
    if ext:
      accuracy[f"{label}: extended with Wait"] = (ext["mean_thinking_tokens"], ext["accuracy"])
    j_curves[f"{label}: budget grid"] = (bf["budgets"], bf["J"])
    j_curves[f"{label}: episode boundaries"] = (bf["budgets"], bf["episode_J"])
    regrets[f"{label}: budget grid"] = (bf["horizons"], bf["regret"])
    regrets[f"{label}: episode boundaries"] = (bf["horizons"], bf["episode_regret"])
  names = dict(zip(("accuracy", "j", "regret"), PLOTS))
  return {
      "accuracy_vs_tokens": plots.plot_accuracy_vs_tokens(
          accuracy, os.path.join(out_dir, names["accuracy"])),
      "j_curves": plots.plot_j_curves(j_curves, os.path.join(out_dir, names["j"])),
      "regret": plots.plot_regret(regrets, os.path.join(out_dir, names["regret"]))}
