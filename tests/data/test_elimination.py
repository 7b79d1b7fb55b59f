"""The elimination task: determinism, problem validity, verifier, graded oracle, segmentation."""

import dataclasses

import numpy as np
import pytest

from data_fixtures import TASK_CONFIG

from mrt_jax.data import elimination as el
from mrt_jax.mrt import segment
from mrt_jax.rewards import last_boxed, verify_batch

CONFIG = TASK_CONFIG


def _resolve(item, candidates):
  """The letter a clue item strikes ("after A" -> B, "before C" -> B, "E" -> E)."""
  if item.startswith("after "):
    return candidates[candidates.index(item[-1]) + 1]
  if item.startswith("before "):
    return candidates[candidates.index(item[-1]) - 1]
  return item


def test_generation_is_deterministic_and_indexed():
  a = el.generate_problems(6, seed=3, config=CONFIG)
  assert a == el.generate_problems(6, seed=3, config=CONFIG)
  assert el.generate_problems(2, seed=3, config=CONFIG) == a[:2]  # independent of the count
  assert el.generate_problem(3, 5, CONFIG) == a[5]
  assert a != el.generate_problems(6, seed=4, config=CONFIG)
  assert el.tokenizer_corpus(5, 1, CONFIG) == el.tokenizer_corpus(5, 1, CONFIG)


@pytest.mark.parametrize("seed", range(4))
def test_problems_are_consistent(seed):
  for p in el.generate_problems(10, seed, CONFIG):
    wrong = sorted(set(p["candidates"]) - {p["answer"]})
    assert len(p["candidates"]) == 7 and len(p["clues"]) == len(p["strikes"]) == 4
    assert all(p["strikes"]) and sorted(sum(p["strikes"], [])) == wrong  # a partition
    for items, struck in zip(p["clues"], p["strikes"]):
      assert sorted(_resolve(i, p["candidates"]) for i in items) == struck
      assert f": {el.clue_text(items)}" in p["problem"]
    assert el.remaining(p, range(4)) == p["answer"]


def test_oracle_is_graded_along_useful_blocks_and_flat_along_wasteful_ones():
  rng = np.random.default_rng(0)
  seen_waste = 0
  for p in el.generate_problems(20, 0, CONFIG):
    order = el.sample_clue_order(p, rng, CONFIG)
    J = el.oracle_success(p, order)
    assert J.shape == (len(order) + 1,) and J[0] == 1 / 7 and J[-1] == 1.0
    assert np.all(np.diff(J) >= 0)
    for j, k in enumerate(order):
      if k in order[:j]:  # wasteful: re-checks a clue
        assert J[j + 1] == J[j]
        seen_waste += 1
      else:  # useful: strikes len(strikes[k]) new candidates
        left = len(el.remaining(p, order[:j]))
        assert J[j + 1] == 1 / (left - len(p["strikes"][k])) > J[j]
  assert seen_waste > 0


def test_verifier_on_traces_and_forced_answers():
  p = el.generate_problem(0, 0, CONFIG)
  order = [2, 0, 0, 1, 3]
  natural = el.trace_completion(p, order)
  assert natural.answer == f"\\boxed{{{p['answer']}}}"
  wrong = next(c for c in p["candidates"] if c != p["answer"])
  texts = [natural.text, natural.text.replace(natural.answer, f"\\boxed{{{wrong}}}"),
           natural.thinking + f"\\boxed{{{p['answer']}}}",  # no "</think>": cut off, 0
           natural.thinking + "\n</think>\n\nIt is " + p["answer"]]  # no \boxed{}
  rewards, stats = verify_batch("elimination", [p] * 4, texts, [[0]] * 4)
  np.testing.assert_array_equal(rewards, np.array([1, 0, 0, 0], np.float32))
  assert stats["errors"] == 0
  rng = np.random.default_rng(1)
  for k in range(len(order) + 1):
    forced = el.forced_completion(p, order, k, rng)
    guess = last_boxed(forced.answer)
    assert guess in el.remaining(p, order[:k])
    assert forced.closing == el.TERMINATION_SUFFIX and forced.text.count("</think>") == 1
    reward, _ = verify_batch("elimination", [p], [forced.text], [[0]])
    assert reward[0] == float(guess == p["answer"])


def test_checked_clues_reads_a_trace():
  p = el.generate_problem(1, 2, CONFIG)
  order = [3, 1, 3, 0, 2]
  assert el.checked_clues(el.trace_completion(p, order).thinking, p) == order
  # A line that copies no clue of the problem exactly is skipped.
  text = f"Wait, clue: not Z.\n\nWait, clue: {el.clue_text(p['clues'][1])}\n\n"
  assert el.checked_clues(text, p) == [1]


def test_default_segmenter_recovers_the_blocks(tiny_tokenizer):
  rng = np.random.default_rng(2)
  for p in el.generate_problems(8, 5, CONFIG):
    order = el.sample_clue_order(p, rng, CONFIG)
    completion = el.trace_completion(p, order)
    ids = tiny_tokenizer.encode(completion.text, add_special_tokens=False)
    seg = segment(ids, lambda i: tiny_tokenizer.decode([i]))
    assert seg.num_blocks == len(order)
    starts = (0,) + seg.boundaries[:-1]
    for j, (a, b) in enumerate(zip(starts, seg.boundaries)):
      block = tiny_tokenizer.decode(ids[a:b])
      # The blank line before a block opens it (the "continue" decision); the one before
      # "</think>" opens the answer segment (the "stop" decision).
      assert block == ("\n\n" if j else "") + el.block_text(p, order, j)
    assert tiny_tokenizer.decode(ids[seg.think_end:]) == el.THINK_END + completion.answer


def test_forced_prefix_ends_on_a_boundary(tiny_tokenizer):
  # The forced thinking after k blocks is exactly the text of the trace's first k blocks.
  p = el.generate_problem(0, 1, CONFIG)
  order = [0, 1, 1, 2, 3]
  ids = tiny_tokenizer.encode(el.trace_completion(p, order).text, add_special_tokens=False)
  seg = segment(ids, lambda i: tiny_tokenizer.decode([i]))
  rng = np.random.default_rng(0)
  for k, b in enumerate((0,) + seg.boundaries[:-1]):
    assert tiny_tokenizer.decode(ids[:b]) == el.forced_completion(p, order, k, rng).thinking


def test_clue_order_is_random_or_the_prompts_with_re_checks_of_used_clues():
  prompt_order = dataclasses.replace(CONFIG, clue_order="prompt")
  rng = np.random.default_rng(0)
  firsts = set()
  for p in el.generate_problems(20, 0, CONFIG):
    for config in (CONFIG, prompt_order):
      order = el.sample_clue_order(p, rng, config)
      useful = [k for j, k in enumerate(order) if k not in order[:j]]
      assert sorted(useful) == list(range(len(p["clues"])))  # every clue checked once...
      if config is prompt_order:
        assert useful == list(range(len(p["clues"])))  # ... as the prompt lists them
      else:
        firsts.add(useful[0])
  assert len(firsts) > 1  # random order starts at different clues


def test_config_errors():
  with pytest.raises(ValueError, match="num_clues=6: expected 1..5"):
    el.EliminationConfig(num_candidates=6, num_clues=6)
  with pytest.raises(ValueError, match="num_candidates=1"):
    el.EliminationConfig(num_candidates=1)
  with pytest.raises(ValueError, match="waste_prob=1.5"):
    el.EliminationConfig(waste_prob=1.5)
  with pytest.raises(ValueError, match="clue_order='sorted': expected one of"):
    el.EliminationConfig(clue_order="sorted")


def test_task_prover_is_the_oracle_along_a_trace_and_reads_only_clue_lines():
  from mrt_jax.rewards import elimination_success, get_task_prover, register_task_prover
  assert get_task_prover("elimination") is elimination_success
  p = el.generate_problem(2, 1, CONFIG)
  order = [1, 0, 1, 3, 2]
  J = el.oracle_success(p, order)
  for k in range(len(order) + 1):  # the thinking of the first k blocks, as a cut sees it
    thinking = "\n\n".join(el.block_text(p, order, j) for j in range(k))
    assert elimination_success(p, thinking) == J[k]
  # A trace's own strike lines do not move it (a wrong "Strike" of the answer included).
  sloppy = f"Wait, clue: {el.clue_text(p['clues'][0])}\n\nStrike {p['answer']}.\n\nLeft:x."
  assert elimination_success(p, sloppy) == 1 / len(el.remaining(p, [0]))
  # Registry errors name the name and the field.
  with pytest.raises(ValueError, match="task prover 'elimination' is already registered"):
    register_task_prover("elimination", lambda record, thinking: 0.0)
  with pytest.raises(ValueError, match=r"config\.eval\.x='nope' is not a registered task "
                     r"prover; expected one of \[.*'elimination'"):
    get_task_prover("nope", "config.eval.x")


def test_last_left_reads_the_last_well_formed_left_line():
  p = el.generate_problem(1, 2, CONFIG)
  order = [2, 0, 2, 1]
  thinking = el.trace_completion(p, order).thinking
  assert el.last_left(thinking, p) == el.remaining(p, order)
  assert el.last_left("", p) is None and el.last_left("Wait, clue: x", p) is None
  # Malformed lines (a letter missing, out of order, not a candidate, no period) are skipped.
  first = "Left:" + el.left_mask(p, el.remaining(p, order[:1])) + "."
  n = len(p["candidates"])
  bad = ["Left:" + ",".join(p["candidates"][:-1]) + ".",
         "Left:" + ",".join(reversed(p["candidates"])) + ".",
         "Left:" + ",".join("Z" * n) + ".",
         "Left:" + ",".join(p["candidates"])]
  for line in bad:
    assert el.last_left(first + "\n\n" + line, p) == el.remaining(p, order[:1]), line
  # A line that strikes every letter keeps none.
  assert el.last_left("Left:" + ",".join(p["candidates"].lower()) + ".", p) == ""


def test_left_prover_equals_the_oracle_on_true_traces_and_reads_wrong_strikes():
  from mrt_jax.rewards import elimination_left_success, get_task_prover
  assert get_task_prover("elimination_left") is elimination_left_success
  rng = np.random.default_rng(3)
  for p in el.generate_problems(6, 4, CONFIG):
    order = el.sample_clue_order(p, rng, CONFIG)
    J = el.oracle_success(p, order)
    for k in range(len(order) + 1):
      thinking = "\n\n".join(el.block_text(p, order, j) for j in range(k))
      assert elimination_left_success(p, thinking) == J[k]
  p = el.generate_problem(2, 1, CONFIG)
  clue = f"Wait, clue: {el.clue_text(p['clues'][0])}\n\n"
  # A block that strikes the hidden letter: J = 0 (the clue-line prover still credits the clue).
  others = p["candidates"].replace(p["answer"], "")
  wrong = clue + f"Strike {p['answer']}.\n\nLeft:{el.left_mask(p, others)}."
  assert elimination_left_success(p, wrong) == 0.0
  # One that keeps the hidden letter and two others: 1/3, whatever its clue line says.
  keep = (p["answer"] + others)[:3]
  right = f"Wait, clue: not Z.\n\nStrike x.\n\nLeft:{el.left_mask(p, keep)}."
  assert elimination_left_success(p, right) == 1 / 3
