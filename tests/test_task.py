"""The task interface: a verifier gets the same text, record and ids in training, probes and
evaluation; answer types as in the data file; the end-of-thinking tag checked against the
tokenizer; maj@k and samples.jsonl on the task's own answer extractor.

The task is tests/task_example (its own verifier module, data file, tokenizer and a tiny Qwen2
from transformers), loaded only through its config's `plugins`.
"""

import json
import os
import re
import types

import numpy as np
import pytest

from mrt_jax import config_cli, task
from mrt_jax.data.pipeline import render_prompts
from mrt_jax.evaluation import runner
from mrt_jax.rewards import register_verifier, verify_batch
from mrt_jax.sampling import FINISH_STOP
from mrt_jax.train import setup
from mrt_jax.train.rollout import collect
from task_example import assets

CONFIG = os.path.join(os.path.dirname(__file__), "task_example", "config.py")


@pytest.fixture(scope="module")
def sum_task(tmp_path_factory):
  d = tmp_path_factory.mktemp("sum_task")
  tokenizer = assets.build_tokenizer(str(d / "tokenizer"))
  assets.build_model(str(d / "model"), tokenizer)
  return types.SimpleNamespace(dir=d, tokenizer=tokenizer)


def _config(d, *extra):
  return config_cli.load_config(f"{CONFIG}:cpu", [
      f"workdir={d}/work", f"model.path={d}/model", f"model.tokenizer_path={d}/tokenizer",
      "train.global_batch_prompts=2", "probe.num_probes=2", "segment.chunk_tokens=4",
      "eval.num_samples=2", "eval.num_problems=2", "eval.budgets=(4, 8)",
      "eval.extrapolation_budgets=()", "eval.num_resamples=20", *extra])


class _Scripted:
  """A sampler that writes, for the problem of each prompt, the completion "I add them.</think>
  <sum>" + eos, right on even samples and off by one on odd ones. A probe answers " <sum>" + eos:
  from prompt + suffix (training's b_0) right; forked from trunk row r (prompt-major,
  `per_prompt` rows per prompt) right iff r is even."""

  def __init__(self, tokenizer, prompts, answers, suffix, per_prompt):
    self.tok, self.suffix, self.per_prompt = tokenizer, list(suffix), per_prompt
    self.answer = {tuple(p): int(a) for p, a in zip(prompts, answers)}
    self.prompt_buckets = (4096,)

  def _ids(self, text):
    return self.tok.encode(text, add_special_tokens=False) + [self.tok.eos_token_id]

  def generate(self, params, prompts, *, num_samples=1, **kwargs):
    tokens = []
    for p in prompts:
      probe = list(p[-len(self.suffix):]) == self.suffix
      key = tuple(p[:-len(self.suffix)] if probe else p)
      for s in range(num_samples):
        value = self.answer[key] + (0 if probe else s % 2)
        tokens.append(self._ids(f" {value}" if probe else f"I add them.</think> {value}"))
    return types.SimpleNamespace(tokens=tokens, logprobs=[np.zeros(len(t)) for t in tokens],
                                 finish_reasons=[FINISH_STOP] * len(tokens), cache=prompts)

  def fork(self, params, trunk, probes, **kwargs):
    tokens = [self._ids(f" {self.answer[tuple(trunk[p.source // self.per_prompt])] + p.source % 2}")
              for p in probes for _ in range(p.num_samples)]
    return types.SimpleNamespace(tokens=tokens)


def test_verdicts_are_identical_in_training_probes_and_evaluation(sum_task):
  config = _config(sum_task.dir)
  run = setup.build(config)
  records, prompts = run.data.next_batch()
  assert all(isinstance(r["answer"], str) and "question" in r for r in records)
  sampler = _Scripted(run.tokenizer, prompts, [r["answer"] for r in records],
                      run.experience.suffix_tokens, config.rollout.num_generations)
  exp = collect(sampler, None, prompts, records, run.experience, run.reward_fn, run.decode, 0)
  even_B = np.arange(len(exp.completions)) % 2 == 0
  # A right completion ends with the end-of-sequence token; the natural verifier accepts it.
  assert exp.completions[0][-1] == run.tokenizer.eos_token_id
  np.testing.assert_array_equal(exp.outcome_B, even_B)
  mask = exp.boundary_mask_BxN1
  assert mask[:, 1:].any()
  np.testing.assert_array_equal(exp.success_BxN1[:, 1:][mask[:, 1:]],
                                np.broadcast_to(even_B[:, None], mask[:, 1:].shape)[mask[:, 1:]])
  np.testing.assert_array_equal(exp.success_BxN1[:, 0], np.ones(len(even_B)))  # leaders: s=0

  out = str(sum_task.dir / "eval")
  with open(config.eval.data_path) as f:
    problems = [json.loads(line) for line in f][:2]
  eval_prompts = [runner.render(run.tokenizer, {**r, "problem": r["question"]}, config.data,
                                "test") for r in problems]
  eval_sampler = _Scripted(run.tokenizer, eval_prompts, [r["answer"] for r in problems],
                           run.experience.suffix_tokens, config.eval.num_samples)
  runner.evaluate(config, None, run.model_config, run.tokenizer, out, sampler=eval_sampler,
                  make_plots=False)
  with open(os.path.join(out, "samples.jsonl")) as f:
    samples = [json.loads(line) for line in f]
  assert [s["verdict"] for s in samples] == [1.0, 0.0] * 2
  # Budget-forced probes on row r answer right iff r is even: the same verdicts as training's.
  for i, s in enumerate(samples):
    assert len(s["j_values"]) > 1
    assert s["j_values"] == s["j_budgets"][:1] * len(s["j_values"]) == [float(i % 2 == 0)] * len(
        s["j_values"])
  # samples.jsonl and maj@k use the task's extractor: bare answers, not \boxed{}.
  assert [s["answer"] for s in samples] == [
      str(int(problems[i // 2]["answer"]) + i % 2) for i in range(4)]
  with open(os.path.join(out, "eval.json")) as f:
    assert json.load(f)["metrics"]["maj@1"] == 1.0


def test_answer_field_keeps_the_data_file_type(sum_task):
  rows = [{"question": "What is 1 + 2?", "answer": 3, "id": "a"},
          {"question": "What is 2 + 2?", "answer": [4, "four"]}]
  prompts = render_prompts(rows, sum_task.tokenizer, max_prompt_len=64,
                           problem_field="question")
  training = [ex["record"] for ex in prompts.examples]
  evaluation = runner.problem_records(rows, "question", "answer", None, "rows")
  assert training == evaluation
  assert training[0]["answer"] == 3 and isinstance(training[0]["answer"], int)
  assert training[1]["answer"] == [4, "four"] and training[1]["id"] == 1
  assert training[0]["problem"] == "What is 1 + 2?" and training[0]["id"] == "a"


def test_end_think_dropped_by_decoding_is_an_error(sum_task, tmp_path):
  special = assets.build_tokenizer(str(tmp_path / "tok"), think_special=True)
  suffix = "\n\nTime is up.\n</think>\n\n"
  task.check_thinking_tokens(sum_task.tokenizer, "</think>", suffix)
  with pytest.raises(ValueError, match=r"segment.end_think='</think>' is a special token"):
    task.check_thinking_tokens(special, "</think>", suffix)
  with pytest.raises(ValueError, match=r"probe.termination_suffix=.* does not contain "
                                       r"segment.end_think='<end>'"):
    task.check_thinking_tokens(sum_task.tokenizer, "<end>", suffix)
  # The run and the evaluation both check, before any compile.
  config = _config(sum_task.dir, f"model.tokenizer_path={tmp_path}/tok")
  with pytest.raises(ValueError, match="is a special token"):
    setup.build(config)
  with pytest.raises(ValueError, match="is a special token"):
    runner.evaluate(config, None, None, special, str(tmp_path / "eval"), sampler=object())


def test_default_extractor_is_the_last_boxed_answer():
  config_cli.load_config(CONFIG)  # Its plugin registers sum_task.
  assert task.answer_extractor("math")("a \\boxed{1}</think> so \\boxed{2}.") == "2"
  assert task.answer_extractor("math")("cut off \\boxed{1}") is None
  assert task.answer_extractor("sum_task")("think</think>  12 \n") == "12"
  register_verifier("test_int_answers", lambda r, t, i: 0.0, isolated=False,
                    extract_answer=lambda text: 12)
  with pytest.raises(TypeError, match="'test_int_answers' returned a int .*; expected a str"):
    task.answer_extractor("test_int_answers")("</think> 12")


def test_tiny_variant_keeps_the_task_and_builds_no_demo():
  full = config_cli.load_config(CONFIG)
  tiny = config_cli.load_config(f"{CONFIG}:cpu")
  for field in ("model.path", "model.tokenizer_path", "data.path", "reward.verifier",
                "data.problem_field"):
    a, b = full, tiny
    for key in field.split("."):
      a, b = a[key], b[key]
    assert a == b, field
  assert "demo" not in tiny and tiny.mesh.fsdp * tiny.mesh.tensor == 1
  assert tiny.model.dtype == "float32" and tiny.train.global_batch_prompts == 4
  demo = config_cli.load_config("configs/mrt_rl_7b.py:cpu")
  assert "demo" in demo and demo.reward.verifier == "elimination"


def test_the_readme_example_is_complete(tmp_path, monkeypatch):
  """README's "Your own task" code, as written, loads its plugin and grades bare answers."""
  readme = open(os.path.join(os.path.dirname(CONFIG), "..", "..", "README.md")).read()
  section = readme[readme.index("## Your own task"):readme.index("## Public API")]
  task_code, config_code = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
  (tmp_path / "my_task.py").write_text(task_code)
  (tmp_path / "my_config.py").write_text(config_code)
  (tmp_path / "my_task.jsonl").write_text('{"problem": "What is 3 + 4?", "answer": "7"}\n')
  monkeypatch.chdir(tmp_path)
  config = config_cli.load_config("my_config.py:cpu")
  assert config.reward.verifier == "my_task" and "demo" not in config
  rewards, _ = verify_batch("my_task", [{"answer": "7"}] * 2, ["3 + 4</think> 7", "</think> 8"],
                            [[1], [2]])
  assert rewards.tolist() == [1.0, 0.0]
  assert task.answer_extractor("my_task")("x</think> 7 ") == "7"
