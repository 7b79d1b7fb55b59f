"""The meta-prover's answer rows: maximum likelihood of μ, trained beside the RL loss.

MRT's progress reads J, the success of μ, the policy forced to answer at a cut of its own
thinking. RL trains the policy on natural rollouts only, which never pass through the
termination suffix, so nothing keeps μ's forced answers where the warm start put them: over a
run J drifts, and with it the progress the advantages read and the regret the evaluation
measures. With `loss.answer_nll_coef` λ > 0 each step also trains μ by maximum likelihood, one
row per rollout:

  context   prompt + completion[:b] + termination suffix   (exactly what a probe at b feeds)
  targets   the record's reference answer (probe.answer_template) + end of sequence

at a boundary b drawn uniformly from the rollout's b_0..b_N (the cuts the training probes use).
The reference answer at an intermediate cut is right: the cross-entropy's minimizer is μ's
calibrated success, P(answer | the cut), which is the J the method defines (the likelihood
meta-prover scores exactly these tokens). The learner adds λ × their token-mean NLL to the
policy loss (`mrt_jax.learner.step`).

Letters: B rollouts, L the answer rows' length.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from mrt_jax.mrt.meta_prover import AnswerTemplate
from mrt_jax.mrt.segment import Segmentation


def answer_rows(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                segments: Sequence[Segmentation], records: Sequence[Mapping[str, Any]],
                answer: AnswerTemplate, suffix: Sequence[int], rng: np.random.Generator,
                length: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """One forced-answer row per rollout (module docstring), right-padded.

  Args:
    prompts, completions, segments, records: per rollout (B of each); `records[i]["answer"]` is
      rollout i's reference answer.
    answer: how μ writes the reference answer (its tokens end with the stop token).
    suffix: the termination suffix's tokens.
    rng: draws each rollout's boundary.
    length: the rows' length L; None = the longest row.

  Returns:
    ({"answer_tokens": int32 [B, L], "answer_mask": f32 [B, L] (1 on the answer and its stop
    token)} for the learner's batch, int32 [B] the boundaries b drawn (token offsets in the
    completions)).

  Raises:
    ValueError: a record has no reference answer, the inputs disagree on B, or a row is longer
      than `length`.
  """
  n = {len(prompts), len(completions), len(segments), len(records)}
  if len(n) != 1:
    raise ValueError(f"answer_rows: prompts, completions, segments and records have "
                     f"{len(prompts)}, {len(completions)}, {len(segments)} and {len(records)} "
                     "entries; expected one each per rollout")
  rows, cuts = [], []
  for i, (prompt, completion, seg, record) in enumerate(
      zip(prompts, completions, segments, records)):
    if record.get("answer") is None:
      raise ValueError(f"rollout {i}: its record has no reference answer under 'answer' "
                       f"(config data.answer_field), which loss.answer_nll_coef > 0 trains "
                       f"the meta-prover on; fields: {sorted(record)}")
    bounds = (0, *seg.boundaries)
    cut = int(bounds[rng.integers(len(bounds))])
    context = [*prompt, *completion[:cut], *suffix]
    rows.append((context, list(answer.tokens(record["answer"]))))
    cuts.append(cut)
  longest = max((len(c) + len(a) for c, a in rows), default=1)
  length = longest if length is None else length
  if longest > length:
    raise ValueError(f"answer_rows: a row holds {longest} tokens, more than length={length}")
  tokens = np.zeros((len(rows), length), np.int32)
  mask = np.zeros((len(rows), length), np.float32)
  for i, (context, targets) in enumerate(rows):
    end = len(context) + len(targets)
    tokens[i, :end] = context + targets
    mask[i, len(context):end] = 1.0
  return {"answer_tokens": tokens, "answer_mask": mask}, np.asarray(cuts, np.int32)
