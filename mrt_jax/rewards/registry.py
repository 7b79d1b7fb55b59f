"""Verifiers registered by name: problem record, completion text and token ids -> reward in [0, 1].

A verifier is a plain function `fn(record, text, token_ids) -> float` where `record` is the
problem record the data pipeline yields (at least the gold answer under "answer"), `text` the
decoded completion (thinking, "</think>", answer) and `token_ids` its token ids (int32 [T]
array). Verifiers that may hang or crash (anything built on SymPy) are registered
`isolated=True` and run in worker processes under a hard timeout (`VerifierPool`); cheap
pure-Python ones run inline. `mrt_jax.task` says exactly what the three arguments hold.

A verifier may come with an answer extractor, `extract_answer(text) -> str | None`: the final
answer of a completion as a string (None: no answer), which maj@k votes on and samples.jsonl
records. Without one, the last \\boxed{} after the thinking is the answer.

A task may also register a *task prover*, `fn(record, thinking) -> float in [0, 1]`: the success
J of a meta-prover that the task defines exactly, as a function of the thinking text so far
(`register_task_prover`; J estimator "task", config `probe.task_prover`). The elimination
puzzle's is the chance that a guess among the letters its checked clues leave is right.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

VerifierFn = Callable[[Mapping[str, Any], str, np.ndarray], float]
AnswerFn = Callable[[str], "str | None"]


@dataclasses.dataclass(frozen=True)
class Verifier:
  """A registered verifier.

  Attributes:
    fn: `fn(record, text, token_ids) -> float`; for isolated verifiers a function of an
      importable module, not `__main__` (workers unpickle it by its qualified name).
    isolated: run it in a worker process with a hard timeout instead of inline.
    extract_answer: `extract_answer(text) -> str | None`, the final answer of a completion
      (maj@k, samples.jsonl); None means the last \\boxed{} after the thinking.
  """
  fn: VerifierFn
  isolated: bool
  extract_answer: AnswerFn | None = None


VERIFIERS: dict[str, Verifier] = {}


def register_verifier(name: str, fn: VerifierFn, *, isolated: bool = True,
                      extract_answer: AnswerFn | None = None) -> VerifierFn:
  """Registers `fn` under `name`; returns `fn` unchanged.

  Args:
    name: the name configs and `verify_batch` use.
    fn: `fn(record, text, token_ids) -> float in [0, 1]`.
    isolated: run in worker processes with a hard timeout; False only for verifiers that cannot
      hang (no SymPy, no unbounded loops).
    extract_answer: optional `extract_answer(text) -> str | None` (module docstring).

  Raises:
    ValueError: `name` is already registered to another function.
  """
  existing = VERIFIERS.get(name)
  if existing is not None and existing.fn is not fn:
    raise ValueError(f"verifier {name!r} is already registered to {existing.fn.__qualname__}; "
                     "expected a new name")
  VERIFIERS[name] = Verifier(fn, isolated, extract_answer)
  return fn


def get_verifier(name: str) -> Verifier:
  """The verifier registered as `name`.

  Raises:
    ValueError: no verifier has that name; lists the registered ones.
  """
  if name not in VERIFIERS:
    raise ValueError(f"unknown verifier {name!r}; expected one of {sorted(VERIFIERS)}")
  return VERIFIERS[name]


TaskProverFn = Callable[[Mapping[str, Any], str], float]
TASK_PROVERS: dict[str, TaskProverFn] = {}


def register_task_prover(name: str, fn: TaskProverFn) -> TaskProverFn:
  """Registers `fn(record, thinking) -> J in [0, 1]` under `name`; returns `fn` unchanged.

  `record` is the verifier's record (`mrt_jax.task.verifier_record`), `thinking` the decoded
  thinking tokens before the cut (no termination suffix; "" at the empty thinking).

  Raises:
    ValueError: `name` is already registered to another function.
  """
  existing = TASK_PROVERS.get(name)
  if existing is not None and existing is not fn:
    raise ValueError(f"task prover {name!r} is already registered to {existing.__qualname__}; "
                     "expected a new name")
  TASK_PROVERS[name] = fn
  return fn


def get_task_prover(name: str, field: str = "probe.task_prover") -> TaskProverFn:
  """The task prover registered as `name`; the error names `field` and the registered ones."""
  if name not in TASK_PROVERS:
    raise ValueError(f"{field}={name!r} is not a registered task prover; expected one of "
                     f"{sorted(TASK_PROVERS)} (mrt_jax.rewards.register_task_prover)")
  return TASK_PROVERS[name]
