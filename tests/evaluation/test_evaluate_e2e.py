"""End-to-end evaluation of a tiny random model on the elimination task; budget-forcing helpers.

The model is random (pass@1 ≈ 0), so the end-to-end tests check the pipeline and its outputs;
the mechanisms (wait insertion, probe sharing) are checked on a scripted fake sampler.
"""

import dataclasses
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.experimental.compilation_cache import compilation_cache

from mrt_jax import config_cli, models
from mrt_jax.data import elimination
from mrt_jax.evaluate import compare, load_checkpoint
from mrt_jax.evaluation import budget, runner
from mrt_jax.sampling import FINISH_LENGTH, FINISH_STOP

NUM_PROBLEMS, NUM_SAMPLES = 3, 2

CONFIG = '''
from mrt_jax import config_defaults as defaults

def get_config(arg=None):
  c = defaults.finish(defaults.rl(defaults.base("eval_e2e", "{d}/model"), "mrt", 1.0), "cpu")
  c.workdir = "{d}/workdir"
  c.model.path = "{d}/model"  # the cpu variant points at the demo's model
  c.model.tokenizer_path = "{d}/tokenizer"
  c.data.path = "{d}/problems.jsonl"
  c.eval.data_path = "{d}/problems.jsonl"  # three problems: too few for a held-out split
  c.data.max_prompt_len = 256
  c.reward.verifier = "elimination"
  c.rollout.max_completion_len = 16  # samples of 16 tokens: budgets 4, 8, 16 cut them
  c.probe.max_answer_len = 8
  c.eval.num_samples = {n}
  c.eval.budgets = (4, 8, 16)
  c.eval.extrapolation_budgets = {extra}  # past the 16-token samples: thinking is extended
  c.eval.num_resamples = 50
  c.train.total_steps = 4
  return c
'''


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent compilation cache for this module and the CLI subprocesses that use it
  (test_sharded_evaluate.py): a repeated shape loads the compiled sampler instead of compiling
  it again (most of an evaluation's time on a CPU).
  """
  path = str(tmp_path_factory.mktemp("compile_cache"))
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {name: getattr(jax.config, name) for name in names}
  jax.config.update(names[0], path)
  jax.config.update(names[1], 0)
  compilation_cache.reset_cache()  # Re-reads the settings at the next compile.
  yield path
  for name, value in before.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, compile_cache):
  """A tiny tokenizer, a random Qwen2 checkpoint, problems and a config file, in a tmp dir."""
  d = str(tmp_path_factory.mktemp("eval_e2e"))
  tok = models.build_tiny_tokenizer(f"{d}/tokenizer", elimination.tokenizer_corpus(20))
  model_config = models.config_from_hf_dict(dict(
      architectures=["Qwen2ForCausalLM"], vocab_size=len(tok), hidden_size=32,
      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=512,
      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
  # Numpy draws like `models.init_params` (std 0.02): on CPU its per-shape jits cost seconds.
  rng = np.random.default_rng(0)
  draw = {"normal": lambda shape: 0.02 * rng.standard_normal(shape), "ones": np.ones,
          "zeros": np.zeros}
  params = jax.tree.map(lambda s: jnp.asarray(draw[s.init](s.shape), jnp.float32),
                        models.param_specs(model_config), is_leaf=lambda x: isinstance(
                            x, models.ParamSpec))
  models.save_hf(model_config, params, f"{d}/model")
  with open(f"{d}/problems.jsonl", "w") as f:
    for problem in elimination.generate_problems(NUM_PROBLEMS, seed=1):
      f.write(json.dumps(problem) + "\n")
  for name, extra in (("config", "(32,)"), ("config_no_extra", "()")):
    with open(f"{d}/{name}.py", "w") as f:
      f.write(CONFIG.format(d=d, n=NUM_SAMPLES, extra=extra))
  return types.SimpleNamespace(dir=d, tokenizer=tok, model_config=model_config, params=params,
                               compile_cache=compile_cache)


def _samples(out_dir):
  with open(os.path.join(out_dir, "samples.jsonl")) as f:
    return [json.loads(line) for line in f]


def _check_outputs(out_dir):
  for name in ("eval.json", "samples.jsonl", *runner.PLOTS):
    path = os.path.join(out_dir, name)
    assert os.path.isfile(path) and os.path.getsize(path) > 0, path
  lines = _samples(out_dir)
  assert len(lines) == NUM_PROBLEMS * NUM_SAMPLES
  for line in lines:
    assert {"completion", "blocks", "j_values", "verdict", "j_budgets"} <= set(line)
    assert line["blocks"][0] == 0 and len(line["blocks"]) == len(line["j_values"])
    assert len(line["j_budgets"]) == 4  # budget 0 and the three eval budgets
  with open(os.path.join(out_dir, "eval.json")) as f:
    return json.load(f)


def test_evaluate_function_writes_all_figures_files_and_plots(tiny):
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  out_dir = f"{tiny.dir}/out_function"
  record = runner.evaluate(config, tiny.params, tiny.model_config, tiny.tokenizer, out_dir,
                           checkpoint=f"{tiny.dir}/model")
  m = record["metrics"]
  for key in ("pass@1", "pass@2", "maj@1", "maj@2", "maj@2_ci", "mean_thinking_tokens",
              "mean_answer_tokens", "J@0", "J@16", "normalized_regret",
              "normalized_regret@4", "normalized_regret@16", "episode_normalized_regret",
              "extrapolation_keeps_rising"):
    assert key in m, key
  assert 0.0 <= m["pass@1"] <= m["pass@2"] <= 1.0
  assert 0.0 <= m["normalized_regret"] <= 1.0
  # The normalized regret at the largest horizon is 1 − mean J integrated on the budget grid.
  bf = record["budget_forcing"]
  j = np.asarray(bf["J"])
  area = np.sum(np.diff(bf["budgets"]) * (j[1:] + j[:-1]) / 2)
  np.testing.assert_allclose(m["normalized_regret"], 1 - area / 16, atol=1e-12)
  ext = record["extrapolation"]
  assert ext["budgets"] == [16, 32] and len(ext["accuracy"]) == 2
  assert ext["mean_thinking_tokens"][1] > 16  # the thinking really was extended
  assert _check_outputs(out_dir)["metrics"]["pass@1"] == m["pass@1"]

  plots = compare([f"{out_dir}/eval.json", f"{out_dir}/eval.json"], f"{tiny.dir}/compared")
  assert sorted(plots) == ["accuracy_vs_tokens", "j_curves", "regret"]
  assert all(os.path.getsize(p) > 0 for p in plots.values())


@pytest.mark.parametrize("field, value, match", [
    ("budgets", (8, 8, 16), r"eval.budgets = \[8, 8, 16\]; expected strictly increasing"),
    ("budgets", (0, 8), r"eval.budgets = \[0, 8\]; expected strictly increasing token counts > 0"),
    ("k_values", (1, 4), r"eval.k_values = \[1, 4\] with eval.num_samples = 2; expected 1 <= k"),
    ("extrapolation_budgets", (8,), r"eval.extrapolation_budgets .* = \[8\]; expected .* > 16"),
])
def test_bad_eval_settings_name_the_field(tiny, field, value, match):
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  with config.unlocked():
    config.eval[field] = value
  with pytest.raises(ValueError, match=match):
    runner.EvalSettings.from_config(config)


def test_missing_checkpoint_and_data_name_the_path(tiny):
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  with pytest.raises(FileNotFoundError, match=r"checkpoint '.*/nowhere' does not exist"):
    load_checkpoint(config, f"{tiny.dir}/nowhere")
  with pytest.raises(FileNotFoundError, match=r"holds neither config.json nor an Orbax step"):
    load_checkpoint(config, f"{tiny.dir}/tokenizer")
  with config.unlocked():
    config.eval.data_path = f"{tiny.dir}/none.jsonl"
  with pytest.raises(FileNotFoundError, match=r"dataset '.*/none.jsonl' does not exist"):
    runner.eval_problems(config)


def test_training_checkpoint_restores_the_trained_params(tiny, tmp_path):
  from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
  from mrt_jax.learner.state import create_state
  from mrt_jax.train.checkpoint import Checkpointer
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  o = config.optimizer
  optimizer = make_optimizer(OptimizerConfig(o.learning_rate, o.schedule, o.warmup_ratio,
                                             config.train.total_steps, o.weight_decay,
                                             grad_clip=o.max_grad_norm))
  params = jax.tree.map(lambda p: p + 1.0, tiny.params)
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), every=1, async_save=False)
  ckpt.maybe_save(3, create_state(params, optimizer), {"step": 3})
  ckpt.close()
  model_config, restored, name = load_checkpoint(config, str(tmp_path / "checkpoints"))
  assert name == "step_3" and model_config == tiny.model_config
  jax.tree.map(np.testing.assert_array_equal, params, restored)


def test_fixed_meta_prover_scores_the_policys_traces(tiny, tmp_path):
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  with config.unlocked():
    config.eval.j_estimator = "likelihood"  # J > 0 even for a random model: curves to compare
  run = lambda name: runner.evaluate(config, tiny.params, tiny.model_config, tiny.tokenizer,
                                     str(tmp_path / name), make_plots=False)
  own = run("own")
  assert own["meta_prover"] == "policy"
  # The policy named as its own fixed meta-prover: the same J, read from a cache that the
  # prover prefills instead of the one the policy's sampling filled (f32; a re-prefilled entry
  # differs from a decoded one by float rounding only, ~1e-6 in a log-prob).
  with config.unlocked():
    config.eval.meta_prover = f"{tiny.dir}/model"
  same = run("same")
  assert same["meta_prover"] == f"{tiny.dir}/model"
  np.testing.assert_allclose(same["budget_forcing"]["J"], own["budget_forcing"]["J"], rtol=1e-4)
  for a, b in zip(_samples(tmp_path / "same"), _samples(tmp_path / "own")):
    np.testing.assert_allclose(a["j_values"], b["j_values"], rtol=1e-4)
    np.testing.assert_allclose(a["j_extended"], b["j_extended"], rtol=1e-4)
  # Another meta-prover: the policy's traces and verdicts unchanged, every J curve its own.
  rng = np.random.default_rng(1)
  other = jax.tree.map(lambda p: p + 0.02 * jnp.asarray(rng.standard_normal(p.shape), p.dtype),
                       tiny.params)
  models.save_hf(tiny.model_config, other, str(tmp_path / "prover"))
  with config.unlocked():
    config.eval.meta_prover = str(tmp_path / "prover")
  fixed = run("fixed")
  for a, b in zip(_samples(tmp_path / "fixed"), _samples(tmp_path / "own")):
    assert (a["completion"], a["verdict"], a["blocks"]) == (b["completion"], b["verdict"],
                                                            b["blocks"])
    assert not np.allclose(a["j_values"], b["j_values"], rtol=1e-2, atol=0)
  # ... and the fixed prover's J is its own forced answer on those traces: evaluating the
  # prover itself as the policy would sample other traces, so compare at the empty thinking
  # (budget 0: the prompt alone), where every trace of a problem has the same cut.
  prover_own = runner.evaluate(config, other, tiny.model_config, tiny.tokenizer,
                               str(tmp_path / "prover_own"), make_plots=False)
  for a, b in zip(_samples(tmp_path / "fixed"), _samples(tmp_path / "prover_own")):
    np.testing.assert_allclose(a["j_budgets"][0], b["j_budgets"][0], rtol=1e-4)


_SEEN_THINKING = []


def _recording_prover(record, thinking):
  """A task prover that records what it is shown: 0.5 at the empty thinking, else 0.25."""
  _SEEN_THINKING.append((record["id"], thinking))
  return 0.5 if not thinking else 0.25


def test_task_meta_prover_reads_each_cuts_thinking_text(tiny, tmp_path):
  from mrt_jax.rewards import register_task_prover
  register_task_prover("test_recording", _recording_prover)
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  run = lambda name: runner.evaluate(config, tiny.params, tiny.model_config, tiny.tokenizer,
                                     str(tmp_path / name), make_plots=False)
  own = run("own")
  with config.unlocked():
    config.eval.j_estimator = "task"
    config.probe.task_prover = "test_recording"
  _SEEN_THINKING.clear()
  task = run("task")
  assert task["metrics"]["pass@1"] == own["metrics"]["pass@1"]
  samples = _samples(tmp_path / "task")
  for a, b in zip(samples, _samples(tmp_path / "own")):
    assert (a["completion"], a["verdict"], a["blocks"]) == (b["completion"], b["verdict"],
                                                            b["blocks"])
    # J at each block boundary: 0.5 at b_0 (no thinking yet), 0.25 after.
    assert a["j_values"] == [0.5] + [0.25] * (len(a["blocks"]) - 1)
    assert a["j_budgets"][0] == 0.5
  # Every text the prover saw is the start of a completion of its problem (up to a character
  # whose bytes the cut splits: the random model writes any bytes) or, at the extrapolation's
  # budgets, that completion's thinking extended; the empty one and longer ones were shown.
  by_problem = {}
  for s in samples:
    by_problem.setdefault(s["problem_id"], []).append(s["completion"])
  assert any(t == "" for _, t in _SEEN_THINKING) and any(len(t) > 20 for _, t in _SEEN_THINKING)
  for problem_id, thinking in _SEEN_THINKING:
    cut = thinking.rstrip("\ufffd")
    assert any(c.startswith(cut) or cut.startswith(c.split("</think>")[0].rstrip("\ufffd"))
               for c in by_problem[problem_id]), thinking
  with config.unlocked():
    config.eval.meta_prover = f"{tiny.dir}/model"
  with pytest.raises(ValueError, match=r"config\.eval\.j_estimator='task' runs no model"):
    run("task_and_model")


def test_meta_prover_of_another_architecture_or_path_is_refused(tiny, tmp_path):
  config = config_cli.load_config(f"{tiny.dir}/config.py")
  wide = dataclasses.replace(tiny.model_config, intermediate_size=96)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), models.param_specs(wide),
                        is_leaf=lambda x: isinstance(x, models.ParamSpec))
  models.save_hf(wide, params, str(tmp_path / "wide"))
  with config.unlocked():
    config.eval.meta_prover = str(tmp_path / "wide")
  with pytest.raises(ValueError, match=r"eval.meta_prover = '.*/wide': its architecture differs"):
    runner.evaluate(config, tiny.params, tiny.model_config, tiny.tokenizer, str(tmp_path / "o"))
  with config.unlocked():
    config.eval.meta_prover = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError,
                     match=r"eval.meta_prover = '.*/nowhere': checkpoint '.*/nowhere' does not"):
    runner.evaluate(config, tiny.params, tiny.model_config, tiny.tokenizer, str(tmp_path / "o"))


class _ScriptedSampler:
  """Replays scripted generate results and answers fork probes with their boundary."""

  def __init__(self, rounds):
    self.rounds, self.calls = list(rounds), []

  def generate(self, params, prompts, *, max_new_tokens, **kwargs):
    self.calls.append((list(map(list, prompts)), max_new_tokens))
    tokens, reasons = self.rounds.pop(0)
    return types.SimpleNamespace(tokens=tokens, finish_reasons=reasons)

  def fork(self, params, trunk, probes, *, max_new_tokens, **kwargs):
    self.calls.append(probes)
    return types.SimpleNamespace(tokens=[[p.boundary] for p in probes for _ in
                                         range(p.num_samples)])


def test_extend_thinking_appends_wait_where_the_model_stops():
  END, EOS, WAIT = 90, 91, 99
  sampler = _ScriptedSampler([
      # Round 1: row 0 (ended) continues after a wait and stops on the tag; row 1 (cut by
      # length, no wait) writes 3 tokens and emits end of sequence.
      ([[5, 6, END], [7, 8, 9, EOS]], [FINISH_STOP, FINISH_STOP]),
      # Round 2: both ended, both get a wait; row 0 runs into its budget, row 1 stops again.
      ([[1, 2, 3, 4], [2, END]], [FINISH_LENGTH, FINISH_STOP]),
      # Round 3: row 1's second wait; it stops at once and, out of waits, keeps its thinking.
      ([[END]], [FINISH_STOP]),
  ])
  ext = budget.extend_thinking(
      sampler, None, [[100], [101]], [[1, 2], [3]], [True, False], budget=8, wait_tokens=[WAIT],
      end_think_tokens=[END], stop_token_ids=[EOS], max_waits=2, temperature=1.0, top_p=1.0,
      seed=0)
  assert ext.thinking == [[1, 2, WAIT, 5, 6, WAIT, 1, 2], [3, 7, 8, 9, WAIT, 2, WAIT]]
  assert ext.waits.tolist() == [2, 2] and ext.rounds == 3
  assert sampler.calls[0] == ([[100, 1, 2, WAIT], [101, 3]], 7)
  assert sampler.calls[1] == ([[100, 1, 2, WAIT, 5, 6, WAIT], [101, 3, 7, 8, 9, WAIT]], 3)
  assert sampler.calls[2] == ([[101, 3, 7, 8, 9, WAIT, 2, WAIT]], 1)


def test_forced_success_probes_each_cut_once_and_maps_back():
  sampler = _ScriptedSampler([])
  settings = budget.ProbeSettings((7,), num_probes=2, max_answer_len=4, temperature=1.0,
                                  top_p=1.0, stop_token_ids=())
  # The judge rewards probes whose answer token (their boundary) is even.
  judge = lambda rows, texts, ids: np.array([float(i[-1] % 2 == 0) for i in ids])
  j = budget.forced_success(sampler, None, None, [10, 20], [[0, 3, 3, 0], [1]], settings, judge,
                            decode=str, seed=0)
  assert [p.boundary for p in sampler.calls[0]] == [10, 13, 21]
  np.testing.assert_array_equal(j[0], [1.0, 0.0, 0.0, 1.0])
  np.testing.assert_array_equal(j[1], [0.0])


def test_forced_success_by_likelihood_scores_the_reference_answer_at_each_cut():
  """eval.j_estimator = "likelihood": J at a cut = exp(sum log-probs) of the rendered answer +
  eos after prompt + thinking[:cut] + suffix (scored on the explicit sequences)."""
  import jax
  from model_fixtures import tiny_config
  from mrt_jax import models
  from mrt_jax.mrt.meta_prover import AnswerTemplate
  from mrt_jax.sampling import Sampler
  config = tiny_config()
  params = models.init_params(config, jax.random.key(5))
  encode = lambda text: [ord(c) - 60 for c in text]  # "A" -> 5, "=" -> 1
  answer = AnswerTemplate("={answer}", stop_token=2, encode=encode)
  settings = budget.ProbeSettings((5, 6), num_probes=0, max_answer_len=4, temperature=0.7,
                                  top_p=1.0, stop_token_ids=(2,), estimator="likelihood",
                                  answer=answer)
  seqs = [[3, 9, 17, 30, 11, 12, 13, 14, 15], [4, 40, 41, 12, 8, 33, 7, 21]]
  sampler = Sampler(config)
  trunk = sampler.prefill(params, seqs)
  records = [{"answer": "C"}, {"answer": "DE"}]
  cuts = [[0, 3, 3, 5], [2]]
  j = budget.forced_success(sampler, params, trunk, [4, 3], cuts, settings, judge=None,
                            decode=str, seed=0, records=records)
  contexts = [seqs[r][:[4, 3][r] + c] + [5, 6] for r, row in enumerate(cuts) for c in row]
  targets = [answer.tokens(records[r]["answer"]) for r, row in enumerate(cuts) for _ in row]
  lp = sampler.score(params, contexts, targets, temperature=0.7)
  want = np.exp([float(np.sum(x, dtype=np.float64)) for x in lp])
  assert targets[-1] == (1, 8, 9, 2) and np.all(want > 0)
  np.testing.assert_allclose(np.concatenate(j), want, rtol=1e-5, atol=0)
