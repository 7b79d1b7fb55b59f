"""A tiny BPE tokenizer with the R1 chat template, trained once on the elimination corpus."""

import pytest

from data_fixtures import TASK_CONFIG
from mrt_jax.data import elimination
from mrt_jax.models.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
  return build_tiny_tokenizer(str(tmp_path_factory.mktemp("tokenizer")),
                              elimination.tokenizer_corpus(40, 0, TASK_CONFIG), vocab_size=320)
