"""MRT (dense progress advantage) on DeepSeek-R1-Distill-Qwen-7B with the paper's settings.

Launch on a TPU v5p-64 slice (run on every worker):
  python -m mrt_jax.launch --config=configs/mrt_rl_7b.py
Tiny local run of the same pipeline on a CPU:
  python -m mrt_jax.launch --config=configs/mrt_rl_7b.py:cpu
"""

from mrt_jax import config_defaults as defaults


def get_config(arg=None):
  c = defaults.base("mrt_rl_7b", model_path="checkpoints/DeepSeek-R1-Distill-Qwen-7B")
  c = defaults.rl(c, estimator="mrt", alpha=1.0)  # α = 1 as in the MRT authors' recipe
  # v5p-64 is 32 chips: fsdp 8 × tensor 4 (Qwen2-7B: 28 query / 4 kv heads).
  c.mesh.fsdp = 8  # params and optimizer state sharded 8 ways
  c.mesh.tensor = 4  # heads sharded 4 ways
  # 16 rows x 20480 tokens per micro-batch: fits v5p HBM with layer remat (python -m mrt_jax.aot).
  c.train.micro_batch_prompts = 4  # prompts (x G rows) per accumulation micro-batch
  return defaults.finish(c, arg, demo_assets=True)  # :cpu runs on the CPU demo's tiny model
