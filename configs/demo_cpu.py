"""The small-scale MRT demo, end to end on a laptop CPU in minutes.

Builds a tiny BPE tokenizer and a tiny random Qwen2-style model, writes synthetic problems, then
trains with the MRT advantage; everything lives under /tmp/mrt_jax/demo_cpu.
  python -m mrt_jax.launch --config=configs/demo_cpu.py
The `cpu` variant is the same config: `--config=configs/demo_cpu.py:cpu`.
"""

from mrt_jax import config_defaults as defaults


def get_config(arg=None):
  c = defaults.base("demo_cpu", model_path=f"{defaults.DEMO_DIR}/model")
  c = defaults.rl(c, estimator="mrt", alpha=1.0)  # α = 1
  c = defaults.finish(c, arg or "cpu")  # the demo is tiny in every variant
  c.train.total_steps = 20  # enough steps to watch the reward move
  return c
