"""Warm start by SFT, for any task and tokenizer, laid out token for token as a run feeds them.

MRT's progress is only as meaningful as the meta-prover μ, the policy forced to answer at a cut
of its own thinking. A model that has never answered after the termination suffix scores J = 0
everywhere, so a warm start trains two kinds of example (`mrt_jax.train.sft.Example`):
- traces: the prompt as context, then a whole completion (thinking, end-of-thinking tag,
  answer) and the end-of-sequence token as targets;
- forced answers: the prompt, a trace's own tokens cut at c and the separately tokenized
  termination suffix as context (exactly the sequence a probe at boundary c feeds the model,
  `Sampler.fork`), then the answer μ should write there and end of sequence as targets. The
  suffix is never a target: a model that learned to write it would stop thinking early.

  layout = Layout.from_config(config, tokenizer)
  prompt = layout.prompt(record["problem"])          # as training and evaluation render it
  ids = layout.encode(completion)                      # "...thinking...</think> 42"
  traces = [layout.trace(prompt, ids)]
  answers = [layout.forced_answer(prompt, ids, cut, " 42") for cut in layout.boundaries(ids)]
  params, losses = train_sft(model_config, params, [traces, answers], plan=[0] * 200 + [1] * 100,
                             batch_size=8, learning_rate=1e-4, seed=0)

The cuts the training probes use are `boundaries` (b_0..b_N of the configured segmenter, computed
on the same decoded pieces); the evaluation's budget cuts fall anywhere in 0..b_N. Answers get
steps of their own in the plan (`train_sft`): in batches mixed with traces, a few answer tokens
per example weigh nothing against the traces' hundreds. `mrt_jax.train.demo` is a complete
example (the CPU demo's warm start).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from mrt_jax import task
from mrt_jax.data.pipeline import render_problem
from mrt_jax.mrt.segment import SegmentConfig, segment
from mrt_jax.train.rollout import token_pieces
from mrt_jax.train.sft import Example, example, sft_batch, train_sft

__all__ = ["Example", "Layout", "example", "forced_answer_example", "sft_batch",
           "trace_example", "train_sft"]


def trace_example(prompt: Sequence[int], completion: Sequence[int], eos_id: int,
                  weights: Sequence[float] | None = None) -> Example:
  """The prompt as context, then the completion and end of sequence as targets.

  Args:
    prompt: the rendered prompt's ids.
    completion: the completion's ids (without end of sequence).
    eos_id: the end-of-sequence id, appended as a target.
    weights: optional per-token loss weights of the completion (default 1).
  """
  return example((prompt, False), (completion, True if weights is None else weights),
                 ([eos_id], True))


def forced_answer_example(prompt: Sequence[int], completion: Sequence[int], cut: int,
                          suffix: Sequence[int], answer: Sequence[int], eos_id: int) -> Example:
  """μ at a cut: prompt + completion[:cut] + suffix as context; answer + eos as targets.

  The context is exactly what a probe at thinking offset `cut` feeds the model.
  """
  if not 0 <= cut <= len(completion):
    raise ValueError(f"forced_answer_example: cut={cut}; expected 0 <= cut <= "
                     f"{len(completion)} (the completion's length)")
  return example((list(prompt) + list(completion[:cut]) + list(suffix), False),
                 (list(answer) + [eos_id], True))


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a run lays out prompts, probes and cuts for one config and tokenizer."""
  tokenizer: Any
  suffix: tuple[int, ...]          # probe.termination_suffix, tokenized as the probes do
  eos_id: int
  segment: SegmentConfig
  prompt_template: str
  system: str | None
  thinking_opener: str

  @classmethod
  def from_config(cls, config, tokenizer) -> "Layout":
    """The layout of `config`'s `data`, `probe` and `segment` blocks for `tokenizer`."""
    if tokenizer.eos_token_id is None:
      raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos_token_id; a warm start "
                       "trains the end of sequence after every completion")
    d = config.data
    return cls(tokenizer=tokenizer, suffix=tuple(tokenizer.encode(
        config.probe.termination_suffix, add_special_tokens=False)),
               eos_id=tokenizer.eos_token_id, segment=task.segment_config(config),
               prompt_template=d.prompt_template,
               system=d.system, thinking_opener=d.thinking_opener)

  def prompt(self, problem: str) -> list[int]:
    """The problem's generation prompt, as the data pipeline and the evaluation render it."""
    return render_problem(self.tokenizer, problem, prompt_template=self.prompt_template,
                          system=self.system, thinking_opener=self.thinking_opener)

  def encode(self, text: str) -> list[int]:
    """Ids of completion text (no special tokens added)."""
    return self.tokenizer.encode(text, add_special_tokens=False)

  def boundaries(self, completion: Sequence[int]) -> list[int]:
    """b_0 = 0, b_1..b_N of the completion, as the training probes cut it."""
    pieces = token_pieces(lambda ids: task.decode_text(self.tokenizer, ids), completion)
    return [0, *segment(completion, pieces, self.segment).boundaries]

  def trace(self, prompt: Sequence[int], completion: Sequence[int],
            weights: Sequence[float] | None = None) -> Example:
    """`trace_example` with this tokenizer's end of sequence."""
    return trace_example(prompt, completion, self.eos_id, weights)

  def forced_answer(self, prompt: Sequence[int], completion: Sequence[int], cut: int,
                    answer: str | Sequence[int]) -> Example:
    """`forced_answer_example` with the configured suffix; `answer` as text or ids."""
    ids = self.encode(answer) if isinstance(answer, str) else list(answer)
    return forced_answer_example(prompt, completion, cut, self.suffix, ids, self.eos_id)
