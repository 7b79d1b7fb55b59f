"""Training data: local problem files through grain, and the synthetic elimination task.

Public API:
  dataset, prompts = prompt_pipeline(path, tokenizer, batch_size=B, max_prompt_len=P, seed=s)
  it = iter(dataset); batch = next(it)       # list of examples {"prompt_ids", "answer", ...}
  state = it.get_state(); it.set_state(state) # exact resume
  problems = elimination.generate_problems(n, seed)   # records for the `elimination` verifier
"""

from mrt_jax.data import elimination
from mrt_jax.data.pipeline import (MATH_PROMPT_TEMPLATE, PromptSet, batch_dataset,
                                   pipeline_from_config, prompt_pipeline, render_prompts)
from mrt_jax.data.sources import DataError, check_fields, load_records, write_jsonl

__all__ = [
    "DataError", "MATH_PROMPT_TEMPLATE", "PromptSet", "batch_dataset", "check_fields",
    "elimination", "load_records", "pipeline_from_config", "prompt_pipeline", "render_prompts",
    "write_jsonl",
]
