"""The meta-prover's settings fail at setup, naming the fields, instead of falling back."""

import types

import pytest

from mrt_jax import config_cli
from mrt_jax.train import setup


class _Tokenizer:
  """Characters as token ids; eos 3."""
  eos_token_id = 3

  def encode(self, text, add_special_tokens=False):
    del add_special_tokens
    return [ord(c) for c in text]


MODEL = types.SimpleNamespace(eos_token_ids=(3,))


def _experience(*overrides, config="configs/demo_cpu.py", tokenizer=_Tokenizer()):
  c = config_cli.load_config(config, list(overrides))
  return setup.experience_config(c, tokenizer, MODEL)


def test_estimators_that_read_j_refuse_zero_probes():
  with pytest.raises(ValueError, match=r"config.probe.num_probes=0 .*"
                                       r"config.advantage.estimator='mrt' reads"):
    _experience("probe.estimator=sampled", "probe.num_probes=0")
  with pytest.raises(ValueError, match=r"probe.num_probes=0 .*MRT-STaR \(config.star\) reads"):
    _experience("probe.num_probes=0", config="configs/mrt_star_7b.py:cpu")
  with pytest.raises(ValueError, match="advantage.estimator='termination' reads"):
    _experience("probe.estimator=sampled", "probe.num_probes=0", "advantage.estimator=termination")
  # Likelihood needs no sampled probes; GRPO reads no J.
  assert _experience("probe.num_probes=0", "probe.estimator=likelihood").measures_j
  assert not _experience("advantage.estimator=grpo", "probe.num_probes=0").measures_j


def test_likelihood_needs_an_answer_field_a_template_and_an_eos():
  with pytest.raises(ValueError, match="config.probe.estimator='mean' is unknown"):
    _experience("probe.estimator=mean")
  with pytest.raises(ValueError, match="config.data.answer_field is empty"):
    _experience("probe.estimator=likelihood", "data.answer_field=")
  with pytest.raises(ValueError, match="needs config.probe.answer_template"):
    _experience("probe.estimator=likelihood", "probe.answer_template=")
  with pytest.raises(ValueError, match=r"probe.answer_template='<x>' has no \{answer\} field"):
    _experience("probe.estimator=likelihood", "probe.answer_template=<x>")
  no_eos = _Tokenizer()
  no_eos.eos_token_id = None
  with pytest.raises(ValueError, match="defines none"):
    _experience("probe.estimator=likelihood", tokenizer=no_eos)
  cfg = _experience("probe.estimator=likelihood")
  assert cfg.j_estimator == "likelihood"
  assert cfg.answer.tokens("C") == tuple(map(ord, "\\boxed{C}")) + (3,)


def test_a_fixed_meta_prover_needs_an_estimator_that_reads_j():
  with pytest.raises(ValueError, match=r"config.probe.meta_prover='/w' names a meta-prover, but "
                                       r"config.advantage.estimator='grpo' reads no J"):
    _experience("advantage.estimator=grpo", "probe.meta_prover=/w")
  assert _experience("probe.estimator=likelihood", "probe.meta_prover=/w").measures_j
