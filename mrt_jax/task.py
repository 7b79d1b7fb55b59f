"""The task interface: what a verifier receives, the same in training, probes and evaluation.

A task is a data file, a verifier registered by name (`mrt_jax.rewards.register_verifier`), and
optionally an answer extractor registered with it. Every path that grades a completion uses the
functions here, so a verifier sees the same thing wherever it is called:
- text: the completion's token ids decoded by ONE rule, `decode_text` (special tokens such as
  the end-of-sequence token dropped, added non-special tokens such as "</think>" kept). A
  probe's text is the termination suffix's text followed by its answer's text.
- record: `verifier_record`, the data file's record with the problem under "problem", the
  reference answer under "answer" (both copied from the configured fields, with the types the
  file gives them: an integer answer stays an integer) and an "id" (the record's own, else its
  row).
- token ids: the completion's ids (int32 [T], the stop token included when it stopped).

`check_thinking_tokens` is the tokenizer requirement checked when a run or an evaluation is set
up: decoding must keep the end-of-thinking tag, or every verifier would miss the answer.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


def decode_text(tokenizer, ids: Sequence[int]) -> str:
  """The text a verifier receives for token ids (the one decoding rule; module docstring)."""
  return tokenizer.decode([int(t) for t in ids], skip_special_tokens=True)


def verifier_record(record: Mapping[str, Any], index: int, problem_field: str,
                    answer_field: str) -> dict[str, Any]:
  """The record a verifier receives: the source record plus "problem", "answer" and "id".

  Values keep the types of the data file (no conversion to str).
  """
  return {**record, "id": record.get("id", index), "problem": record[problem_field],
          "answer": record[answer_field]}


def default_answer(text: str) -> str | None:
  """The final answer of a completion: the last \\boxed{} after the thinking (None if none)."""
  from mrt_jax.rewards import answer_segment, last_boxed  # Lazily: math-verify loads SymPy.
  answer = answer_segment(text)
  return None if answer is None else last_boxed(answer)


def answer_extractor(verifier: str) -> Callable[[str], str | None]:
  """The answer extractor registered with `verifier`, else `default_answer` (\\boxed{}).

  It maps a completion's text to its final answer as a string (None: no answer); maj@k votes
  on it and samples.jsonl records it. Another return type is a TypeError naming the verifier.
  """
  from mrt_jax.rewards import get_verifier
  extract = get_verifier(verifier).extract_answer
  if extract is None:
    return default_answer

  def checked(text: str) -> str | None:
    answer = extract(text)
    if answer is not None and not isinstance(answer, str):
      raise TypeError(f"the answer extractor of verifier {verifier!r} returned a "
                      f"{type(answer).__name__} ({answer!r}); expected a str or None")
    return answer
  return checked


def segment_config(config):
  """The `mrt.segment.SegmentConfig` of the config's `segment` block (training and evaluation)."""
  from mrt_jax.mrt.segment import SegmentConfig  # Lazily: the data pipeline needs no JAX.
  s = config.segment
  return SegmentConfig(method=s.method, markers=tuple(s.restart_markers),
                       min_paragraphs=s.min_paragraphs, episodes_per_block=s.episodes_per_block,
                       max_blocks=s.max_blocks, chunk_tokens=s.chunk_tokens,
                       end_think=s.end_think)


def check_thinking_tokens(tokenizer, end_think: str, termination_suffix: str) -> None:
  """Checks the thinking delimiters against the tokenizer and the probes' suffix.

  Raises:
    ValueError: `segment.end_think` is empty, is dropped by `decode_text` (a special token),
      or is missing from `probe.termination_suffix` (probes would never close the thinking).
  """
  if not end_think:
    raise ValueError("segment.end_think is empty; expected the end-of-thinking tag, e.g. "
                     "'</think>'")
  ids = tokenizer.encode(end_think, add_special_tokens=False)
  if end_think not in decode_text(tokenizer, ids):
    raise ValueError(
        f"segment.end_think={end_think!r} is a special token of the tokenizer "
        f"{getattr(tokenizer, 'name_or_path', '')!r}: decoding with skip_special_tokens=True "
        "drops it, so no verifier would see where the thinking ends; register it as a "
        f"non-special added token (tokenizers.AddedToken({end_think!r}, special=False)), as "
        "DeepSeek-R1 and Qwen3 tokenizers do")
  if end_think not in termination_suffix:
    raise ValueError(f"probe.termination_suffix={termination_suffix!r} does not contain "
                     f"segment.end_think={end_think!r}; expected a suffix that closes the "
                     "thinking, so that a forced answer follows the tag")
