"""Verifiers: problem record, completion text and token ids -> reward in [0, 1], by name.

Public API:
  rewards, stats = verify_batch("math", records, texts, token_ids)   # float32 [B], counters
  register_verifier("my_task", fn, isolated=False)                  # fn(record, text, ids)
  register_verifier("my_task", fn, extract_answer=answer_fn)        # answer_fn(text) -> str
  register_task_prover("my_task", j_fn)                             # j_fn(record, thinking) -> J
  with VerifierPool(num_workers=4, timeout_s=10.0) as pool:           # hard per-item timeout
    verify_batch("math", records, texts, token_ids, pool=pool)

What the three arguments hold, the same in training, probes and evaluation: `mrt_jax.task`.
Registered: `math`, `math_whole_text` (math-verify, isolated in worker processes) and
`elimination` (the synthetic task, inline); task provers `elimination` (its exact J
from the clues a trace checks) and `elimination_left` (J from the letters its last "Left" line
keeps).
"""

from mrt_jax.rewards.answer import answer_segment, last_boxed
from mrt_jax.rewards.batch import default_pool, pool_for, verify_batch
from mrt_jax.rewards.math_verifier import math_reward, verify_math, verify_math_whole_text
from mrt_jax.rewards.pool import Outcome, VerifierPool
from mrt_jax.rewards.registry import (TASK_PROVERS, VERIFIERS, Verifier, get_task_prover,
                                      get_verifier, register_task_prover, register_verifier)
from mrt_jax.rewards.synthetic import (elimination_left_success, elimination_success,
                                      verify_exact_boxed)

__all__ = [
    "Outcome", "TASK_PROVERS", "VERIFIERS", "Verifier", "VerifierPool", "answer_segment",
    "default_pool", "elimination_left_success", "elimination_success", "get_task_prover",
    "get_verifier", "last_boxed", "math_reward", "pool_for", "register_task_prover",
    "register_verifier", "verify_batch", "verify_exact_boxed", "verify_math",
    "verify_math_whole_text",
]
