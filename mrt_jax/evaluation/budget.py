"""Budget forcing: forced answers after c thinking tokens, and thinking extended with "Wait".

Forcing at a cut (`forced_success`). The meta-prover μ (docs/method.md) at a cut c of a trace is
the policy fed the prompt, the first c thinking tokens and the termination suffix, decoding a
short answer; J = the mean verdict of its m probes, or with `eval.j_estimator = "likelihood"`
the probability that it writes the reference answer (`mrt_jax.mrt.meta_prover`: no probe noise
in the curves). Either way the cuts fork the trace's KV cache in place: nothing is re-prefilled.
Cuts repeated within a trace (e.g. every budget past the end of thinking lands on the end of
thinking) are probed once and share their estimate.

Extension beyond the trained budget (`extend_thinking`), s1-style budget forcing with "Wait":
  1. start from the trace's own thinking (the tokens before its end-of-thinking tag);
  2. if that thinking ENDED (the model wrote the end-of-thinking tag, or a stop token, before the
     budget), append the wait tokens (e.g. "Wait") and count one wait; if it was only cut by the
     sampling length, append nothing;
  3. sample a continuation of prompt + thinking with the end-of-thinking tag and the stop tokens
     as stops, at most budget − len(thinking) tokens; drop the stop tag/token it ends with;
  4. repeat from 2 until the thinking holds `budget` tokens or the row has used `max_waits`
     waits and ended again. The final thinking (≤ budget tokens) is then forced at its cuts.
Each round re-prefills prompt + thinking (one `Sampler.generate` call for all active rows); this
is evaluation-only code, off the training hot path. Below the budget, nothing in the process
depends on the budget (a wait follows every stop until `max_waits`), so the first B tokens of a
thinking extended to B' > B are distributed as a thinking extended to B: one extension to the
largest budget serves every smaller one, read at min(B, length) tokens.

Letters: B trunk rows (traces), U cuts of one trace, M probes per cut (the paper's m).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mrt_jax.mrt.meta_prover import J_ESTIMATORS, AnswerTemplate, Cuts, ProverSettings
from mrt_jax.sampling import FINISH_STOP, Sampler

# (the problem record of each answer, texts, token ids) -> verdicts in [0, 1].
Judge = Callable[[Sequence[Mapping[str, Any]], Sequence[str], Sequence[Sequence[int]]],
                 np.ndarray]


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """How the meta-prover μ answers at a cut (config `probe.*`, `eval.j_estimator`)."""
  suffix_tokens: tuple[int, ...]   # the termination suffix, tokenized (ends the thinking)
  num_probes: int                  # m probes per cut (sampled)
  max_answer_len: int              # tokens a probe may write after the suffix
  temperature: float
  top_p: float
  stop_token_ids: tuple[int, ...]  # end of sequence
  estimator: str = "sampled"       # J estimator (`mrt_jax.mrt.meta_prover.J_ESTIMATORS`)
  answer: AnswerTemplate | None = None  # the reference answer (likelihood)
  task_prover: Callable[[Mapping[str, Any], str], float] | None = None  # J of a text (task)


def forced_success(sampler: Sampler, params, trunk, prompt_lens: Sequence[int],
                   cuts: Sequence[Sequence[int]], settings: ProbeSettings, judge: Judge,
                   decode: Callable[[Sequence[int]], str], seed: int,
                   records: Sequence[Mapping[str, Any]] | None = None,
                   completions: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
  """J at every cut of every trunk row, by the estimator `settings.estimator` names: the mean
  verdict of m forced-answer probes, the likelihood of the reference answer, or the task's
  exact meta-prover on the cut's thinking text.

  Args:
    sampler: the sampler holding the model.
    params: model params.
    trunk: KV cache whose row r holds prompt r followed by (at least) its thinking
      (`generate(..., keep_cache=True)` or `Sampler.prefill`).
    prompt_lens: [B] prompt length of each trunk row; cuts are offsets after it.
    cuts: per trunk row, thinking-token offsets to force an answer at (0 = empty thinking).
    settings: the probes' suffix, sampling and estimator.
    judge: verdicts of the probes' texts (suffix + answer), given each probe's record.
    decode: token ids -> text.
    seed: probe sampling seed.
    records: [B] the problem record of each trunk row (the likelihood estimator reads its
      "answer"); None = empty records.
    completions: [B] each trunk row's tokens after its prompt (at least up to its last cut);
      the task estimator reads the cuts' thinking decoded from them, and runs no model.

  Returns:
    Per trunk row, float64 [U] J at its cuts (in the order given).
  """
  unique = [sorted(set(int(c) for c in row)) for row in cuts]
  sources = [r for r, row in enumerate(unique) for _ in row]
  if not sources:
    return [np.zeros(0) for _ in cuts]
  records = [{} for _ in cuts] if records is None else records
  estimator = J_ESTIMATORS[settings.estimator]
  thinking = None
  if estimator.reads_text:
    if completions is None:
      raise ValueError(f"the {settings.estimator!r} J estimator reads the cuts' thinking text; "
                       "forced_success needs `completions`")
    thinking = [decode(completions[r][:c]) for r, row in enumerate(unique) for c in row]
  where = Cuts(sources, [prompt_lens[r] + c for r, row in enumerate(unique) for c in row],
               [records[r] for r in sources], thinking=thinking)
  prover = ProverSettings(settings.suffix_tokens, settings.num_probes, settings.max_answer_len,
                          settings.temperature, settings.top_p, settings.stop_token_ids,
                          settings.answer, settings.task_prover)
  j_probe, _ = estimator.fn(sampler, params, trunk, where, prover, judge, decode, seed)
  success, i = [], 0
  for row_cuts, row_unique in zip(cuts, unique):
    by_cut = dict(zip(row_unique, j_probe[i:i + len(row_unique)]))
    i += len(row_unique)
    success.append(np.array([by_cut[int(c)] for c in row_cuts], np.float64))
  return success


@dataclasses.dataclass(frozen=True)
class Extended:
  """Thinking extended to a budget (module docstring)."""
  thinking: list[list[int]]  # [B] thinking tokens, wait tokens included, at most the budget
  waits: np.ndarray          # int [B] wait insertions per row
  rounds: int                # generate calls made


def _strip_stop(tokens: list[int], end_think: Sequence[int], stop_ids: Sequence[int]):
  """`tokens` without the end-of-thinking tag or stop token it finished on."""
  n = len(end_think)
  if n and tokens[-n:] == list(end_think):
    return tokens[:-n]
  if tokens and tokens[-1] in stop_ids:
    return tokens[:-1]
  return tokens


def extend_thinking(sampler: Sampler, params, prompts: Sequence[Sequence[int]],
                    thinking: Sequence[Sequence[int]], ended: Sequence[bool], *, budget: int,
                    wait_tokens: Sequence[int], end_think_tokens: Sequence[int],
                    stop_token_ids: Sequence[int], max_waits: int, temperature: float,
                    top_p: float, seed: int) -> Extended:
  """Extends each row's thinking to `budget` tokens, appending a wait where it would stop.

  Args:
    sampler: the sampler holding the model.
    params: model params.
    prompts: [B] prompt tokens.
    thinking: [B] the traces' thinking tokens (without the end-of-thinking tag).
    ended: [B] whether each thinking ended on its own (tag or stop token) rather than at the
      sampling length.
    budget: thinking tokens to reach.
    wait_tokens: appended where the model would stop thinking (e.g. "Wait" tokenized).
    end_think_tokens: the end-of-thinking tag (a stop sequence during extension).
    stop_token_ids: end-of-sequence tokens (a stop as well: the model would stop).
    max_waits: waits per row at most; a row that ends again after them keeps its thinking.
    temperature, top_p: sampling of the continuations (the evaluation's).
    seed: base seed; round k samples with seed + k.

  Returns:
    The extended thinking, waits per row and rounds used.
  """
  if budget < 1 or max_waits < 0 or not wait_tokens:
    raise ValueError(f"extend_thinking: budget={budget}, max_waits={max_waits}, wait_tokens="
                     f"{list(wait_tokens)}; expected budget >= 1, max_waits >= 0 and non-empty "
                     "wait tokens")
  if not len(prompts) == len(thinking) == len(ended):
    raise ValueError(f"extend_thinking: {len(prompts)} prompts, {len(thinking)} thinking and "
                     f"{len(ended)} ended flags; expected one of each per row")
  thinking = [list(t[:budget]) for t in thinking]
  ended = [bool(e) for e in ended]
  waits = np.zeros(len(thinking), np.int64)
  rounds = 0
  while True:
    active = [i for i, t in enumerate(thinking)
              if len(t) < budget and (not ended[i] or waits[i] < max_waits)]
    for i in active:
      if ended[i]:
        thinking[i] = (thinking[i] + list(wait_tokens))[:budget]
        waits[i] += 1
    active = [i for i in active if len(thinking[i]) < budget]
    if not active:
      return Extended(thinking, waits, rounds)
    room = {i: budget - len(thinking[i]) for i in active}
    out = sampler.generate(params, [list(prompts[i]) + thinking[i] for i in active],
                           max_new_tokens=max(room.values()), temperature=temperature,
                           top_p=top_p, stop_sequences=[list(end_think_tokens)],
                           stop_token_ids=stop_token_ids, seed=seed + rounds)
    rounds += 1
    for i, tokens, reason in zip(active, out.tokens, out.finish_reasons):
      # A row that stops only after its own budget was cut by the budget, not by the model.
      stopped = reason == FINISH_STOP and len(tokens) <= room[i]
      tokens = _strip_stop(tokens, end_think_tokens, stop_token_ids) if stopped else tokens
      thinking[i] += tokens[:room[i]]
      ended[i] = stopped
