"""Token-space segmentation: hand-made pieces with straddling separators and markers, a real
byte-level BPE tokenizer, the fixed-chunk segmenter, and batching."""

import numpy as np
import pytest
import tokenizers

from mrt_jax import mrt
from mrt_jax.mrt import SegmentConfig, segment, stack_segmentations

# Paragraphs: P1 "Let me try." | P2 "Wait, too early." (separator split ".\n"+"\nWa", marker
# split "Wa"+"it") | P3 "Step two." | P4 "Wait, check." | P5 "Alternatively x." (marker split)
# | P6 "y." | P7 "But wait z." (separator split "\n"+"\n", marker split "But"+" wait").
PIECES = ["Let", " me try", ".\n", "\nWa", "it, too early", ".\n\n", "Step two", ".", "\n\n",
          "Wait", ", check", ".\n\n", "Altern", "atively x.", "\n\n", "y.", "\n", "\n", "But",
          " wait z.", "</think>", "42"]
IDS = list(range(len(PIECES)))


def test_min_paragraphs_and_straddling_markers():
  # P2 is a marker paragraph but block 1 has 1 < 3 paragraphs; P4 opens block 2 (token 9) after
  # P1..P3; P5 is too early again; P7 opens block 3 at token 18; "</think>" is token 20.
  seg = segment(IDS, PIECES)
  assert seg.boundaries == (9, 18, 20)
  assert seg.think_end == 20 and seg.num_blocks == 3 and seg.num_tokens == 22
  expected = [1] * 9 + [2] * 9 + [3] * 2 + [0] * 2
  np.testing.assert_array_equal(seg.token_block_ids(), np.array(expected, np.int32))


def test_paragraph_starting_inside_a_token_opens_at_the_next_token():
  # With min_paragraphs=1 every marker paragraph opens a block; P2 starts inside "\nWa" (token 3),
  # so by the rule its block starts at the first token starting at or after it: token 4.
  seg = segment(IDS, PIECES, SegmentConfig(min_paragraphs=1))
  assert seg.boundaries == (4, 9, 12, 18, 20)


def test_grouping_and_cap():
  assert segment(IDS, PIECES, SegmentConfig(min_paragraphs=1,
                                            episodes_per_block=2)).boundaries == (9, 18, 20)
  assert segment(IDS, PIECES, SegmentConfig(min_paragraphs=1, max_blocks=2)).boundaries == (4, 20)
  assert segment(IDS, PIECES, SegmentConfig(max_blocks=1)).boundaries == (20,)


def test_markers_are_whole_words_and_configurable():
  pieces = ["a.\n\n", "b.\n\n", "c.\n\n", "Waiting", " d.\n\n", "wait e.\n\n", "Hmm f."]
  ids = list(range(len(pieces)))
  assert segment(ids, pieces).boundaries == (7,)
  assert segment(ids, pieces, SegmentConfig(markers=("Hmm",))).boundaries == (6, 7)


def test_end_of_thinking_tag_straddling_tokens_and_empty_thinking():
  seg = segment([0, 1, 2, 3], ["a", "b</", "think>", "c"])
  assert seg.boundaries == (1,) and seg.think_end == 1
  np.testing.assert_array_equal(seg.token_block_ids(), [1, 0, 0, 0])
  empty = segment([0, 1], ["</think>", "x"])
  assert empty.boundaries == () and empty.num_blocks == 0
  np.testing.assert_array_equal(empty.token_block_ids(), [0, 0])
  no_tag = segment([0, 1, 2], ["a", "b", "c"])
  assert no_tag.boundaries == (3,) and no_tag.think_end == 3


def test_fixed_chunks():
  pieces = ["t"] * 7 + ["</think>", "4", "2"]
  ids = list(range(10))
  assert segment(ids, pieces, SegmentConfig(method="fixed_chunk", chunk_tokens=3)).boundaries \
      == (3, 6, 7)
  assert segment(ids, pieces, SegmentConfig(method="fixed_chunk", chunk_tokens=3,
                                            max_blocks=2)).boundaries == (3, 7)
  assert segment(ids, ["t"] * 10, SegmentConfig(method="fixed_chunk", chunk_tokens=4,
                                                episodes_per_block=2)).boundaries == (8, 10)


def _byte_level_bpe() -> tokenizers.Tokenizer:
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["</think>"],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["Wait, let me check.\n\nBut wait, x = 2.\n\nAlternatively, try y.",
                           "So the answer is 4.\n\nIs there another way to see it?"], trainer)
  return tok


def test_real_byte_level_tokenizer_blocks_decode_to_the_expected_text():
  tok = _byte_level_bpe()
  blocks = ["Let x = 1.\n\nSo y = 2.\n\nThen z.\n\n", "Wait, x = 2.\n\nHence y.\n\nOk.\n\n",
            "Is there another way? Yes."]
  text = "".join(blocks) + "</think>The answer is 4."
  ids = tok.encode(text).ids
  seg = segment(ids, lambda i: tok.decode([i], skip_special_tokens=False))
  assert seg.num_blocks == 3
  starts = (0,) + seg.boundaries[:-1]
  for j, (start, end) in enumerate(zip(starts, seg.boundaries)):
    assert tok.decode(ids[start:end]) == blocks[j]
  assert tok.decode(ids[seg.think_end:], skip_special_tokens=False).startswith("</think>")


def test_stack_segmentations_pads_and_aligns_boundary_columns():
  a = segment(IDS, PIECES)                           # 3 blocks, 22 tokens
  b = segment([0, 1, 2], ["x", "</think>", "y"])     # 1 block, 3 tokens
  batch = stack_segmentations([a, b], num_tokens=23)
  np.testing.assert_array_equal(batch.boundaries_BxN1, [[0, 9, 18, 20], [0, 1, 1, 1]])
  np.testing.assert_array_equal(batch.boundary_mask_BxN1, [[1, 1, 1, 1], [1, 1, 0, 0]])
  np.testing.assert_array_equal(batch.num_blocks_B, [3, 1])
  assert batch.token_block_ids_BxT.shape == (2, 23)
  np.testing.assert_array_equal(batch.token_block_ids_BxT[1], [1, 0] + [0] * 21)
  with pytest.raises(ValueError, match=r"segmentations\[0\] has 3 blocks"):
    stack_segmentations([a, b], num_blocks=2)


def test_bad_input_errors():
  with pytest.raises(ValueError, match="method='sentences' is unknown"):
    SegmentConfig(method="sentences")
  with pytest.raises(ValueError, match="min_paragraphs=0"):
    SegmentConfig(min_paragraphs=0)
  with pytest.raises(ValueError, match="max_blocks=0"):
    SegmentConfig(max_blocks=0)
  with pytest.raises(ValueError, match="decode has 2 pieces but token_ids has 3"):
    segment([0, 1, 2], ["a", "b"])
  assert set(mrt.SEGMENTERS) == {"paragraph", "fixed_chunk"}
