"""The demo's evaluation problems: none of them is trained on, by RL or by the SFT warm start."""

import pytest

from mrt_jax import config_cli
from mrt_jax.data import elimination
from mrt_jax.train import demo


def test_demo_evaluates_on_problems_it_never_trains_on():
  config = config_cli.load_config("configs/demo_cpu.py")
  assert config.eval.data_path and config.eval.data_path != config.data.path
  d = config.demo
  task = demo._task(config)
  train = elimination.generate_problems(d.num_problems, d.seed, task)
  sft = elimination.generate_problems(d.sft_problems, d.seed + 1, task)
  held = demo.heldout_problems(config)
  assert len(held) == d.num_test_problems
  assert not {p["id"] for p in held} & {p["id"] for p in train}
  seen = {p["problem"] for p in train + sft}
  assert not {p["problem"] for p in held} & seen
  assert len({p["problem"] for p in held}) == len(held)


def test_too_many_held_out_problems_is_an_error():
  # 3 letters and 2 clues make 6 puzzles in all, most of them already seen.
  config = config_cli.load_config("configs/demo_cpu.py", ["demo.num_test_problems=10",
                                                          "demo.num_candidates=3",
                                                          "demo.num_clues=2"])
  with pytest.raises(ValueError, match=r"demo.num_test_problems = 10: only \d+ puzzles"):
    demo.heldout_problems(config)
