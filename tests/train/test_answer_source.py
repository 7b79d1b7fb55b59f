"""The warm start's answers come from the frozen warm start, never from the params RL updates."""

import types

import jax
import jax.numpy as jnp

from model_fixtures import tiny_config
from mrt_jax import models
from mrt_jax.learner.state import param_shardings
from mrt_jax.models.sharding import SAMPLE_RULES, make_mesh
from mrt_jax.sampling import Sampler
from mrt_jax.train import loop

CONTEXTS = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]


def _run(params, target="warm_start"):
  config = tiny_config()
  experience = types.SimpleNamespace(probe_max_answer_len=6, stop_token_ids=(1,))
  return types.SimpleNamespace(model_config=config, mesh=make_mesh(), params=params,
                               experience=experience,
                               answer_rows=types.SimpleNamespace(target=target))


def _sample(config, params, seed=11):
  return Sampler(config, mesh=make_mesh(), rules=SAMPLE_RULES).generate(
      params, CONTEXTS, max_new_tokens=6, temperature=1.0, top_p=1.0, stop_token_ids=(1,),
      seed=seed).tokens


def test_without_a_reference_model_the_answers_survive_the_warm_starts_donation():
  config = tiny_config()
  warm = models.init_params(config, jax.random.key(0))
  expected = _sample(config, jax.tree.map(jnp.copy, warm))
  run = _run(warm)
  source = loop._AnswerSource(run, None, param_shardings(config, run.mesh, SAMPLE_RULES))
  # The train step donates the state's params; the source must not share their buffers.
  for leaf in jax.tree.leaves(warm):
    leaf.delete()
  assert source.sample(run, CONTEXTS, 11) == expected


def test_with_a_reference_model_the_answers_are_the_reference_models():
  config = tiny_config()
  reference = models.init_params(config, jax.random.key(0))
  current = models.init_params(config, jax.random.key(1))
  from_reference, from_current = _sample(config, reference), _sample(config, current)
  assert from_reference != from_current  # else this test could not tell the two apart
  run = _run(current)
  source = loop._AnswerSource(run, reference, param_shardings(config, run.mesh, SAMPLE_RULES))
  assert source.sample(run, CONTEXTS, 11) == from_reference


def test_the_reference_target_builds_no_sampler():
  run = _run(models.init_params(tiny_config(), jax.random.key(0)), target="reference")
  source = loop._AnswerSource(run, None, None)
  assert source.sampler is None and source.params is None
