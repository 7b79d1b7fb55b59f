"""The model-independent core of evaluation: metrics, J(c) curves and regret, plots, reports.

Public API (numpy in, numpy/float out; no model or JAX needed):
  pass_at_k(n_P, c_P, k) / pass_at_1(correct_PxR)            # per problem, Chen et al. 2021
  maj_at_k(answers_PxR, correct_PxR, k) / maj_at_k_ci(...)    # majority vote, bootstrap interval
  bootstrap_ci(per_problem_P, seed=0)                         # mean over problems with interval
  normalized_regret(budgets_C, j_XxC, horizons_H)             # docs/method.md, exact integral
  resample_curve / resample_traces / curve_from_boundaries    # J(c) curves on a common grid
  plot_accuracy_vs_tokens / plot_j_curves / plot_regret       # PNGs, several models per plot
  eval_record / write_eval_json / sample_record / write_samples_jsonl / summary_line

The model-dependent runner (imports the sampler; loaded on first use):
  evaluate(config, params, model_config, tokenizer, out_dir, ...)  # runner.py; the CLI's body
  EvalSettings.from_config(config) / plot_records(...)             # validated knobs; PNGs
"""

from mrt_jax.evaluation.metrics import (Estimate, bootstrap_ci, default_answer_key, maj_at_k,
                                        maj_at_k_ci, majority_vote, mean_token_counts, pass_at_1,
                                        pass_at_k, token_efficiency, tokens_to_reach)
from mrt_jax.evaluation.plots import plot_accuracy_vs_tokens, plot_j_curves, plot_regret
from mrt_jax.evaluation.regret import (curve_from_boundaries, mean_normalized_regret,
                                       normalized_regret, resample_curve, resample_traces)
from mrt_jax.evaluation.report import (REQUIRED_METRICS, eval_record, regret_metrics,
                                       sample_record, summary_line, to_jsonable, write_eval_json,
                                       write_samples_jsonl)

_RUNNER_NAMES = ("EvalSettings", "evaluate", "plot_records")

__all__ = [
    "Estimate", "REQUIRED_METRICS", "bootstrap_ci", "curve_from_boundaries",
    "default_answer_key", "eval_record", "maj_at_k", "maj_at_k_ci", "majority_vote",
    "mean_normalized_regret", "mean_token_counts", "normalized_regret", "pass_at_1",
    "pass_at_k", "plot_accuracy_vs_tokens", "plot_j_curves", "plot_regret", "regret_metrics",
    "resample_curve", "resample_traces", "sample_record", "summary_line", "to_jsonable",
    "token_efficiency", "tokens_to_reach", "write_eval_json", "write_samples_jsonl",
    *_RUNNER_NAMES,
]


def __getattr__(name):
  # The runner imports the sampler and JAX; the metrics above stay importable without them.
  if name in _RUNNER_NAMES:
    from mrt_jax.evaluation import runner
    return getattr(runner, name)
  raise AttributeError(f"module 'mrt_jax.evaluation' has no attribute {name!r}")
