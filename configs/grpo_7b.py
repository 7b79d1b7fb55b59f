"""GRPO baseline (outcome reward only) on DeepSeek-R1-Distill-Qwen-7B, paper settings.

Same as configs/mrt_rl_7b.py except the advantage: A_{i,t} = A^out_i, no probes.
Launch on a TPU v5p-64 slice (run on every worker):
  python -m mrt_jax.launch --config=configs/grpo_7b.py
Tiny local run of the same pipeline on a CPU:
  python -m mrt_jax.launch --config=configs/grpo_7b.py:cpu
"""

from mrt_jax import config_defaults as defaults


def get_config(arg=None):
  c = defaults.base("grpo_7b", model_path="checkpoints/DeepSeek-R1-Distill-Qwen-7B")
  c = defaults.rl(c, estimator="grpo", alpha=0.0)  # α = 0: outcome reward only
  # 16 rows x 20480 tokens per micro-batch: fits v5p HBM with layer remat (python -m mrt_jax.aot).
  c.train.micro_batch_prompts = 4  # prompts (x G rows) per accumulation micro-batch
  c = defaults.finish(c, arg, demo_assets=True)  # :cpu runs on the CPU demo's tiny model
  c.probe.num_probes = 0  # m = 0: no meta-prover probes during training
  return c
