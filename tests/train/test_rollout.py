"""One step's experience: probes at every boundary give J, b_0 is probed once per prompt."""

import dataclasses

import jax
import numpy as np
import pytest

from model_fixtures import tiny_config
from mrt_jax import models, sampling
from mrt_jax.mrt.segment import SegmentConfig
from mrt_jax.train.rollout import ExperienceConfig, FixedProver, collect

P, G, T, CHUNK, M = 2, 3, 12, 4, 2  # prompts, group size, completion tokens, block size, m
N = T // CHUNK  # blocks per rollout (the random model never stops: every trace has T tokens)
SUFFIX = (5, 6, 7)


def _verdict(ids):
  """A deterministic 'verifier' of a probe (suffix + answer ids): the first answer id is even."""
  return float(ids[len(SUFFIX)] % 2 == 0)


def _reward_fn(records, texts, ids):
  return np.array([_verdict(i) for i in ids], np.float32), {}


def _cfg(**kw) -> ExperienceConfig:
  """The tests' experience settings (greedy probes of 3 tokens, blocks of CHUNK tokens), with
  `kw` replacing any field."""
  return ExperienceConfig(**{
      "num_generations": G, "max_completion_len": T, "temperature": 1.0, "top_p": 1.0,
      "num_probes": M, "probe_temperature": 0.0, "probe_top_p": 1.0, "probe_max_answer_len": 3,
      "suffix_tokens": SUFFIX, "stop_token_ids": (), "estimator": "mrt", "alpha": 1.0,
      "segment": SegmentConfig(method="fixed_chunk", chunk_tokens=CHUNK), **kw})


# b_0 decodes from prompt + suffix when that fits the sampler's prompt buckets (16), else it
# joins the fork (the prompts fit 8, prompt + suffix does not).
@pytest.fixture(scope="module", params=[(16,), (8,)], ids=["b0_generate", "b0_forked"])
def setup(request):
  config = tiny_config()
  params = models.init_params(config, jax.random.key(3))
  prompts = [[1, 9, 17, 30, 2], [1, 40, 41, 12, 8, 33, 3]]
  cfg = _cfg()
  sampler = sampling.Sampler(config, prompt_buckets=request.param)
  exp = collect(sampler, params, prompts, [{}] * P, cfg, _reward_fn,
                decode=lambda ids: " ".join(map(str, ids)), seed=0)
  return config, params, prompts, exp


def test_b0_is_probed_once_per_prompt_and_shared_by_its_group(setup):
  _, _, _, exp = setup
  assert exp.stats["num_probes"] == (P * G * N + P) * M  # was P * G * (N + 1) * M
  j0_PxG = exp.success_BxN1[:, 0].reshape(P, G)
  np.testing.assert_array_equal(j0_PxG, j0_PxG[:, :1].repeat(G, axis=1))


def test_success_equals_greedy_answers_from_explicit_prefixes(setup):
  """J_j of every row and boundary = the verdict of greedy decoding prompt + trace[:b_j] +
  suffix."""
  config, params, prompts, exp = setup
  assert all(len(c) == T for c in exp.completions)
  prefixes = [exp.prompts[i] + exp.completions[i][:j * CHUNK] + list(SUFFIX)
              for i in range(P * G) for j in range(N + 1)]
  ref = sampling.generate(config, params, prefixes, max_new_tokens=3, temperature=0.0)
  want_BxN1 = np.array([_verdict(list(SUFFIX) + t) for t in ref.tokens]).reshape(P * G, N + 1)
  np.testing.assert_array_equal(exp.success_BxN1, want_BxN1)
  np.testing.assert_allclose(exp.progress_BxN, np.diff(want_BxN1, axis=1), atol=0)
  assert exp.boundary_mask_BxN1.all()


def _encode(text):
  """A character tokenizer on ids 1..63 of the tiny vocab ("A" -> 5, "=" -> 1)."""
  return [ord(c) - 60 for c in text]


def test_likelihood_j_is_the_probability_of_the_reference_answer():
  """J_j = exp(sum of log-probs) of the rendered answer + stop after prompt + trace[:b_j] +
  suffix, scored on the explicit prefixes; no answer is sampled, so J repeats exactly."""
  from mrt_jax.mrt.meta_prover import AnswerTemplate
  config = tiny_config()
  params = models.init_params(config, jax.random.key(3))
  prompts = [[1, 9, 17, 30, 2], [1, 40, 41, 12, 8, 33, 3]]
  records = [{"answer": "D"}, {"answer": "EF"}]
  answer = AnswerTemplate("={answer}", stop_token=2, encode=_encode)
  cfg = _cfg(num_probes=0, probe_temperature=0.8, probe_top_p=0.9, j_estimator="likelihood",
             answer=answer)
  sampler = sampling.Sampler(config, prompt_buckets=(16,))
  run = lambda seed: collect(sampler, params, prompts, records, cfg, _reward_fn,
                             decode=lambda ids: " ".join(map(str, ids)), seed=seed)
  exp = run(0)
  assert answer.tokens("EF") == (1, 9, 10, 2) and exp.stats["num_probes"] == 0
  contexts = [exp.prompts[i] + exp.completions[i][:j * CHUNK] + list(SUFFIX)
              for i in range(P * G) for j in range(N + 1)]
  targets = [answer.tokens(records[i // G]["answer"]) for i in range(P * G)
             for _ in range(N + 1)]
  lp = sampling.Sampler(config).score(params, contexts, targets, temperature=0.8, top_p=0.9)
  want_BxN1 = np.exp([float(np.sum(x, dtype=np.float64)) for x in lp]).reshape(P * G, N + 1)
  assert np.all(want_BxN1 > 0)
  np.testing.assert_allclose(exp.success_BxN1, want_BxN1, rtol=1e-5, atol=0)
  again = collect(sampler, params, prompts, records, cfg, _reward_fn,
                  decode=lambda ids: " ".join(map(str, ids)), seed=0)
  np.testing.assert_array_equal(again.progress_BxN, exp.progress_BxN)


def test_estimators_that_read_j_refuse_configs_that_do_not_measure_it():
  common = dict(num_generations=G, max_completion_len=T, temperature=1.0, top_p=1.0,
                probe_temperature=0.0, probe_top_p=1.0, probe_max_answer_len=3,
                suffix_tokens=SUFFIX, stop_token_ids=(), alpha=1.0)
  for estimator in ("mrt", "termination", "termination_dense"):
    with pytest.raises(ValueError, match=f"estimator='{estimator}' reads the meta-prover's J"):
      ExperienceConfig(num_probes=0, estimator=estimator, **common)
  with pytest.raises(ValueError, match="j_estimator='likelihood' needs the reference answer"):
    ExperienceConfig(num_probes=0, estimator="mrt", j_estimator="likelihood", **common)
  with pytest.raises(ValueError, match="j_estimator='mean' is unknown"):
    ExperienceConfig(num_probes=2, estimator="mrt", j_estimator="mean", **common)
  ExperienceConfig(num_probes=0, estimator="grpo", **common)  # outcome-only: fine


def test_a_fixed_meta_prover_answers_on_the_policys_rollouts(setup):
  """With a fixed meta-prover the policy's rollouts are unchanged and J_j is the prover's greedy
  answer on prompt + trace[:b_j] + suffix (its own cache, prefilled from the rollouts)."""
  config, params, prompts, exp = setup
  other = models.init_params(config, jax.random.key(11))
  cfg = _cfg()
  decode = lambda ids: " ".join(map(str, ids))
  prover = FixedProver(sampling.Sampler(config, prompt_buckets=(16, 32)), other)
  fixed = collect(sampling.Sampler(config, prompt_buckets=(16,)), params, prompts, [{}] * P, cfg,
                  _reward_fn, decode=decode, seed=0, prover=prover)
  assert fixed.completions == exp.completions
  np.testing.assert_array_equal(fixed.outcome_B, exp.outcome_B)
  prefixes = [exp.prompts[i] + exp.completions[i][:j * CHUNK] + list(SUFFIX)
              for i in range(P * G) for j in range(N + 1)]
  ref = sampling.generate(config, other, prefixes, max_new_tokens=3, temperature=0.0)
  want_BxN1 = np.array([_verdict(list(SUFFIX) + t) for t in ref.tokens]).reshape(P * G, N + 1)
  np.testing.assert_array_equal(fixed.success_BxN1, want_BxN1)
  assert not np.array_equal(fixed.success_BxN1, exp.success_BxN1)  # another μ, another J
  # The policy named as its own fixed prover: the same J as from the rollouts' own cache.
  same = collect(sampling.Sampler(config, prompt_buckets=(16,)), params, prompts, [{}] * P, cfg,
                 _reward_fn, decode=decode, seed=0, prover=FixedProver(prover.sampler, params))
  np.testing.assert_array_equal(same.success_BxN1, exp.success_BxN1)
  grpo = dataclasses.replace(cfg, estimator="grpo", j_estimator=None, num_probes=0)
  with pytest.raises(ValueError, match="a fixed meta-prover was given, but estimator='grpo'"):
    collect(prover.sampler, params, prompts, [{}] * P, grpo, _reward_fn, decode=decode, seed=0,
            prover=prover)


def test_a_task_prover_gives_j_from_each_cuts_thinking_text(setup):
  """j_estimator='task': J_j = the task prover of the record and the decoded trace[:b_j]; the
  rollouts are the ones the model-J run sampled (same seed), and no KV cache is kept."""
  config, params, prompts, exp = setup
  decode = lambda ids: " ".join(map(str, ids))
  # A prover that reads the text: the share of even ids among the thinking's tokens so far
  # (0.5 at the empty thinking), scaled by the record's weight.
  def prover(record, thinking):
    ids = [int(t) for t in thinking.split()]
    return record["w"] * (sum(t % 2 == 0 for t in ids) / len(ids) if ids else 0.5)
  records = [{"w": 1.0}, {"w": 0.5}]
  cfg = _cfg(num_probes=0, j_estimator="task", task_prover=prover)
  sampler = sampling.Sampler(config, prompt_buckets=(16,))
  calls = []

  class Recording:  # the sampler, recording whether each generate call keeps its cache
    def generate(self, *a, **kw):
      calls.append(kw["keep_cache"])
      return sampler.generate(*a, **kw)
  got = collect(Recording(), params, prompts, records, cfg, _reward_fn, decode=decode, seed=0)
  assert calls == [False]  # one call (no probes sampled), no cache kept
  assert got.completions == exp.completions
  want_BxN1 = np.array([[prover(records[i // G], decode(exp.completions[i][:j * CHUNK]))
                         for j in range(N + 1)] for i in range(P * G)], np.float32)
  np.testing.assert_array_equal(got.success_BxN1, want_BxN1)
  np.testing.assert_allclose(got.progress_BxN, np.diff(want_BxN1, axis=1), atol=1e-7)
  assert got.stats["num_probes"] == 0 and got.stats["probe_answers"] == P * G * N + P
  # Bad settings: a task J without a prover, a prover with another J, a fixed model prover.
  with pytest.raises(ValueError, match="task_prover is missing; expected it exactly when "
                     "j_estimator='task'"):
    dataclasses.replace(cfg, task_prover=None)
  with pytest.raises(ValueError, match="task_prover is given"):
    dataclasses.replace(cfg, j_estimator="sampled", num_probes=M)
  with pytest.raises(ValueError, match="j_estimator='task' runs no model"):
    collect(sampling.Sampler(config, prompt_buckets=(16,)), params, prompts, records, cfg,
            _reward_fn, decode=decode, seed=0,
            prover=FixedProver(sampling.Sampler(config, prompt_buckets=(16, 32)), params))
  # A J outside [0, 1] is an error naming the cut's record.
  bad = dataclasses.replace(cfg, task_prover=lambda record, thinking: 2.0)
  with pytest.raises(ValueError, match=r"the task prover returned J=2.0 at cut 0 .*\[0, 1\]"):
    collect(sampling.Sampler(config, prompt_buckets=(16,)), params, prompts, records, bad,
            _reward_fn, decode=decode, seed=0)


def test_open_blocks_as_answer_turns_an_unclosed_completions_last_block_into_answer():
  from mrt_jax.mrt.segment import Segmentation
  from mrt_jax.train.rollout import open_blocks_as_answer
  ids = np.array([[1, 1, 2, 2, 3, 0],    # closed: "</think>" in its text; unchanged
                  [1, 1, 2, 2, 3, 3],    # unclosed: block 3 becomes answer tokens
                  [1, 1, 1, 1, 0, 0],    # unclosed, one block: all of it
                  [0, 0, 0, 0, 0, 0]])   # no thinking: nothing to turn
  segs = [Segmentation((2, 4, 5), 5, 6), Segmentation((2, 4, 6), 6, 6),
          Segmentation((4,), 4, 4), Segmentation((), 0, 6)]
  texts = ["a b c </think> d", "a b c", "a", ""]
  got = open_blocks_as_answer(ids, segs, texts, "</think>")
  np.testing.assert_array_equal(got, [[1, 1, 2, 2, 3, 0], [1, 1, 2, 2, 0, 0],
                                      [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
  assert ids[1, 5] == 3  # the input is not changed


def test_open_block_outcome_gives_the_last_blocks_tokens_the_outcome_advantage_alone(setup):
  # The random model never writes "</think>": every rollout is unclosed, its block N open.
  config, params, prompts, exp = setup
  cfg = _cfg(open_block="outcome")
  got = collect(sampling.Sampler(config, prompt_buckets=(16,)), params, prompts, [{}] * P, cfg,
                _reward_fn, decode=lambda ids: " ".join(map(str, ids)), seed=0)
  assert got.completions == exp.completions
  np.testing.assert_array_equal(got.progress_BxN, exp.progress_BxN)  # J is measured as before
  r_PxG = exp.outcome_B.reshape(P, G)
  centered = r_PxG - r_PxG.mean(axis=1, keepdims=True)
  a_out_B = (centered / (centered.std(axis=1, ddof=1, keepdims=True) + cfg.eps)).reshape(-1)
  last = slice((N - 1) * CHUNK, T)
  np.testing.assert_allclose(got.advantages_BxT[:, last],
                             np.repeat(a_out_B[:, None], T - (N - 1) * CHUNK, axis=1), atol=1e-6)
  np.testing.assert_allclose(got.advantages_BxT[:, :(N - 1) * CHUNK],
                             exp.advantages_BxT[:, :(N - 1) * CHUNK], atol=1e-6)
  # ... where "progress" credits block N with α · p_N.
  np.testing.assert_allclose(exp.advantages_BxT[:, last] - got.advantages_BxT[:, last],
                             np.repeat(exp.progress_BxN[:, N - 1:N], T - (N - 1) * CHUNK, axis=1),
                             atol=1e-6)
  with pytest.raises(ValueError, match="open_block='answer' is unknown; expected one of "
                     r"\['progress', 'outcome'\]"):
    _cfg(open_block="answer")
  with pytest.raises(ValueError, match="open_block='outcome' with estimator='grpo'"):
    _cfg(open_block="outcome", estimator="grpo", num_probes=0, j_estimator=None)
