"""The meta-prover's answer rows: μ trained beside the RL loss, so that RL does not erode J.

MRT's progress reads J, the success of μ, the policy forced to answer at a cut of its own
thinking. RL trains the policy on natural rollouts only, which never pass through the
termination suffix, so nothing keeps μ's forced answers where the warm start put them: over a
run J drifts, and with it the progress the advantages read and the regret the evaluation
measures. With `loss.answer_nll_coef` λ > 0 each step also trains μ by maximum likelihood, one
row per rollout:

  context   prompt + completion[:b] + termination suffix   (exactly what a probe at b feeds)
  targets   an answer, then end of sequence

at a boundary b drawn uniformly from the rollout's b_0..b_N (the cuts the training probes use).
The learner adds λ × the targets' token-mean NLL to the policy loss (`mrt_jax.learner.step`).
Where the answer comes from is `loss.answer_target`, registered in `ANSWER_TARGETS`:

  warm_start  an answer sampled (temperature 1) from the frozen warm start at the same context:
              maximum likelihood of its samples minimizes KL(μ_warm ‖ μ_θ) at the policy's
              current cuts, so μ stays the meta-prover the warm start made, on the traces the
              policy writes now. Needs no reference answer.
  reference   the record's reference answer (probe.answer_template): the cross-entropy's
              minimizer is the calibrated P(answer | cut), the likelihood estimator's J. It
              teaches μ the task itself: at b_0 (the prompt alone) μ learns to answer without
              thinking, and J_0 rises with it (RESULTS.md measures this on the demo's task).

Letters: B rollouts, L the answer rows' length.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from mrt_jax.mrt.meta_prover import AnswerTemplate
from mrt_jax.mrt.segment import Segmentation

# The registered sources of the answer rows' targets (config `loss.answer_target`).
ANSWER_TARGETS = ("warm_start", "reference")


def check_target(name: str) -> None:
  """Raises naming config.loss.answer_target unless `name` is a registered answer target."""
  if name not in ANSWER_TARGETS:
    raise ValueError(f"config.loss.answer_target={name!r} is unknown; expected one of "
                     f"{sorted(ANSWER_TARGETS)}")


def draw_cuts(segments: Sequence[Segmentation], rng: np.random.Generator) -> np.ndarray:
  """int32 [B]: per rollout a boundary drawn uniformly from b_0 = 0, b_1..b_N (token offsets in
  the completion)."""
  return np.asarray([(0, *s.boundaries)[rng.integers(s.num_blocks + 1)] for s in segments],
                    np.int32)


def contexts(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
             cuts: Sequence[int], suffix: Sequence[int]) -> list[list[int]]:
  """Per rollout, what a probe at its cut feeds: prompt + completion[:cut] + suffix."""
  if not len(prompts) == len(completions) == len(cuts):
    raise ValueError(f"contexts: {len(prompts)} prompts, {len(completions)} completions and "
                     f"{len(cuts)} cuts; expected one each per rollout")
  return [[*p, *c[:int(b)], *suffix] for p, c, b in zip(prompts, completions, cuts)]


def reference_targets(records: Sequence[Mapping[str, Any]],
                      answer: AnswerTemplate) -> list[tuple[int, ...]]:
  """Per rollout, its record's reference answer as μ should write it, stop token included.

  Raises:
    ValueError: a record has no reference answer.
  """
  out = []
  for i, record in enumerate(records):
    if record.get("answer") is None:
      raise ValueError(f"rollout {i}: its record has no reference answer under 'answer' "
                       "(config data.answer_field), which loss.answer_target='reference' "
                       f"trains the meta-prover on; fields: {sorted(record)}")
    out.append(answer.tokens(record["answer"]))
  return out


def answer_rows(contexts_: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                length: int | None = None) -> dict[str, np.ndarray]:
  """Right-padded learner rows: context then targets, the mask on the targets.

  Args:
    contexts_: per rollout, the context (`contexts`).
    targets: per rollout, the answer tokens to train (>= 1 each).
    length: the rows' length L; None = the longest row.

  Returns:
    {"answer_tokens": int32 [B, L], "answer_mask": f32 [B, L]}.

  Raises:
    ValueError: the two disagree on B, a target is empty, or a row is longer than `length`.
  """
  if len(contexts_) != len(targets):
    raise ValueError(f"answer_rows: {len(contexts_)} contexts and {len(targets)} targets; "
                     "expected one each per rollout")
  for i, t in enumerate(targets):
    if not len(t):
      raise ValueError(f"answer_rows: rollout {i} has an empty answer; expected >= 1 token")
  longest = max((len(c) + len(t) for c, t in zip(contexts_, targets)), default=1)
  length = longest if length is None else length
  if longest > length:
    raise ValueError(f"answer_rows: a row holds {longest} tokens, more than length={length}")
  tokens = np.zeros((len(targets), length), np.int32)
  mask = np.zeros((len(targets), length), np.float32)
  for i, (context, answer) in enumerate(zip(contexts_, targets)):
    end = len(context) + len(answer)
    tokens[i, :end] = [*context, *answer]
    mask[i, len(context):end] = 1.0
  return {"answer_tokens": tokens, "answer_mask": mask}
