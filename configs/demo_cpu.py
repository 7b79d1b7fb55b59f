"""The small-scale MRT demo, end to end on a laptop CPU in minutes.

Builds a tiny BPE tokenizer and a tiny random Qwen2-style model, writes synthetic problems, then
trains with the MRT advantage; everything lives under /tmp/mrt_jax/demo_cpu.
  python -m mrt_jax.launch --config=configs/demo_cpu.py
The `cpu` variant is the same config: `--config=configs/demo_cpu.py:cpu`.
"""

from ml_collections import ConfigDict

from mrt_jax import config_defaults as defaults


def get_config(arg=None):
  c = defaults.base("demo_cpu", model_path=f"{defaults.DEMO_DIR}/model")
  c = defaults.rl(c, estimator="mrt", alpha=1.0)  # α = 1
  c = defaults.finish(c, arg or "cpu")  # the demo is tiny in every variant
  c.train.total_steps = 20  # enough steps to watch the reward move
  c.demo = ConfigDict()  # what the demo builds before training
  c.demo.num_problems = 256  # synthetic problems written to data.path
  c.demo.vocab_size = 384  # tiny byte-level BPE tokenizer, R1-Distill special tokens
  c.demo.hidden_size = 64  # D of the random model
  c.demo.intermediate_size = 128  # F
  c.demo.num_layers = 2  # L
  c.demo.num_heads = 4  # H
  c.demo.num_kv_heads = 2  # K heads of the kv cache (GQA), not the block count K
  return c
