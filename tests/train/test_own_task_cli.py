"""A task defined outside the package (tests/task_example: its verifier module, data file,
tokenizer and a tiny Qwen2 from transformers) trains and evaluates through both CLIs, loaded
only by its config."""

import json
import re
import sys

import pytest

from launch_fixtures import metrics, run
from task_example import assets

CONFIG = "tests/task_example/config.py:cpu"
# One step of 2 prompts × 2 rollouts of 16 tokens, blocks of 8 tokens, 2 probes of 4 tokens.
SMALL = ["--config.train.total_steps=1", "--config.train.global_batch_prompts=2",
         "--config.train.micro_batch_prompts=1", "--config.rollout.max_completion_len=16",
         "--config.probe.max_answer_len=4", "--config.segment.chunk_tokens=8",
         "--config.eval.num_problems=2", "--config.eval.budgets=(8, 16)",
         "--config.eval.extrapolation_budgets=()", "--config.eval.num_resamples=20"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  d = tmp_path_factory.mktemp("own_task")
  tokenizer = assets.build_tokenizer(str(d / "tokenizer"))
  assets.build_model(str(d / "model"), tokenizer)
  common = [f"--config={CONFIG}", f"--config.model.path={d}/model",
            f"--config.model.tokenizer_path={d}/tokenizer", *SMALL]
  return d, common, str(d / "jax_cache")


def test_trains_and_evaluates_through_both_clis(task):
  d, common, cache = task
  workdir = str(d / "work")
  out = run([sys.executable, "-m", "mrt_jax.launch", *common, f"--config.workdir={workdir}"],
            cache)
  lines = metrics(workdir)
  assert [l["step"] for l in lines] == [1] and lines[0]["num_probes"] > 0
  assert lines[0]["verify_errors"] == 0 and lines[0]["probe_errors"] == 0
  assert {"zero_advantage_step", "zero_advantage_groups"} <= set(lines[0])
  # The segmentation is shown once, with the first trace's blocks; no demo assets are built.
  assert out.stdout.count("segmentation: SegmentConfig(method='fixed_chunk'") == 1
  assert re.search(r"first sampled trace: \d+ blocks", out.stdout)
  assert "demo" not in out.stdout

  evaluated = run([sys.executable, "-m", "mrt_jax.evaluate", *common,
                   f"--config.workdir={workdir}", f"--checkpoint={workdir}/checkpoints",
                   f"--out={d}/eval"], cache)
  assert json.loads(evaluated.stdout.strip().splitlines()[-1])["checkpoint"].endswith(
      "checkpoints")
  with open(d / "eval" / "samples.jsonl") as f:
    samples = [json.loads(line) for line in f]
  assert len(samples) == 2 * 2
  # The task's extractor: the text after </think> stripped (None when cut off while thinking).
  for s in samples:
    closed = "</think>" in s["completion"]
    assert s["answer"] == (s["completion"].split("</think>")[-1].strip() if closed else None)
  # Logs like launch: no Orbax/absl INFO lines from restoring the training checkpoint.
  assert not re.search(r"^I\d{4} ", evaluated.stderr, re.MULTILINE), evaluated.stderr[-2000:]

