"""The meta-prover μ's success J at a cut: sampled forced answers, or the likelihood of the
reference answer.

μ at a cut (a prefix of a trace) is the policy fed the prefix and the termination suffix, which
closes the thinking and asks for the answer. Two estimators of its success J, registered by name
in `J_ESTIMATORS` (config `probe.estimator`):

  sampled     (the paper's) J = the mean verdict of m answers sampled after the suffix
              (`Sampler.fork`). Unbiased; binomial noise of variance J(1 − J)/m, so progress
              p_j = J_j − J_{j−1} carries a standard deviation up to √(2·J(1−J)/m).
  likelihood  J = P(μ writes the reference answer): the record's answer rendered by
              `probe.answer_template`, tokenized on its own after the suffix's tokens, then
              the stop token (the demo's forced answers are laid out so), scored
              by teacher forcing on the forked KV cache (`Sampler.score_forks`, one forward
              pass over all cuts, no decoding) under exactly the distribution the sampled
              probes draw from (temperature, top-k/top-p as `sampling/rules.py` applies them).
              No sampling noise: the same traces give the same J.
  task        J = the task's own success function of the thinking text before the cut
              (`probe.task_prover`, registered with `mrt_jax.rewards.register_task_prover`): a
              meta-prover the task defines exactly (the elimination puzzle's: a guess among the
              letters its checked clues leave). No model runs; the cuts' texts are decoded from
              the traces' tokens. It measures what the paper's μ would if μ were exact, and
              does not drift as the policy trains.

How the two relate. The sampled estimator's expectation is Σ over answers a with verdict(a) = 1
of P(a). For a task whose verifier accepts exactly one token string (reference + stop, e.g. the
demo's `\\boxed{X}`), that sum has one term and the likelihood equals it exactly. For math, other
strings are also right (other written forms, text before the box, another tokenization), so
the likelihood is a lower bound of the sampled J's expectation; the bound is tight when μ writes
the answer in the template's form. Likelihood-of-reference rewards are established for whole
responses (VeriFree, JEPO, RLPR, NOVER); here they give MRT's per-block J.

Letters: U cuts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mrt_jax.sampling import Probe, Sampler


@dataclasses.dataclass(frozen=True)
class AnswerTemplate:
  """The reference answer as μ should write it after the termination suffix.

  Attributes:
    template: `str.format` template with an `{answer}` field (config `probe.answer_template`),
      e.g. "\\\\boxed{{{answer}}}" renders answer 7 as "\\boxed{7}".
    stop_token: the token that ends the answer (end of sequence).
    encode: text -> token ids (the policy's tokenizer, no special tokens added).
  """
  template: str
  stop_token: int
  encode: Callable[[str], Sequence[int]]

  def __post_init__(self):
    try:
      rendered = self.template.format(answer="ANSWER")
    except (KeyError, IndexError, ValueError) as e:
      raise ValueError(f"probe.answer_template={self.template!r} is not a str.format template "
                       f"with one {{answer}} field ({type(e).__name__}: {e}); expected e.g. "
                       "'\\\\boxed{{{answer}}}'") from None
    if "ANSWER" not in rendered:
      raise ValueError(f"probe.answer_template={self.template!r} has no {{answer}} field; "
                       "expected e.g. '\\\\boxed{{{answer}}}'")

  def tokens(self, answer: Any) -> tuple[int, ...]:
    """Token ids of the rendered answer, then the stop token.

    The answer is tokenized on its own: μ continues the suffix's tokens as they are fed, so its
    answer starts at a token boundary even where a tokenizer would merge the suffix's last
    characters with the answer's first (a BPE trained on "\\n\\n\\\\boxed" does).

    Raises:
      ValueError: the rendered answer is empty.
    """
    text = self.template.format(answer=answer)
    ids = tuple(int(t) for t in self.encode(text))
    if not ids:
      raise ValueError(f"probe.answer_template={self.template!r} renders answer {answer!r} as "
                       f"{text!r}, which has no tokens; expected a non-empty answer")
    return ids + (int(self.stop_token),)


@dataclasses.dataclass(frozen=True)
class Cuts:
  """Where μ answers: trunk row `sources[u]` cut at token `boundaries[u]`, for each cut u.

  With `prompts`, the cuts are not in a trunk: cut u's prefix is `prompts[u]` itself (the empty
  thinking, b_0), fed with the suffix as a fresh prompt; `sources` and `boundaries` are unused.
  `thinking` holds the decoded tokens between a cut's prompt and its boundary, for estimators
  that read text (`JEstimator.reads_text`).
  """
  sources: Sequence[int]
  boundaries: Sequence[int]
  records: Sequence[Mapping[str, Any]]  # the problem record of each cut (its gold answer)
  prompts: Sequence[Sequence[int]] | None = None
  thinking: Sequence[str] | None = None  # each cut's thinking text (estimators that read it)


@dataclasses.dataclass(frozen=True)
class ProverSettings:
  """How μ answers (config `probe.*`)."""
  suffix_tokens: tuple[int, ...]   # the termination suffix, tokenized
  num_probes: int                  # m answers per cut (sampled)
  max_answer_len: int              # tokens an answer may hold (sampled)
  temperature: float
  top_p: float
  stop_token_ids: tuple[int, ...]  # end of sequence
  answer: AnswerTemplate | None = None  # the reference answer (likelihood)
  task_prover: Callable[[Mapping[str, Any], str], float] | None = None  # J of the thinking (task)


# (records of each answer, answer texts, answer token ids) -> verdicts in [0, 1].
Verdicts = Callable[[Sequence[Mapping[str, Any]], Sequence[str], Sequence[Sequence[int]]],
                    np.ndarray]


def sampled_j(sampler: Sampler, params, trunk, cuts: Cuts, s: ProverSettings,
              verdicts: Verdicts, decode: Callable[[Sequence[int]], str],
              seed: int) -> tuple[np.ndarray, dict]:
  """J at every cut: the mean verdict of m answers sampled after the suffix.

  Returns:
    (float64 [U] J, stats: "num_probes" and "answers" (the answers sampled), "answer_tokens"
    (their total length)).
  """
  suffix = list(s.suffix_tokens)
  kwargs = dict(max_new_tokens=s.max_answer_len, temperature=s.temperature, top_p=s.top_p,
                stop_token_ids=s.stop_token_ids, seed=seed)
  if cuts.prompts is not None:
    out = sampler.generate(params, [list(p) + suffix for p in cuts.prompts],
                           num_samples=s.num_probes, **kwargs)
  else:
    out = sampler.fork(params, trunk, [Probe(r, b, s.suffix_tokens, s.num_probes)
                                       for r, b in zip(cuts.sources, cuts.boundaries)], **kwargs)
  suffix_text = decode(suffix)
  records = [r for r in cuts.records for _ in range(s.num_probes)]
  v = verdicts(records, [suffix_text + decode(t) for t in out.tokens],
               [suffix + list(t) for t in out.tokens])
  j_U = np.asarray(v, np.float64).reshape(len(cuts.records), s.num_probes).mean(axis=1)
  return j_U, {"num_probes": len(out.tokens), "answers": len(out.tokens),
               "answer_tokens": sum(len(t) for t in out.tokens)}


def likelihood_j(sampler: Sampler, params, trunk, cuts: Cuts, s: ProverSettings,
                 verdicts: Verdicts, decode: Callable[[Sequence[int]], str],
                 seed: int) -> tuple[np.ndarray, dict]:
  """J at every cut: P(μ writes the reference answer), by teacher forcing (module docstring).

  Returns:
    (float64 [U] J, stats: "num_probes" = 0 sampled answers, "answers" scored and
    "answer_tokens", their total length).
  """
  del verdicts, decode, seed  # nothing is sampled or graded
  if s.answer is None:
    raise ValueError("the likelihood meta-prover needs the reference answer's template "
                     "(probe.answer_template); none was given")
  answers = []
  for i, record in enumerate(cuts.records):
    if record.get("answer") is None:
      raise ValueError(f"cut {i}: its record has no reference answer under 'answer' (config "
                       f"data.answer_field); fields: {sorted(record)}")
    answers.append(s.answer.tokens(record["answer"]))
  rules = dict(temperature=s.temperature, top_p=s.top_p)
  if cuts.prompts is not None:
    logprobs = sampler.score(params, [list(p) + list(s.suffix_tokens) for p in cuts.prompts],
                             answers, **rules)
  else:
    logprobs = sampler.score_forks(params, trunk, [
        Probe(r, b, s.suffix_tokens) for r, b in zip(cuts.sources, cuts.boundaries)], answers,
                                   **rules)
  j_U = np.exp(np.array([float(np.sum(lp, dtype=np.float64)) for lp in logprobs]))
  return j_U, {"num_probes": 0, "answers": len(answers),
               "answer_tokens": sum(len(a) for a in answers)}


def task_j(sampler: Sampler, params, trunk, cuts: Cuts, s: ProverSettings,
           verdicts: Verdicts, decode: Callable[[Sequence[int]], str],
           seed: int) -> tuple[np.ndarray, dict]:
  """J at every cut: the task prover's success of the cut's thinking text (module docstring).

  Returns:
    (float64 [U] J, stats: "num_probes" = 0 sampled answers, "answers" = the cuts judged,
    "answer_tokens" = 0).

  Raises:
    ValueError: no task prover or no thinking texts were given, or a J is outside [0, 1].
  """
  del sampler, params, trunk, verdicts, decode, seed  # no model runs
  if s.task_prover is None:
    raise ValueError("the task meta-prover needs a registered task prover "
                     "(probe.task_prover); none was given")
  if cuts.thinking is None or len(cuts.thinking) != len(cuts.records):
    raise ValueError("the task meta-prover reads each cut's thinking text; the cuts carry "
                     f"{'none' if cuts.thinking is None else len(cuts.thinking)} for "
                     f"{len(cuts.records)} cuts")
  j_U = np.array([float(s.task_prover(r, t)) for r, t in zip(cuts.records, cuts.thinking)],
                 np.float64)
  bad = np.flatnonzero(~((j_U >= 0) & (j_U <= 1)))
  if bad.size:
    u = int(bad[0])
    raise ValueError(f"the task prover returned J={j_U[u]} at cut {u} (record id "
                     f"{cuts.records[u].get('id')!r}); expected a number in [0, 1]")
  return j_U, {"num_probes": 0, "answers": len(j_U), "answer_tokens": 0}


@dataclasses.dataclass(frozen=True)
class JEstimator:
  """A registered estimator of J.

  Attributes:
    fn: (sampler, params, trunk, cuts, settings, verdicts, decode, seed) -> (J [U], stats).
    heads_apart: estimate the b_0 cuts (the prompt alone, shared by a group) from fresh
      prompts (`Cuts.prompts`) rather than as forks of one of the group's rows. Sampled answers
      want it: m more rows on one trunk row widen the fork grid for every row. A likelihood
      cut is one row, so b_0 joins the fork and a step makes one scoring call.
  """
  fn: Callable[..., tuple[np.ndarray, dict]]
  heads_apart: bool
  reads_text: bool = False  # reads `Cuts.thinking` (the cuts' texts must be decoded)
  uses_model: bool = True   # runs μ on the traces' KV cache (False: no cache is needed)


J_ESTIMATORS: dict[str, JEstimator] = {
    "sampled": JEstimator(sampled_j, heads_apart=True),
    "likelihood": JEstimator(likelihood_j, heads_apart=False),
    "task": JEstimator(task_j, heads_apart=False, reads_text=True, uses_model=False),
}


def check_estimator(name: str, field: str) -> None:
  """Raises naming `field` unless `name` is a registered J estimator."""
  if name not in J_ESTIMATORS:
    raise ValueError(f"{field}={name!r} is unknown; expected one of {sorted(J_ESTIMATORS)}")


def prover_answer(config, tokenizer, field: str,
                  j_estimator: str) -> AnswerTemplate | None:
  """The reference-answer template of the likelihood J estimator (None for other estimators),
  with its settings checked; errors name config.`field` (the field that chose the estimator).

  Args:
    config: the experiment config (`probe`, `data`, `model` blocks).
    tokenizer: the policy's tokenizer (Hugging Face interface).
    field: "probe.estimator" (training) or "eval.j_estimator" (evaluation).
    j_estimator: the estimator that field names.
  """
  if j_estimator != "likelihood":
    return None
  return reference_answer(config, tokenizer, f"config.{field}='likelihood'")


def prover_task(config, field: str, j_estimator: str):
  """The task prover of the task J estimator (None for other estimators): the function
  registered under config.probe.task_prover; errors name config.`field` and that field."""
  if j_estimator != "task":
    return None
  from mrt_jax.rewards import TASK_PROVERS, get_task_prover  # Lazily: rewards load SymPy.
  name = str(config.probe.get("task_prover", ""))
  if not name:
    raise ValueError(f"config.{field}='task' reads J from the task's own success function, "
                     "but config.probe.task_prover is empty; expected one of "
                     f"{sorted(TASK_PROVERS)} (mrt_jax.rewards.register_task_prover)")
  return get_task_prover(name, "config.probe.task_prover")


def reference_answer(config, tokenizer, needed_by: str) -> AnswerTemplate:
  """How μ writes a record's reference answer (`probe.answer_template`, `data.answer_field`,
  the tokenizer's eos), checked; errors begin with `needed_by`, the setting that reads it
  (e.g. "config.loss.answer_target='reference'")."""
  if not config.data.get("answer_field", ""):
    raise ValueError(f"{needed_by} needs each record's reference answer, but "
                     "config.data.answer_field is empty; expected the record field holding it")
  template = config.probe.get("answer_template", "")
  if not template:
    raise ValueError(f"{needed_by} needs config.probe.answer_template (how μ "
                     "writes the answer, e.g. '\\boxed{{{answer}}}'); it is empty")
  if tokenizer.eos_token_id is None:
    raise ValueError(f"{needed_by} ends the reference answer with the "
                     f"tokenizer's eos token, but {config.model.tokenizer_path!r} defines none")
  return AnswerTemplate(template, tokenizer.eos_token_id,
                        lambda text: tokenizer.encode(text, add_special_tokens=False))
