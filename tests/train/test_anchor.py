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


def test_each_row_is_what_a_probe_feeds_then_the_answer():
  prompts, completions, segments, records = _rollouts()
  cuts = anchor.draw_cuts(segments, np.random.default_rng(0))
  contexts = anchor.contexts(prompts, completions, cuts, SUFFIX)
  targets = anchor.reference_targets(records, ANSWER)
  rows = anchor.answer_rows(contexts, targets, length=16)
  assert rows["answer_tokens"].shape == rows["answer_mask"].shape == (3, 16)
  assert rows["answer_tokens"].dtype == np.int32 and rows["answer_mask"].dtype == np.float32
  for i, cut in enumerate(cuts):
    assert cut in (0, *segments[i].boundaries)
    answer = [ord(c) for c in f"<{records[i]['answer']}>"] + [EOS]
    assert list(targets[i]) == answer
    context = prompts[i] + completions[i][:cut] + list(SUFFIX)
    assert contexts[i] == context
    n = len(context) + len(answer)
    np.testing.assert_array_equal(rows["answer_tokens"][i], context + answer + [0] * (16 - n))
    np.testing.assert_array_equal(rows["answer_mask"][i],
                                  [0] * len(context) + [1] * len(answer) + [0] * (16 - n))
  assert cuts[2] == 0  # no thinking: only b_0
  # Without a length the rows are as long as the longest.
  assert anchor.answer_rows(contexts, targets)["answer_tokens"].shape[1] == max(
      len(c) + len(t) for c, t in zip(contexts, targets))


def test_cuts_cover_every_boundary_uniformly_and_follow_the_seed():
  segments = _rollouts()[2]
  draws = [anchor.draw_cuts(segments[:1], np.random.default_rng(s))[0] for s in range(600)]
  values, counts = np.unique(draws, return_counts=True)
  assert values.tolist() == [0, 2, 5]
  assert counts.min() > 150  # 200 each expected; b_0 and b_N included
  np.testing.assert_array_equal(anchor.draw_cuts(segments, np.random.default_rng([5, 2])),
                                anchor.draw_cuts(segments, np.random.default_rng([5, 2])))


def test_bad_input_is_named():
  prompts, completions, segments, records = _rollouts()
  with pytest.raises(ValueError, match=r"rollout 1: its record has no reference answer .*"
                                       r"fields: \['id'\]"):
    anchor.reference_targets([records[0], {"id": 7}, records[2]], ANSWER)
  with pytest.raises(ValueError, match="3 prompts, 2 completions and 3 cuts"):
    anchor.contexts(prompts, completions[:2], [0, 0, 0], SUFFIX)
  contexts = anchor.contexts(prompts, completions, [0, 0, 0], SUFFIX)
  with pytest.raises(ValueError, match="3 contexts and 2 targets"):
    anchor.answer_rows(contexts, [(1,), (2,)])
  with pytest.raises(ValueError, match="rollout 1 has an empty answer"):
    anchor.answer_rows(contexts, [(1,), (), (2,)])
  with pytest.raises(ValueError, match="more than length=4"):
    anchor.answer_rows(contexts, [(1,), (2,), (3,)], length=4)


class _Tokenizer:
  eos_token_id = EOS

  def encode(self, text, add_special_tokens=False):
    del add_special_tokens
    return [ord(c) for c in text]


def _rows(*overrides, config="configs/demo_cpu.py"):
  c = config_cli.load_config(config, list(overrides))
  return setup.answer_rows(c, _Tokenizer(), setup.step_config(c))


def test_setup_builds_the_rows_only_when_asked_and_names_the_field():
  assert _rows() is None  # off by default: the paper's recipe
  warm = _rows("loss.answer_nll_coef=0.5")
  assert warm.target == "warm_start" and warm.reference is None
  ref = _rows("loss.answer_nll_coef=0.5", "loss.answer_target=reference")
  assert ref.target == "reference"
  assert ref.reference.tokens("C") == tuple(map(ord, "\\boxed{C}")) + (EOS,)
  # The warm start's answers need no reference answer.
  assert _rows("loss.answer_nll_coef=0.5", "probe.answer_template=").target == "warm_start"
  with pytest.raises(ValueError, match=r"config.loss.answer_target='reference' needs "
                                       r"config.probe.answer_template"):
    _rows("loss.answer_nll_coef=0.5", "loss.answer_target=reference", "probe.answer_template=")
  with pytest.raises(ValueError, match=r"config.loss.answer_target='reference' needs each "
                                       r"record's reference answer, but config.data.answer_field"):
    _rows("loss.answer_nll_coef=0.5", "loss.answer_target=reference", "data.answer_field=")
  with pytest.raises(ValueError, match=r"config.loss.answer_target='gold' is unknown; expected "
                                       r"one of \['reference', 'warm_start'\]"):
    _rows("loss.answer_nll_coef=0.5", "loss.answer_target=gold")
  with pytest.raises(ValueError, match="LossConfig.answer_nll_coef=-0.5 must be >= 0"):
    _rows("loss.answer_nll_coef=-0.5")
