"""Failures cost one sample its reward and are counted: timeouts, raises, crashes, bad values."""

import math

import numpy as np
import pytest

import faulty_verifiers
from mrt_jax.rewards import (VerifierPool, answer_segment, get_verifier, last_boxed,
                             register_verifier, verify_batch)

register_verifier("test_scripted", faulty_verifiers.scripted, isolated=True)
register_verifier("test_scripted_inline", faulty_verifiers.scripted, isolated=False)


def _run(name, records, pool=None):
  return verify_batch(name, records, ["text"] * len(records), [[1, 2, 3]] * len(records),
                      pool=pool)


def test_hung_verifier_times_out_and_its_worker_is_replaced(strict_pool):
  restarts = strict_pool.restarts
  records = [{"value": 1.0}, {"action": "sleep"}, {"value": 0.5}, {"action": "len"}]
  rewards, stats = _run("test_scripted", records, strict_pool)
  np.testing.assert_array_equal(rewards, np.array([1.0, 0.0, 0.5, 0.3], np.float32))
  assert stats["timeouts"] == 1 and stats["errors"] == 0
  assert stats["details"][0][0] == 1 and "timeout" in stats["details"][0][1]
  assert strict_pool.restarts == restarts + 1
  rewards, stats = _run("test_scripted", [{"value": 1.0}] * 3, strict_pool)  # pool still works
  np.testing.assert_array_equal(rewards, np.ones(3, np.float32))
  assert stats["timeouts"] == 0 and stats["errors"] == 0


def test_math_verify_hang_is_a_timeout(strict_pool):
  # 10^(10^10) makes SymPy build a 10-billion-digit integer: math-verify hangs on it.
  records = [{"answer": "5"}, {"answer": "5"}]
  texts = ["</think>\\boxed{10^{10^{10}}}", "</think>\\boxed{5}"]
  rewards, stats = verify_batch("math", records, texts, [[0], [0]], pool=strict_pool)
  np.testing.assert_array_equal(rewards, np.array([0.0, 1.0], np.float32))
  assert stats["timeouts"] == 1 and stats["errors"] == 0


@pytest.mark.parametrize("name", ["test_scripted", "test_scripted_inline"])
def test_raise_and_bad_values_are_errors(strict_pool, name):
  records = [{"action": "raise"}, {"value": 1.0}, {"value": 1.5}, {"value": math.nan},
             {"value": -0.1}, {"value": "high"}, {"value": 0.25}]
  rewards, stats = _run(name, records, strict_pool)
  np.testing.assert_array_equal(rewards, np.array([0, 1, 0, 0, 0, 0, 0.25], np.float32))
  assert rewards.dtype == np.float32 and rewards.shape == (7,)
  assert stats["errors"] == 5 and stats["timeouts"] == 0
  assert [i for i, _ in stats["details"]] == [0, 2, 3, 4, 5]
  assert "RuntimeError: verifier bug" in stats["details"][0][1]
  assert "outside [0, 1]" in stats["details"][1][1]


def test_crashed_worker_is_an_error_and_replaced(strict_pool):
  restarts = strict_pool.restarts
  rewards, stats = _run("test_scripted", [{"action": "crash"}, {"value": 1.0}], strict_pool)
  np.testing.assert_array_equal(rewards, np.array([0.0, 1.0], np.float32))
  assert stats["errors"] == 1 and "worker died (exit code 3)" in stats["details"][0][1]
  assert strict_pool.restarts == restarts + 1


def test_interrupted_batch_leaves_no_stale_results(strict_pool, monkeypatch):
  import multiprocessing.connection  # pylint: disable=g-import-not-at-top

  real_wait, calls = multiprocessing.connection.wait, []

  def interrupted(*args, **kwargs):  # Ctrl-C while the batch waits; later waits (joins) work
    calls.append(1)
    if len(calls) == 1:
      raise KeyboardInterrupt
    return real_wait(*args, **kwargs)

  restarts = strict_pool.restarts
  with monkeypatch.context() as m:
    m.setattr(multiprocessing.connection, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
      _run("test_scripted", [{"action": "nap", "value": 0.5}] * 2, strict_pool)
  assert strict_pool.restarts == restarts + 2  # both busy workers replaced
  rewards, stats = _run("test_scripted", [{"value": 1.0}, {"value": 0.0}], strict_pool)
  np.testing.assert_array_equal(rewards, np.array([1.0, 0.0], np.float32))
  assert stats["errors"] == 0 and stats["timeouts"] == 0


def test_empty_batch(strict_pool):
  rewards, stats = _run("test_scripted", [], strict_pool)
  assert rewards.shape == (0,) and stats["errors"] == 0 and stats["timeouts"] == 0


def test_bad_calls():
  with pytest.raises(ValueError, match="unknown verifier 'nope'.*'math'"):
    verify_batch("nope", [], [], [])
  with pytest.raises(ValueError, match="2 records, 1 texts and 2 token id lists"):
    verify_batch("elimination", [{}, {}], ["a"], [[1], [2]])
  with pytest.raises(ValueError, match="already registered"):
    register_verifier("math", faulty_verifiers.scripted)
  with pytest.raises(ValueError, match="num_workers >= 1"):
    VerifierPool(num_workers=0)
  assert get_verifier("math").isolated and not get_verifier("elimination").isolated


def test_closed_pool_refuses_work():
  pool = VerifierPool(num_workers=1, timeout_s=5.0)
  pool.close()
  with pytest.raises(RuntimeError, match="after close"):
    pool.map(faulty_verifiers.scripted, [({"value": 1.0}, "", [])])


def test_answer_helpers():
  assert answer_segment("a</think>b</think>c") == "b</think>c"  # the first tag ends thinking
  assert answer_segment("no tag") is None
  assert answer_segment("no tag", whole_text_if_unclosed=True) == "no tag"
  assert last_boxed("\\boxed{1} and \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
  assert last_boxed("\\boxed{\\frac{1}{2}") is None  # cut off
  assert last_boxed("nothing") is None


def test_pool_settings_come_from_the_config_fields():
  from mrt_jax.rewards import default_pool, pool_for
  pool = pool_for("math", 1, 2.5)
  assert pool is pool_for("math", 1, 2.5)  # one pool per setting, shared by the run
  assert len(pool._workers) == 1 and pool.timeout_s == 2.5  # pylint: disable=protected-access
  assert pool_for("elimination", 1, 2.5) is None  # inline: no worker processes
  with pytest.raises(ValueError, match=r"reward.num_workers=-1, reward.timeout_s=2.5"):
    pool_for("math", -1, 2.5)
  with pytest.raises(ValueError, match=r"reward.timeout_s=0"):
    default_pool(1, 0)
