"""MRT on the sum task (sum_task.py): python -m mrt_jax.launch --config=config.py:cpu"""

import os

from mrt_jax import config_defaults as defaults

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  c = defaults.base("sum_task", model_path="sum_task_model")  # a Hugging Face checkpoint dir
  c = defaults.rl(c, estimator="mrt", alpha=1.0)  # α = 1
  c.plugins = ("sum_task",)  # sum_task.py, next to this file, registers the verifier
  c.reward.verifier = "sum_task"  # registered by sum_task.py
  c.data.path = os.path.join(HERE, "train.jsonl")  # {"question": ..., "answer": "7"} per line
  c.data.problem_field = "question"  # the file's name for the problem text
  c.eval.data_path = os.path.join(HERE, "test.jsonl")  # held-out problems for evaluation
  c.segment.method = "fixed_chunk"  # no restart markers in these traces: blocks of chunk_tokens
  return defaults.finish(c, arg)  # :cpu shrinks the run, keeps this task
