"""MRT-STaR on DeepSeek-R1-Distill-Qwen-7B: SFT on correct traces of maximal progress.

Each step samples G traces per problem, estimates J at every block boundary with m probes, keeps
the correct traces whose progress is maximal in their group (ties: fewer tokens), then takes one
SFT step on them (docs/method.md, MRT-STaR).
Launch on a TPU v5p-64 slice (run on every worker):
  python -m mrt_jax.launch --config=configs/mrt_star_7b.py
Tiny local run of the same pipeline on a CPU:
  python -m mrt_jax.launch --config=configs/mrt_star_7b.py:cpu
"""

from mrt_jax import config_defaults as defaults


def get_config(arg=None):
  c = defaults.base("mrt_star_7b", model_path="checkpoints/DeepSeek-R1-Distill-Qwen-7B")
  c.star = defaults.star()  # trace selection rule
  c.optimizer = defaults.optimizer(learning_rate=1e-6)  # the RL runs' lr; not fixed by the paper
  c.train = defaults.train(total_steps=200)  # sample → select → SFT steps
  c.train.global_batch_prompts = 64  # selected traces per SFT step
  return defaults.finish(c, arg, demo_assets=True)  # :cpu runs on the CPU demo's tiny model
