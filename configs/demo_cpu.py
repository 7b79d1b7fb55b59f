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
  c = defaults.finish(c, arg or "cpu", demo_assets=True)  # the demo is tiny in every variant
  c.eval.data_path = f"{defaults.DEMO_DIR}/test.jsonl"  # held-out problems the demo writes
  c.train.total_steps = 30  # enough steps to watch the reward move
  c.train.eval_every = 30  # evaluate the warm start (step 0) and the trained model (step 30)
  c.rollout.num_generations = 4  # G: a group needs several traces for outcome contrast
  c.optimizer.learning_rate = 3e-4  # a tiny model moves at a larger lr than 7B's 1e-6
  # J by the likelihood of the reference answer: exact for this task's one-letter answers, no
  # probe noise in a block's progress, and 1.02x the cost of a GRPO step (BENCHMARKS.md)
  c.probe.estimator = "likelihood"  # see the two lines above
  c.probe.num_probes = 8  # m of the sampled meta-prover, when probe.estimator=sampled
  c.eval.j_estimator = "likelihood"  # J(c) and normalized regret without probe noise
  c.eval.num_problems = 64  # held-out problems of test.jsonl; x num_samples = 128 traces
  c.optimizer.warmup_ratio = 0.0  # few steps: no warm-up
  return c
