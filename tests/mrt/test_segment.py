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
  # P2 is a marker paragraph but block 1 has 1 < 3 paragraphs; P4 opens block 2 after P1..P3,
  # at its separator "\n\n" (token 8); P5 is too early again; P7 opens block 3 at the first
  # "\n" of its split separator (token 16); "</think>" is token 20.
  seg = segment(IDS, PIECES)
  assert seg.boundaries == (8, 16, 20)
  assert seg.think_end == 20 and seg.num_blocks == 3 and seg.num_tokens == 22
  expected = [1] * 8 + [2] * 8 + [3] * 4 + [0] * 2
  np.testing.assert_array_equal(seg.token_block_ids(), np.array(expected, np.int32))


def test_a_block_opens_at_the_token_holding_its_separators_first_character():
  # With min_paragraphs=1 every marker paragraph opens a block; P2's separator starts inside
  # ".\n" (token 2), P5's inside ".\n\n" (token 11): those tokens open the blocks.
  seg = segment(IDS, PIECES, SegmentConfig(min_paragraphs=1))
  assert seg.boundaries == (2, 8, 11, 16, 20)


def test_grouping_and_cap():
  assert segment(IDS, PIECES, SegmentConfig(min_paragraphs=1,
                                            episodes_per_block=2)).boundaries == (8, 16, 20)
  assert segment(IDS, PIECES, SegmentConfig(min_paragraphs=1, max_blocks=2)).boundaries == (2, 20)
  assert segment(IDS, PIECES, SegmentConfig(max_blocks=1)).boundaries == (20,)


def test_markers_are_whole_words_and_configurable():
  pieces = ["a.\n\n", "b.\n\n", "c.\n\n", "Waiting", " d.\n\n", "wait e.\n\n", "Hmm f."]
  ids = list(range(len(pieces)))
  assert segment(ids, pieces).boundaries == (7,)
  assert segment(ids, pieces, SegmentConfig(markers=("Hmm",))).boundaries == (5, 7)


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
  blocks = ["Let x = 1.\n\nSo y = 2.\n\nThen z.", "\n\nWait, x = 2.\n\nHence y.\n\nOk.",
            "\n\nIs there another way? Yes."]
  text = "".join(blocks) + "\n\n</think>The answer is 4."
  ids = tok.encode(text).ids
  seg = segment(ids, lambda i: tok.decode([i], skip_special_tokens=False))
  assert seg.num_blocks == 3
  starts = (0,) + seg.boundaries[:-1]
  for j, (start, end) in enumerate(zip(starts, seg.boundaries)):
    assert tok.decode(ids[start:end]) == blocks[j]
  assert tok.decode(ids[seg.think_end:], skip_special_tokens=False).startswith("\n\n</think>")


def test_stack_segmentations_pads_and_aligns_boundary_columns():
  a = segment(IDS, PIECES)                           # 3 blocks, 22 tokens
  b = segment([0, 1, 2], ["x", "</think>", "y"])     # 1 block, 3 tokens
  batch = stack_segmentations([a, b], num_tokens=23)
  np.testing.assert_array_equal(batch.boundaries_BxN1, [[0, 8, 16, 20], [0, 1, 1, 1]])
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


def test_the_decision_token_opens_the_block_it_decides_with_any_blank_line_merge():
  """A BPE that writes the blank line as one token before "</think>" and as two before "Wait":
  the first token where "continue with a new episode" and "stop thinking" differ opens the
  next block in both, the thinking prefix ends before the blank line (prefix + suffix has one
  blank line), and the stop token is never thinking."""
  shared = ["Step", " one", ".\n\n", "Step", " two", ".\n\n", "Step", " three", "."]
  go_on = shared + ["\n", "\n", "Wait", ", four", "."]
  stop = shared + ["\n\n", "</think>", "\n\n", "7", "<eos>"]
  first_difference = len(shared)
  assert go_on[first_difference] != stop[first_difference]
  eos = len(stop) - 1
  go_seg = segment(range(len(go_on)), go_on)
  stop_seg = segment(range(len(stop)), stop, stop_token_ids=[eos])
  assert go_seg.boundaries == (first_difference, len(go_on))
  assert stop_seg.think_end == first_difference and stop_seg.boundaries == (first_difference,)
  suffix = "\n\nTime is up.\n</think>\n\n"
  for pieces, seg in ((go_on, go_seg), (stop, stop_seg)):
    forced = "".join(pieces[:seg.boundaries[0]]) + suffix
    assert forced.startswith("Step one.\n\nStep two.\n\nStep three.\n\nTime is up.")
    assert "\n\n\n" not in forced
  # Without a tag, a trailing stop token ends the thinking and belongs to no block.
  cut_off = shared + ["<eos>"]
  seg = segment(range(len(cut_off)), cut_off, stop_token_ids=[len(shared)])
  assert seg.think_end == len(shared) and seg.token_block_ids()[-1] == 0
  assert segment(range(len(cut_off)), cut_off).think_end == len(cut_off)


def test_end_of_thinking_is_the_first_tag_for_segmenter_and_verifier():
  from mrt_jax.rewards import answer_segment
  text = "a\n</think>\\boxed{1}</think>\\boxed{2}"
  pieces = ["a", "\n", "</think>", "\\boxed{1}", "</think>", "\\boxed{2}"]
  assert segment(range(6), pieces).think_end == 1
  assert answer_segment(text) == "\\boxed{1}</think>\\boxed{2}"
  from mrt_jax.mrt.segment import end_of_thinking
  assert end_of_thinking(text, "</think>") == 2 and end_of_thinking("no tag", "</think>") == -1
