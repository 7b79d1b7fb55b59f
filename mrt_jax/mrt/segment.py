"""Episode segmentation of a reasoning trace, in token space.

A completion is split into blocks z_1..z_N at token offsets b_0 = 0 < b_1 < ... < b_N, where b_N is
the end of thinking (docs/method.md). Block j holds the tokens [b_{j-1}, b_j); the tokens from b_N
on (the end-of-thinking tag and the answer) form the answer segment, block id 0.

Letters (added to the legend of `mrt_jax.models.config`): T completion tokens, N blocks (the paper's
K; K already names kv heads), N1 = N + 1 boundaries b_0..b_N.

Segmenters are registered by name in `SEGMENTERS`; each maps per-token text pieces, a
`SegmentConfig` and the number of tokens that may be thinking to a `Segmentation`:
- `paragraph` (default; the paper's analysis code): the thinking text is split into paragraphs on
  blank lines; a paragraph that starts with a restart marker ("Wait", "Alternatively", ...) opens a
  new episode unless the current episode has fewer than `min_paragraphs` paragraphs.
- `fixed_chunk`: an episode every `chunk_tokens` tokens, for models that write no markers.
Both then group `episodes_per_block` consecutive episodes into one block and keep at most
`max_blocks` blocks (the last kept block runs to the end of thinking).

Token-space rule: a boundary sits at the token where the trace commits to what follows.
Before a new episode the trace writes a separator and a restart marker ("\\n\\nWait"); to stop
it writes the end-of-thinking tag, usually after whitespace ("\\n\\n</think>"); the
meta-prover's termination suffix starts with its own blank line. With BPE the same blank line is
tokenized differently in each case (one token "\\n\\n" before "</think>", two before "Wait",
or merged with the period before it, ".\\n\\n" against ".\\n"), so the first token at which
"continue with a new episode" and "stop thinking" differ is the token holding the FIRST
CHARACTER OF THE SEPARATOR (the whitespace run before the paragraph, or before the tag). Every
boundary is placed at that token, so:
- the decision token belongs to the block that follows, whose progress the decision determines
  (the block after a boundary; the answer segment after b_N);
- the thinking prefix [0, b_j) holds no part of the separator, and prefix + termination suffix
  reads as text with one blank line, not two.
The text is the concatenation of the per-token pieces, so every character has an owning token
and markers or separators that straddle token boundaries are found like any other text. The
end of thinking is the first end-of-thinking tag (`end_of_thinking`, shared with the verifiers'
answer extraction and evaluation). A trailing stop token (end of sequence) is never thinking:
without a tag, the thinking ends before it. Two episode starts that land on the same token
merge; a start at token 0 or at b_N is dropped.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from typing import Callable, NamedTuple, Sequence

import numpy as np

# Restart markers of the paper's episode analysis.
DEFAULT_MARKERS = ("Wait", "But wait", "Alternatively", "Is there another way",
                   "But let me double-check", "But hold on")


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  """How a trace is cut into blocks (all fields are plain values; the config is hashable)."""
  method: str = "paragraph"           # key of `SEGMENTERS`
  markers: tuple[str, ...] = DEFAULT_MARKERS  # paragraph openings that restart an episode
  min_paragraphs: int = 3             # an episode must hold this many paragraphs before a restart
  episodes_per_block: int = 1         # consecutive episodes grouped into one block z_j
  max_blocks: int | None = None       # cap on N (the paper's K); None = no cap
  chunk_tokens: int = 512             # episode length of `fixed_chunk`
  end_think: str = "</think>"         # end-of-thinking tag; absent => thinking runs to the end
  paragraph_separator: str = r"\n\s*\n"  # a run of blank lines ends a paragraph

  def __post_init__(self):
    if self.method not in SEGMENTERS:
      raise ValueError(f"SegmentConfig.method={self.method!r} is unknown; expected one of "
                       f"{sorted(SEGMENTERS)}")
    for name in ("min_paragraphs", "episodes_per_block", "chunk_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"SegmentConfig.{name}={getattr(self, name)} must be >= 1")
    if self.max_blocks is not None and self.max_blocks < 1:
      raise ValueError(f"SegmentConfig.max_blocks={self.max_blocks} must be >= 1 or None")
    if isinstance(self.markers, str) or not all(self.markers):
      raise ValueError(f"SegmentConfig.markers={self.markers!r} must be a tuple of non-empty "
                       "strings")


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Blocks of one completion.

  Attributes:
    boundaries: b_1 < ... < b_N as token offsets; b_N == think_end. Empty when there is no
      thinking (think_end == 0).
    think_end: token offset of the end of thinking (the tag's token, or T if there is no tag).
    num_tokens: T, the completion length.
  """
  boundaries: tuple[int, ...]
  think_end: int
  num_tokens: int

  @property
  def num_blocks(self) -> int:
    return len(self.boundaries)

  def token_block_ids(self) -> np.ndarray:
    """int32 [T]: block j in 1..N of each thinking token, 0 for the answer segment."""
    ids_T = np.zeros(self.num_tokens, np.int32)
    start = 0
    for j, end in enumerate(self.boundaries, start=1):
      ids_T[start:end] = j
      start = end
    return ids_T


def token_pieces(token_ids: Sequence[int],
                 decode: Callable[[int], str] | Sequence[str]) -> list[str]:
  """Per-token text pieces, from a callable `token_id -> str` or an aligned list of strings.

  For a Hugging Face tokenizer pass `lambda i: tokenizer.decode([i])`: byte-level pieces of a
  character split over tokens decode to U+FFFD, which changes no blank line or marker.
  """
  if callable(decode):
    return [decode(int(t)) for t in token_ids]
  pieces = list(decode)
  if len(pieces) != len(token_ids):
    raise ValueError(f"decode has {len(pieces)} pieces but token_ids has {len(token_ids)} "
                     "tokens; expected one piece per token")
  return pieces


def segment(token_ids: Sequence[int], decode: Callable[[int], str] | Sequence[str],
            config: SegmentConfig | None = None,
            stop_token_ids: Sequence[int] = ()) -> Segmentation:
  """Segments one completion into blocks with the segmenter named by `config.method`.

  Args:
    token_ids: the completion's token ids (without the prompt).
    decode: a callable `token_id -> text piece`, or the list of per-token pieces.
    config: segmentation settings; None means `SegmentConfig()`.
    stop_token_ids: end-of-sequence tokens; a completion ending with one keeps it out of the
      thinking (it is never part of a block).

  Returns:
    The completion's `Segmentation`.
  """
  config = SegmentConfig() if config is None else config
  num_thinking = len(token_ids) - int(bool(len(token_ids)) and
                                      int(token_ids[-1]) in set(stop_token_ids))
  return SEGMENTERS[config.method](token_pieces(token_ids, decode), config, num_thinking)


def end_of_thinking(text: str, think_close: str) -> int:
  """Character offset where the thinking ends: the FIRST end-of-thinking tag, or -1 if none.

  The one rule for "end of thinking" that the segmenter, the verifiers' answer extraction
  (`mrt_jax.rewards.answer_segment`) and evaluation share: once the model closes its thinking,
  everything after is answer, a second tag included.
  """
  return text.find(think_close) if think_close else -1


class _Text(NamedTuple):
  """The decoded completion and the start character of every token."""
  text: str
  starts_T: list[int]     # character offset where token t's piece starts
  think_end_char: int     # where the thinking text ends (the tag, or the end)
  think_end: int          # token offset of the end of thinking

  def owner(self, char: int) -> int:
    """The token containing character `char` (the last token starting at or before it)."""
    return bisect.bisect_right(self.starts_T, char) - 1


def _decoded(pieces: Sequence[str], config: SegmentConfig, num_thinking: int) -> _Text:
  """`num_thinking`: the tokens that may be thinking (all but a trailing stop token)."""
  starts_T, offset = [], 0
  for piece in pieces:
    starts_T.append(offset)
    offset += len(piece)
  text = "".join(pieces)
  tag_char = end_of_thinking(text[:starts_T[num_thinking] if num_thinking < len(pieces)
                                   else len(text)], config.end_think)
  if tag_char < 0:
    return _Text(text, starts_T, starts_T[num_thinking] if num_thinking < len(pieces)
                 else len(text), num_thinking)
  # The thinking ends with the whitespace before the tag: the token holding its first
  # character is where stopping starts (module docstring).
  ws_char = len(text[:tag_char].rstrip())
  d = _Text(text, starts_T, ws_char, 0)
  return d._replace(think_end=d.owner(ws_char) if ws_char < tag_char else d.owner(tag_char))


def _starts_marker(paragraph: str, markers: tuple[str, ...]) -> bool:
  """Whether the paragraph opens with a marker as a whole word ("Waiting" is not "Wait")."""
  head = paragraph.lstrip()
  return any(head.startswith(m) and not head[len(m):len(m) + 1].isalnum() for m in markers)


def _blocks(episode_starts: Sequence[int], think_end: int, num_tokens: int,
            config: SegmentConfig) -> Segmentation:
  """Groups token-space episode starts into blocks and applies the cap."""
  if think_end == 0:
    return Segmentation((), 0, num_tokens)
  starts = [0]
  for s in episode_starts:
    if starts[-1] < s < think_end:
      starts.append(s)
  starts = starts[::config.episodes_per_block][:config.max_blocks]
  return Segmentation(tuple(starts[1:]) + (think_end,), think_end, num_tokens)


def segment_paragraphs(pieces: Sequence[str], config: SegmentConfig,
                       num_thinking: int | None = None) -> Segmentation:
  """Blank-line paragraphs, new episode at a restart marker once `min_paragraphs` are reached.

  An episode opens at the token holding the first character of the separator before its
  paragraph (module docstring). `num_thinking`: tokens that may be thinking (default all).
  """
  d = _decoded(pieces, config, len(pieces) if num_thinking is None else num_thinking)
  thinking = d.text[:d.think_end_char]
  separators = [(0, 0)] + [m.span() for m in re.finditer(config.paragraph_separator, thinking)]
  ends = [a for a, _ in separators[1:]] + [len(thinking)]
  episode_chars, count = [], 0
  for (sep_start, start), end in zip(separators, ends):
    paragraph = thinking[start:end]
    if not paragraph.strip():
      continue  # whitespace-only text (before the first or after the last paragraph)
    if count >= config.min_paragraphs and _starts_marker(paragraph, config.markers):
      episode_chars.append(sep_start)
      count = 0
    count += 1
  return _blocks([d.owner(c) for c in episode_chars], d.think_end, len(pieces), config)


def segment_fixed_chunks(pieces: Sequence[str], config: SegmentConfig,
                         num_thinking: int | None = None) -> Segmentation:
  """An episode every `chunk_tokens` thinking tokens."""
  think_end = _decoded(pieces, config,
                       len(pieces) if num_thinking is None else num_thinking).think_end
  starts = range(config.chunk_tokens, think_end, config.chunk_tokens)
  return _blocks(starts, think_end, len(pieces), config)


SEGMENTERS: dict[str, Callable[..., Segmentation]] = {
    "paragraph": segment_paragraphs,
    "fixed_chunk": segment_fixed_chunks,
}


class SegmentBatch(NamedTuple):
  """Segmentations of a batch, padded to N blocks and T tokens (numpy, ready for jit).

  Column j of `boundaries_BxN1` is b_j (b_0 = 0), aligned with column j of the success matrix
  J_BxN1 taken by `progress_reward`; columns past a row's N are padded with its think_end and
  masked out in `boundary_mask_BxN1`.
  """
  boundaries_BxN1: np.ndarray     # int32
  boundary_mask_BxN1: np.ndarray  # bool, j <= num_blocks
  num_blocks_B: np.ndarray        # int32
  token_block_ids_BxT: np.ndarray  # int32, 0 also for padding past a row's length


def stack_segmentations(segmentations: Sequence[Segmentation], num_blocks: int | None = None,
                        num_tokens: int | None = None) -> SegmentBatch:
  """Pads a batch of segmentations to `num_blocks` blocks and `num_tokens` tokens.

  Args:
    segmentations: one per completion.
    num_blocks: N; defaults to the largest number of blocks in the batch.
    num_tokens: T; defaults to the longest completion.

  Returns:
    The padded `SegmentBatch`.
  """
  N = max((s.num_blocks for s in segmentations), default=0) if num_blocks is None else num_blocks
  T = max((s.num_tokens for s in segmentations), default=0) if num_tokens is None else num_tokens
  B = len(segmentations)
  boundaries_BxN1 = np.zeros((B, N + 1), np.int32)
  ids_BxT = np.zeros((B, T), np.int32)
  for b, s in enumerate(segmentations):
    if s.num_blocks > N or s.num_tokens > T:
      raise ValueError(f"segmentations[{b}] has {s.num_blocks} blocks and {s.num_tokens} tokens; "
                       f"expected at most num_blocks={N} and num_tokens={T}")
    boundaries_BxN1[b, 1:] = s.think_end
    boundaries_BxN1[b, 1:s.num_blocks + 1] = s.boundaries
    ids_BxT[b, :s.num_tokens] = s.token_block_ids()
  num_blocks_B = np.array([s.num_blocks for s in segmentations], np.int32).reshape(B)
  mask_BxN1 = np.arange(N + 1).reshape(1, N + 1) <= num_blocks_B.reshape(B, 1)
  return SegmentBatch(boundaries_BxN1, mask_BxN1, num_blocks_B, ids_BxT)
