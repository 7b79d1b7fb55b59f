"""Episode segmentation of a reasoning trace, in token space.

A completion is split into blocks z_1..z_N at token offsets b_0 = 0 < b_1 < ... < b_N, where b_N is
the end of thinking (docs/method.md). Block j holds the tokens [b_{j-1}, b_j); the tokens from b_N
on (the end-of-thinking tag and the answer) form the answer segment, block id 0.

Letters (added to the legend of `mrt_jax.models.config`): T completion tokens, N blocks (the paper's
K; K already names kv heads), N1 = N + 1 boundaries b_0..b_N.

Segmenters are registered by name in `SEGMENTERS`; each maps per-token text pieces and a
`SegmentConfig` to a `Segmentation`:
- `paragraph` (default; the paper's analysis code): the thinking text is split into paragraphs on
  blank lines; a paragraph that starts with a restart marker ("Wait", "Alternatively", ...) opens a
  new episode unless the current episode has fewer than `min_paragraphs` paragraphs.
- `fixed_chunk`: an episode every `chunk_tokens` tokens, for models that write no markers.
Both then group `episodes_per_block` consecutive episodes into one block and keep at most
`max_blocks` blocks (the last kept block runs to the end of thinking).

Token-space rule. The text is the concatenation of the per-token pieces, so every character has
an owning token and markers or blank lines that straddle token boundaries are found like any
other text. A paragraph starting at character c opens its block at the FIRST TOKEN WHOSE TEXT
STARTS AT OR AFTER c (so a token such as ".\\n\\n" stays in the block it ends). The end of thinking
is the token that CONTAINS the first character of the end-of-thinking tag, so the thinking prefix
[0, b_N) never holds part of the tag and a probe can append its termination suffix to it. Two
episode starts that land on the same token merge; a start at token 0 or at b_N is dropped.
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
            config: SegmentConfig | None = None) -> Segmentation:
  """Segments one completion into blocks with the segmenter named by `config.method`.

  Args:
    token_ids: the completion's token ids (without the prompt).
    decode: a callable `token_id -> text piece`, or the list of per-token pieces.
    config: segmentation settings; None means `SegmentConfig()`.

  Returns:
    The completion's `Segmentation`.
  """
  config = SegmentConfig() if config is None else config
  return SEGMENTERS[config.method](token_pieces(token_ids, decode), config)


class _Text(NamedTuple):
  """The decoded completion and the start character of every token."""
  text: str
  starts_T: list[int]     # character offset where token t's piece starts
  think_end_char: int
  think_end: int          # token offset of the end of thinking


def _decoded(pieces: Sequence[str], config: SegmentConfig) -> _Text:
  starts_T, offset = [], 0
  for piece in pieces:
    starts_T.append(offset)
    offset += len(piece)
  text = "".join(pieces)
  tag_char = text.find(config.end_think) if config.end_think else -1
  if tag_char < 0:
    return _Text(text, starts_T, len(text), len(pieces))
  # The token containing the tag's first character (the last token starting at or before it).
  return _Text(text, starts_T, tag_char, bisect.bisect_right(starts_T, tag_char) - 1)


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


def segment_paragraphs(pieces: Sequence[str], config: SegmentConfig) -> Segmentation:
  """Blank-line paragraphs, new episode at a restart marker once `min_paragraphs` are reached."""
  d = _decoded(pieces, config)
  thinking = d.text[:d.think_end_char]
  para_starts = [0] + [m.end() for m in re.finditer(config.paragraph_separator, thinking)]
  ends = para_starts[1:] + [len(thinking)]
  episode_chars, count = [], 0
  for start, end in zip(para_starts, ends):
    paragraph = thinking[start:end]
    if not paragraph.strip():
      continue  # whitespace-only text (before the first or after the last paragraph)
    if count >= config.min_paragraphs and _starts_marker(paragraph, config.markers):
      episode_chars.append(start)
      count = 0
    count += 1
  episode_starts = [bisect.bisect_left(d.starts_T, c) for c in episode_chars]
  return _blocks(episode_starts, d.think_end, len(pieces), config)


def segment_fixed_chunks(pieces: Sequence[str], config: SegmentConfig) -> Segmentation:
  """An episode every `chunk_tokens` thinking tokens."""
  think_end = _decoded(pieces, config).think_end
  starts = range(config.chunk_tokens, think_end, config.chunk_tokens)
  return _blocks(starts, think_end, len(pieces), config)


SEGMENTERS: dict[str, Callable[[Sequence[str], SegmentConfig], Segmentation]] = {
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
