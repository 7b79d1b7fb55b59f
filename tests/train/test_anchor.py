"""The meta-prover's answer rows: the probes' layout token for token, cuts at the boundaries."""

import numpy as np
import pytest

from mrt_jax import config_cli
from mrt_jax.mrt.meta_prover import AnswerTemplate
from mrt_jax.mrt.segment import Segmentation
from mrt_jax.train import anchor, setup

EOS = 3
ANSWER = AnswerTemplate("<{answer}>", EOS, lambda text: [ord(c) for c in text])
SUFFIX = (7, 8)


def _rollouts():
  prompts = [[100, 101], [100, 101], [102]]
  completions = [[10, 11, 12, 13, 14, 15], [20, 21, 22], [30, 31, 32, 33]]
  segments = [Segmentation((2, 5), 5, 6), Segmentation((3,), 3, 3), Segmentation((), 0, 4)]
  records = [{"answer": "A"}, {"answer": "A"}, {"answer": 42}]
  return prompts, completions, segments, records


def test_each_row_is_what_a_probe_feeds_then_the_reference_answer():
  prompts, completions, segments, records = _rollouts()
  rows, cuts = anchor.answer_rows(prompts, completions, segments, records, ANSWER, SUFFIX,
                                  np.random.default_rng(0), length=16)
  assert rows["answer_tokens"].shape == rows["answer_mask"].shape == (3, 16)
  assert rows["answer_tokens"].dtype == np.int32 and rows["answer_mask"].dtype == np.float32
  for i, cut in enumerate(cuts):
    assert cut in (0, *segments[i].boundaries)
    answer = [ord(c) for c in f"<{records[i]['answer']}>"] + [EOS]
    context = prompts[i] + completions[i][:cut] + list(SUFFIX)
    n = len(context) + len(answer)
    np.testing.assert_array_equal(rows["answer_tokens"][i], context + answer + [0] * (16 - n))
    np.testing.assert_array_equal(rows["answer_mask"][i],
                                  [0] * len(context) + [1] * len(answer) + [0] * (16 - n))
  assert cuts[2] == 0  # no thinking: only b_0


def test_cuts_cover_every_boundary_uniformly_and_follow_the_seed():
  prompts, completions, segments, records = _rollouts()
  draws = [anchor.answer_rows(prompts[:1], completions[:1], segments[:1], records[:1], ANSWER,
                              SUFFIX, np.random.default_rng(s))[1][0] for s in range(600)]
  values, counts = np.unique(draws, return_counts=True)
  assert values.tolist() == [0, 2, 5]
  assert counts.min() > 150  # 200 each expected; b_0 and b_N included
  again = lambda: anchor.answer_rows(prompts, completions, segments, records, ANSWER, SUFFIX,
                                     np.random.default_rng([5, 2]))
  (a, cuts_a), (b, cuts_b) = again(), again()
  np.testing.assert_array_equal(cuts_a, cuts_b)
  np.testing.assert_array_equal(a["answer_tokens"], b["answer_tokens"])
  # Without a length the rows are as long as the longest.
  assert a["answer_tokens"].shape[1] == max(
      len(p) + c + len(SUFFIX) + 4 for p, c in zip(prompts, cuts_a))


def test_bad_input_is_named():
  prompts, completions, segments, records = _rollouts()
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match=r"rollout 1: its record has no reference answer .*"
                                       r"fields: \['id'\]"):
    anchor.answer_rows(prompts, completions, segments, [records[0], {"id": 7}, records[2]],
                       ANSWER, SUFFIX, rng)
  with pytest.raises(ValueError, match="have 3, 2, 3 and 3 entries"):
    anchor.answer_rows(prompts, completions[:2], segments, records, ANSWER, SUFFIX, rng)
  with pytest.raises(ValueError, match="more than length=4"):
    anchor.answer_rows(prompts, completions, segments, records, ANSWER, SUFFIX, rng, length=4)


class _Tokenizer:
  eos_token_id = EOS

  def encode(self, text, add_special_tokens=False):
    del add_special_tokens
    return [ord(c) for c in text]


def _anchor(*overrides, config="configs/demo_cpu.py"):
  c = config_cli.load_config(config, list(overrides))
  return setup.answer_anchor(c, _Tokenizer(), setup.step_config(c))


def test_setup_builds_the_answer_only_when_asked_and_names_the_field():
  assert _anchor() is None  # off by default: the paper's recipe
  got = _anchor("loss.answer_nll_coef=0.5")
  assert got.tokens("C") == tuple(map(ord, "\\boxed{C}")) + (EOS,)
  with pytest.raises(ValueError, match=r"config.loss.answer_nll_coef=0.5 needs "
                                       r"config.probe.answer_template"):
    _anchor("loss.answer_nll_coef=0.5", "probe.answer_template=")
  with pytest.raises(ValueError, match=r"config.loss.answer_nll_coef=0.5 needs each record's "
                                       r"reference answer, but config.data.answer_field is empty"):
    _anchor("loss.answer_nll_coef=0.5", "data.answer_field=")
  with pytest.raises(ValueError, match="LossConfig.answer_nll_coef=-0.5 must be >= 0"):
    _anchor("loss.answer_nll_coef=-0.5")
