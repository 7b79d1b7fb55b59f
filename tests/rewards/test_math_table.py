"""Regression table of the `math` verifier (math-verify 0.9.0): what it actually does.

Each row is (gold, answer text after "</think>", expected reward). Rows marked FALSE NEGATIVE
or FALSE POSITIVE record a known mistake of math-verify that the verifier keeps; the test asserts
the documented behaviour so that a math-verify upgrade that changes it is noticed.
The whole table runs as one batch through worker processes, the path training uses.
"""

import numpy as np
import pytest

from mrt_jax.rewards import verify_batch

TABLE = [
    # Plain and boxed answers.
    ("5", "\\boxed{5}", 1),
    ("2", "\\boxed{3}", 0),
    ("5", "The final answer is $5$.", 1),
    ("5", "no answer here", 0),
    ("x^2+2x+1", "\\boxed{(x+1)^2}", 1),
    ("\\sqrt{2}/2", "\\boxed{\\frac{1}{\\sqrt{2}}}", 1),
    ("1000", "\\boxed{1,000}", 1),
    ("1000", "\\boxed{1{,}000}", 1),
    ("$\\frac{1}{2}$", "\\boxed{0.5}", 1),  # gold given in $...$
    ("\\boxed{7}", "\\boxed{7}", 1),  # gold already boxed: not wrapped twice
    # Markdown bold.
    ("5", "**\\boxed{5}**", 1),
    ("5", "**Answer: 5**", 1),
    ("12", "There are 3 boxes of 4, so **12**.", 1),
    ("12", "The answer is **12** because 3 times 4", 0),  # FALSE NEGATIVE: last number (4) wins
    ("12", "**12** apples, 3 left", 0),  # FALSE NEGATIVE: without \boxed the last number wins
    # \text{}.
    ("\\text{(B)}", "\\boxed{B}", 1),
    ("B", "\\boxed{\\text{B}}", 1),
    ("A", "\\boxed{(A)}", 1),
    ("10", "\\boxed{10\\text{ cm}}", 1),  # units are dropped
    ("\\text{yes}", "\\boxed{\\text{Yes}}", 1),
    ("\\text{Monday}", "\\boxed{\\text{Monday}}", 1),
    # ±.
    ("\\pm 2", "\\boxed{\\pm 2}", 1),
    ("\\pm 2", "\\boxed{2, -2}", 1),
    ("2,-2", "\\boxed{\\pm 2}", 1),
    ("\\pm 2", "\\boxed{2}", 0),  # correct: half the answer
    ("2", "\\boxed{\\pm 2}", 0),  # correct: ± is read as the set {-2, 2}
    # Factorials.
    ("120", "\\boxed{5!}", 1),
    ("5!", "\\boxed{120}", 1),
    ("6", "\\boxed{3!}", 1),
    ("5", "\\boxed{5!}", 0),
    ("4!", "\\boxed{4}", 0),
    # Fractions vs decimals (compared after rounding to 6 digits).
    ("\\frac{1}{2}", "\\boxed{0.5}", 1),
    ("0.5", "\\boxed{\\frac12}", 1),
    ("\\frac{1}{2}", "\\boxed{.5}", 1),
    ("2.5", "\\boxed{\\frac{5}{2}}", 1),
    ("\\frac{2}{3}", "\\boxed{0.666667}", 1),
    ("\\frac{1}{3}", "\\boxed{0.3333333}", 1),
    ("\\frac{1}{3}", "\\boxed{0.333}", 0),  # FALSE NEGATIVE if the problem asks for 3 digits
    # \dfrac, \tfrac, a/b.
    ("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", 1),
    ("0.5", "\\boxed{\\tfrac{1}{2}}", 1),
    ("\\dfrac{3}{4}", "\\boxed{3/4}", 1),
    ("\\frac{1}{2}", "\\boxed{1/2}", 1),
    # Percent: a percent gold accepts both the number and the fraction.
    ("50\\%", "\\boxed{50}", 1),
    ("50\\%", "\\boxed{0.5}", 1),
    ("50", "\\boxed{50\\%}", 1),
    ("0.5", "\\boxed{50\\%}", 1),
    ("10", "\\boxed{0.1}", 0),
    # Intervals.
    ("(1, 2]", "\\boxed{(1,2]}", 1),
    ("(1, 2]", "\\boxed{(1,2)}", 0),
    ("(0,1)", "\\boxed{[0,1]}", 0),
    ("[0,\\infty)", "\\boxed{[0, \\infty)}", 1),
    ("(-\\infty, 2) \\cup (3, \\infty)", "\\boxed{(-\\infty,2)\\cup(3,\\infty)}", 1),
    # Sets.
    ("\\{1, 2, 3\\}", "\\boxed{\\{3, 2, 1\\}}", 1),
    ("\\{1,2\\}", "\\boxed{1, 2}", 1),
    ("\\{1,2\\}", "\\boxed{\\{1,2,3\\}}", 0),
    ("(1,2)", "\\boxed{\\{1,2\\}}", 1),  # FALSE POSITIVE: the open interval equals the set {1, 2}
    # Equations.
    ("x=3", "\\boxed{3}", 1),
    ("3", "\\boxed{x=3}", 1),
    # Several answers after the thinking are read as one set.
    ("2", "\\boxed{1} no wait \\boxed{2}", 0),  # FALSE NEGATIVE: {1, 2} != 2
    ("90^\\circ", "\\boxed{90}", 1),
    # Malformed predictions score 0 without an error.
    ("5", "\\boxed{\\frac{}{}}", 0),
    ("5", "\\boxed{", 0),
    ("5", "\\boxed{1/0}", 0),
]


@pytest.fixture(scope="module")
def table_results(math_pool):
  records = [{"answer": gold} for gold, _, _ in TABLE]
  texts = [f"<think>\nLet me see.\n</think>\n\n{pred}" for _, pred, _ in TABLE]
  return verify_batch("math", records, texts, [[0]] * len(TABLE), pool=math_pool)


def test_table_has_no_errors_or_timeouts(table_results):
  _, stats = table_results
  assert stats["errors"] == 0 and stats["timeouts"] == 0, stats["details"]


@pytest.mark.parametrize("row", range(len(TABLE)),
                         ids=[f"{g}|{p}" for g, p, _ in TABLE])
def test_math_table(table_results, row):
  rewards, _ = table_results
  gold, pred, expected = TABLE[row]
  assert rewards[row] == expected, f"gold {gold!r}, prediction {pred!r}"


def test_only_text_after_thinking_is_graded(math_pool):
  records = [{"answer": "4"}] * 4
  texts = ["\\boxed{4} is my guess.\n</think>\n\n\\boxed{5}",  # thinking's answer ignored
           "I think \\boxed{4}",  # no end of thinking: cut off, scores 0 under `math`
           "<think>a</think>b</think>\\boxed{4}",  # the last tag ends the thinking
           "</think>The answer is 4."]  # no \boxed{}: plain expression extraction
  rewards, stats = verify_batch("math", records, texts, [[0]] * 4, pool=math_pool)
  np.testing.assert_array_equal(rewards, np.array([0, 0, 1, 1], np.float32))
  assert stats["errors"] == 0 and stats["timeouts"] == 0


def test_whole_text_variant_grades_unclosed_completions(math_pool):
  records = [{"answer": "4"}] * 2
  texts = ["I think \\boxed{4}", "\\boxed{4} first.</think>\\boxed{5}"]
  rewards, _ = verify_batch("math_whole_text", records, texts, [[0]] * 2, pool=math_pool)
  np.testing.assert_array_equal(rewards, np.array([1, 0], np.float32))


def test_unparseable_gold_is_an_error(math_pool):
  rewards, stats = verify_batch("math", [{"answer": ""}], ["</think>\\boxed{1}"], [[0]],
                                pool=math_pool)
  assert rewards[0] == 0 and stats["errors"] == 1
  assert "gold" in stats["details"][0][1]
