"""The reproduction's scripts (experiments/) on hand-computed inputs and fabricated runs."""

import json
import math
import os
import sys

import numpy as np
import pytest

from subprocess_util import ROOT

sys.path.insert(0, ROOT)  # experiments/ is not part of the package
from experiments import summarize  # noqa: E402
from mrt_jax.data import elimination  # noqa: E402


def test_interval_is_the_student_t_interval_over_seeds():
  mean, low, high = summarize.interval([1.0, 2.0, 3.0])
  half = 4.303 * 1.0 / math.sqrt(3)  # t_{0.975, 2} · sd / sqrt(n), sd = 1
  assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
  assert summarize.interval([5.0])[0] == 5.0 and math.isnan(summarize.interval([5.0])[1])
  assert summarize.interval([1.0, math.inf, 3.0])[0] == 2.0  # runs that never reach are dropped
  sixteen = [float(i % 2) for i in range(16)]  # sd = sqrt(16 / 60), df = 15: t = 2.131
  _, low, _ = summarize.interval(sixteen)
  assert low == pytest.approx(0.5 - 2.131 * math.sqrt(16 / 60) / 4)
  _, low, _ = summarize.interval([float(i % 2) for i in range(100)])  # df > 30: df = 30's t
  assert low == pytest.approx(0.5 - 2.042 * np.std([i % 2 for i in range(100)], ddof=1) / 10)


def test_tokens_to_reach_interpolates_between_budgets():
  assert summarize.tokens_to_reach([10, 20, 40], [0.1, 0.3, 0.5], 0.4) == pytest.approx(30.0)
  assert summarize.tokens_to_reach([10, 20], [0.5, 0.6], 0.2) == 10.0
  assert summarize.tokens_to_reach([10, 20], [0.1, 0.2], 0.9) == math.inf


def test_block_quality_and_waste_read_the_traces(tmp_path):
  problem = elimination.generate_problem(0, 0, elimination.EliminationConfig(
      num_candidates=6, num_clues=3, indirect_prob=0.0))
  good = elimination.trace_completion(problem, [0, 0, 1, 2]).text  # one re-check, no harm
  wrong = next(c for c in problem["candidates"] if c != problem["answer"])
  bad = (f"Wait, clue: not {problem['answer']}.\n\nStrike {problem['answer']}.\n\nLeft:x.\n\n"
         f"Wait, clue: not {wrong}.\n\nStrike {wrong}.\n\n</think>\n\n\\boxed{{{wrong}}}")
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps({"problem_id": 0, "completion": c}) + "\n"
                          for c in (good, bad)))
  quality = summarize.block_quality(str(path), {0: problem})
  # good: 4 real clue lines; bad: 2 lines, the second real only if "not <wrong>." is a clue.
  real_bad = int(f"not {wrong}." in {elimination.clue_text(c) for c in problem["clues"]})
  assert quality["real_clues"] == pytest.approx((4 + real_bad) / 6)
  assert quality["harmful_traces"] == 0.5
  assert quality["unclosed_traces"] == 0.0  # both close their thinking
  # good's blocks strike what their clues say; bad's real clue lines strike the wrong letter
  # unless the clue is exactly "not <letter>." for the letter struck.
  clue_of = {elimination.clue_text(c): s for c, s in zip(problem["clues"], problem["strikes"])}
  true_bad = sum(clue_of.get(f"not {x}.") == [x] for x in (problem["answer"], wrong))
  real_bad_lines = sum(f"not {x}." in clue_of for x in (problem["answer"], wrong))
  assert quality["true_strikes"] == pytest.approx((4 + true_bad) / (4 + real_bad_lines))
  swapped = good.replace("Strike ", "Strike A ", 1)  # the first block strikes one letter more
  one = tmp_path / "swapped.jsonl"
  one.write_text(json.dumps({"problem_id": 0, "completion": swapped}) + "\n")
  assert summarize.block_quality(str(one), {0: problem})["true_strikes"] == pytest.approx(3 / 4)
  one.write_text(json.dumps({"problem_id": 0, "completion": good.replace("</think>", "f.")}) +
                 "\n")  # answered without the tag
  assert summarize.block_quality(str(one), {0: problem})["unclosed_traces"] == 1.0
  waste = summarize.wasteful_blocks(str(path), {0: problem})
  assert waste["wasteful_blocks"] == pytest.approx(np.mean([1, 0]))
  assert waste["rechecks_before_last_new"] == pytest.approx(0.5)  # good's re-check precedes clue 2
  assert waste["rechecks_after_last_new"] == 0.0


def test_recheck_positions_split_at_the_last_new_clue():
  assert summarize.recheck_positions([0, 0, 1, 2, 1, 2]) == (1, 2)
  assert summarize.recheck_positions([2, 2]) == (0, 1)
  assert summarize.recheck_positions([0, 1, 2]) == (0, 0)
  assert summarize.recheck_positions([]) == (0, 0)


def test_progress_by_kind_reads_each_blocks_change_of_j(tmp_path):
  problem = elimination.generate_problem(0, 0, elimination.EliminationConfig(
      num_candidates=6, num_clues=3, indirect_prob=0.0))
  trace = elimination.trace_completion(problem, [0, 0, 1]).text  # new, re-check, new
  made_up = "Wait, clue: not Q.\n\nStrike Q.\n\nLeft:x.\n\n" + trace
  rows = [{"problem_id": 0, "completion": trace, "j_values": [0.2, 0.5, 0.4, 1.0]},
          {"problem_id": 0, "completion": made_up, "j_values": [0.2, 0.0, 0.3, 0.3, 0.9]},
          {"problem_id": 0, "completion": trace, "j_values": [0.2, 0.5]}]  # skipped: 1 != 3 + 1
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  got = summarize.progress_by_kind(str(path), {0: problem})
  new, recheck, madeup = [0.3, 0.6, 0.3, 0.6], [-0.1, 0.0], [-0.2]
  assert got["progress_new"] == pytest.approx(np.mean(new))
  assert got["progress_recheck"] == pytest.approx(np.mean(recheck))
  assert got["progress_madeup"] == pytest.approx(-0.2)
  residuals = np.concatenate([np.subtract(v, np.mean(v)) for v in (new, recheck, madeup)])
  assert got["progress_spread"] == pytest.approx(np.sqrt(np.mean(residuals ** 2)))
  # ΔJ ≤ 0.02: no new-clue block (0.3, 0.6, 0.3, 0.6) and both re-checks (−0.1, 0.0).
  assert got["flat_new"] == 0.0 and got["flat_recheck"] == 1.0


def test_task_regret_integrates_the_exact_j_between_block_boundaries(tmp_path):
  problem = elimination.generate_problem(0, 0, elimination.EliminationConfig(
      num_candidates=6, num_clues=3, indirect_prob=0.0))
  trace = elimination.trace_completion(problem, [0, 0, 1]).text  # new, re-check, new
  rows = [{"problem_id": 0, "completion": trace, "blocks": [0, 10, 20, 30]},
          {"problem_id": 0, "completion": trace, "blocks": [0, 50]},   # skipped: 1 != 3 + 1
          {"problem_id": 0, "completion": trace, "blocks": [0, 16, 32, 48]}]  # past C0 = 40
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  j = elimination.oracle_success(problem, [0, 0, 1])  # J_0..J_3, J_2 = J_1 (the re-check)
  first = 1 - (10 * j[0] + 10 * j[1] + 10 * j[2] + 10 * j[3]) / 40
  third = 1 - (16 * j[0] + 16 * j[1] + 8 * j[2]) / 40  # cut at the horizon inside block 3
  assert summarize.task_regret(str(path), {0: problem}, 40) == pytest.approx((first + third) / 2)
  assert 0 < first < third < 1  # later progress, more regret
  # The Left-line prover agrees along true traces; it reads a struck answer as J = 0.
  assert summarize.task_regret(str(path), {0: problem}, 40, "elimination_left") == (
      pytest.approx((first + third) / 2))
  first_left = "Left:" + elimination.left_mask(problem, elimination.remaining(problem, [0]))
  wrong_left = first_left.replace(problem["answer"], problem["answer"].lower())
  struck = trace.replace(first_left, wrong_left, 1)  # block 1 strikes the answer
  path.write_text(json.dumps({"problem_id": 0, "completion": struck, "blocks": [0, 10, 20, 30]})
                  + "\n")
  expected = 1 - (10 * j[0] + 10 * 0.0 + 10 * j[2] + 10 * j[3]) / 40
  assert summarize.task_regret(str(path), {0: problem}, 40, "elimination_left") == (
      pytest.approx(expected))
  assert summarize.task_regret(str(path), {0: problem}, 40) == pytest.approx(first)


def test_target_check_survives_a_target_reached_at_budget_zero():
  run = {"normalized_regret": 0.5, "thinking_tokens": 10.0, "tokens_to_target": 0.0,
         "pass@1": 0.3}
  checks = summarize.target_checks([run, run], [run, run])
  assert math.isnan(checks["tokens_to_target_ratio"]) and checks["pass@1_not_lower"]
  assert not checks["reached"]  # equal regret is not lower
  text = summarize.target_lines({"mrt": checks})
  assert "nan×" in text and "**yes**" in text and "**target: not reached**" in text
  assert "not checked (no arm to compare with grpo)" in summarize.target_lines({})


def test_paired_differences_pair_seeds_and_leave_out_runs_that_never_reach():
  runs = lambda *rows: [{"pass@1": p, "normalized_regret": r, "tokens_to_target": t,
                         "thinking_tokens": k, "normalized_regret_fixed_prover": r + 0.1,
                         "normalized_regret_task": r + 0.2}
                        for p, r, t, k in rows]
  base = runs((0.5, 0.6, 100.0, 140.0), (0.4, 0.7, math.inf, 130.0), (0.6, 0.5, 90.0, 120.0))
  arm = runs((0.6, 0.5, 80.0, 130.0), (0.4, 0.6, 70.0, 131.0), (0.8, 0.3, 60.0, 110.0))
  paired = summarize.paired_differences(base, arm)
  mean, low, high = summarize.interval([0.1, 0.0, 0.2])
  assert paired["pass@1"] == pytest.approx({"mean": mean, "low": low, "high": high, "n": 3})
  assert paired["thinking_tokens"]["mean"] == pytest.approx((-10.0 + 1.0 - 10.0) / 3)
  # The second seed's baseline never reaches the target: two pairs remain.
  mean, low, high = summarize.interval([-20.0, -30.0])
  assert paired["tokens_to_target"] == pytest.approx({"mean": mean, "low": low, "high": high,
                                                      "n": 2})
  text = summarize.paired_table({"mrt": paired}, "grpo", 3)
  assert "| arm − grpo | pass@1 |" in text
  assert "(1 of 3 seeds left out: never reach it)" in text
  one = summarize.paired_table({"mrt": summarize.paired_differences(base[1:2], arm[1:2])},
                               "grpo", 1)  # one seed: means without intervals
  assert ("| mrt | +0.000 | -0.100 | -0.100 | -0.100 | (all 1 seeds left out: never reach it) "
          "| +1.0 |" in one)
  stored = json.loads(json.dumps({"mrt": {k: {f: None if isinstance(v, float) and math.isnan(v)
                                               else v for f, v in d.items()}
                                          for k, d in summarize.paired_differences(
                                              base[1:2], arm[1:2]).items()}}))
  assert summarize.paired_table(stored, "grpo", 1) == one  # as results.json holds it
  # The arm's regret with the fixed prover (its own + 0.1) against the warm start's own:
  # 0.6 < 0.6 no, 0.7 < 0.7 no, 0.4 < 0.5 yes.
  assert summarize.against_warm_start(base, arm) == {
      "regret_lower": 3, "fixed_prover_regret_lower": 1, "pass@1_lower": 0, "n": 3}
  with pytest.raises(ValueError):  # runs are paired by seed: the counts must match
    summarize.paired_differences(base, arm[:2])


def test_table_labels_missing_values_by_row():
  run = {row[0]: 1.0 for row in summarize.ROWS}
  missing = dict(run, tokens_to_target=float("nan"), progress_madeup=float("nan"))
  text = summarize.table({"grpo": [run, missing]})
  rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
  assert "(1 of 2 seeds never reach it)" in rows["tokens to target accuracy"]
  assert "(1 of 2 seeds have no such block)" in rows[
      "measured ΔJ of a block that checks a made-up clue"]
  assert "all 1 seeds never reach it" in summarize.table({"grpo": [missing]})


def test_count_parameters_sums_every_tensor_of_every_shard(tmp_path):
  from safetensors.numpy import save_file
  save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros((5,), np.float32)},
            str(tmp_path / "model-00001-of-00002.safetensors"))
  save_file({"c": np.zeros((2, 2, 2), np.float32)},
            str(tmp_path / "model-00002-of-00002.safetensors"))
  assert summarize.count_parameters(str(tmp_path)) == 12 + 5 + 8
  with pytest.raises(FileNotFoundError, match="no \\*.safetensors files"):
    summarize.count_parameters(str(tmp_path / "missing"))


def test_wilson_bounds_solve_the_score_equation():
  got = summarize.wilson(8, 10)
  z = 1.96
  for p in (got["low"], got["high"]):  # (p̂ − p)² = z²·p(1 − p)/n at both ends
    assert (0.8 - p) ** 2 == pytest.approx(z * z * p * (1 - p) / 10, rel=1e-9)
  assert got["low"] < 0.8 < got["high"] and (got["p"], got["n"]) == (0.8, 10)
  assert summarize.wilson(0, 5)["low"] == pytest.approx(0.0, abs=1e-12)
  pooled = summarize.pooled_pass_at_1([{"num_correct": 3, "num_samples": 4},
                                       {"num_correct": 5, "num_samples": 6}])
  assert pooled == summarize.wilson(8, 10)
  with pytest.raises(ValueError, match="n=0"):
    summarize.wilson(0, 0)


# ---- reproduce_demo: fabricated runs in the layout the study writes -------------------------

from experiments import demo_seeds, reproduce_demo  # noqa: E402
from mrt_jax import config_cli  # noqa: E402

_PROBLEM = {**elimination.generate_problem(0, 0, elimination.EliminationConfig(
    num_candidates=6, num_clues=3, indirect_prob=0.0)), "id": 0}
_BUDGETS = [0, 32, 64]
_J = [0.1, 0.5, 0.8]


def _write_eval(path, *, pass1, tokens, regret, j_tokens, seed, meta_prover="policy"):
  """eval.json and samples.jsonl of one evaluation (the fields summarize reads)."""
  path.mkdir(parents=True, exist_ok=True)
  metrics = {"pass@1": pass1, "pass@1_ci": [pass1 - 0.1, pass1 + 0.1],
             "mean_thinking_tokens": tokens + seed, "mean_answer_tokens": 5.0,
             "normalized_regret": regret + 0.01 * seed, "episode_normalized_regret": regret,
             "mean_blocks": 3.0}
  (path / "eval.json").write_text(json.dumps({"metrics": metrics, "budget_forcing": {
      "budgets": _BUDGETS, "J": _J, "mean_thinking_tokens": [t + seed for t in j_tokens]},
      "meta_prover": meta_prover}))
  trace = elimination.trace_completion(_PROBLEM, [0, 0, 1]).text  # new, re-check, new
  rows = [{"problem_id": 0, "completion": trace, "j_values": [0.2, 0.5, 0.5, 1.0],
           "blocks": [0, 20, 40, 60], "verdict": float(i < 3)} for i in range(4)]  # 3 of 4 right
  (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# arm -> (pass@1, thinking tokens, regret, J tokens at the budgets): mrt_likelihood spends 1.6×
# fewer tokens at the same accuracy with lower regret; mrt_sampled loses accuracy; termination
# matches grpo.
_ARMS = {"grpo": (0.7, 100.0, 0.5, [0, 32, 64]), "mrt_sampled": (0.5, 60.0, 0.3, [0, 20, 40]),
         "mrt_likelihood": (0.7, 60.0, 0.3, [0, 20, 40]),
         "termination": (0.7, 100.0, 0.5, [0, 32, 64])}


def _study(tmp_path, seeds=(0, 1, 2)):
  from safetensors.numpy import save_file
  out = tmp_path / "out"
  assets = out / "assets"
  (assets / "model").mkdir(parents=True)
  save_file({"w": np.zeros((4, 4), np.float32)}, str(assets / "model" / "model.safetensors"))
  for name in ("train.jsonl", "test.jsonl"):
    (assets / name).write_text(json.dumps(_PROBLEM) + "\n")
  for s in seeds:
    _write_eval(out / "base" / f"seed{s}", pass1=0.6, tokens=120.0, regret=0.6,
                j_tokens=[0, 32, 64], seed=s)
    for arm, (pass1, tokens, regret, j_tokens) in _ARMS.items():
      work = out / arm / f"seed{s}"
      _write_eval(work / "eval" / "final", pass1=pass1, tokens=tokens, regret=regret,
                  j_tokens=j_tokens, seed=s)
      # The warm start's meta-prover scores the same traces: regret 0.1 higher than their own.
      _write_eval(work / "eval" / reproduce_demo.FIXED_PROVER, pass1=pass1, tokens=tokens,
                  regret=regret + 0.1, j_tokens=j_tokens, seed=s, meta_prover="/assets/model")
      (work / "metrics.jsonl").write_text("".join(json.dumps(
          {"reward_mean": 0.5, "completion_tokens_mean": 100.0, "blocks_mean": 3.0,
           "probe_answers": 8 * (arm != "grpo")}) + "\n" for _ in range(3)))
  _write_eval(out / "regime", pass1=0.75, tokens=100.0, regret=0.5, j_tokens=[0, 32, 64], seed=0)
  args = reproduce_demo.argparse.Namespace(quick=False, steps=3, set=[])
  shared = reproduce_demo.overrides(args, str(out))
  config = config_cli.load_config(reproduce_demo.CONFIG, shared)
  regime = config_cli.load_config(reproduce_demo.CONFIG, shared + reproduce_demo.regime_overrides(
      config, str(out), quick=False))
  docs = tmp_path / "docs"
  docs.mkdir()
  (docs / "RESULTS.md").write_text(f"# Results\n\nprose above\n\n{reproduce_demo.BEGIN}\nold\n"
                                   f"{reproduce_demo.END}\n\nprose below\n")
  record = reproduce_demo.write_results(str(out), str(docs), list(seeds), list(_ARMS), config,
                                        {"warm_start": 60.0}, False, regime_config=regime)
  return record, docs


def test_results_json_keys_and_target_checks_from_fabricated_runs(tmp_path):
  record, docs = _study(tmp_path)
  on_disk = json.loads((docs / "results.json").read_text())
  assert on_disk == json.loads(json.dumps(record))  # strict JSON, what was returned
  assert set(on_disk) == {"schema", "seeds", "arms", "warm_start", "pooled_pass@1", "paired",
                          "against_warm_start", "regime", "target", "settings", "timings_s"}
  assert on_disk["schema"] == 2 and on_disk["seeds"] == [0, 1, 2]
  assert list(on_disk["arms"]) == list(_ARMS)
  for name in ("pass@1", "thinking_tokens", "normalized_regret", "tokens_to_target"):
    for figures in (*on_disk["arms"].values(), on_disk["warm_start"]):
      assert set(figures[name]) == {"mean", "low", "high", "per_seed", "n"}
  grpo = on_disk["arms"]["grpo"]
  assert grpo["thinking_tokens"]["per_seed"] == [100.0, 101.0, 102.0]
  mean, low, high = summarize.interval([100.0, 101.0, 102.0])
  assert (grpo["thinking_tokens"]["mean"], grpo["thinking_tokens"]["low"],
          grpo["thinking_tokens"]["high"]) == pytest.approx((mean, low, high))
  assert on_disk["arms"]["mrt_sampled"]["train_probe_answers_per_step"]["mean"] == 8
  # Target J: 90% of the arms' lowest mean final J; grpo reaches it between 32 and 64 tokens.
  assert on_disk["target"]["accuracy"] == pytest.approx(0.72)
  assert grpo["tokens_to_target"]["per_seed"][0] == pytest.approx(32 + 32 * 0.22 / 0.3)
  checks = on_disk["target"]["checks"]
  assert set(checks) == {"mrt_sampled", "mrt_likelihood", "termination"}
  assert checks["mrt_likelihood"] == {
      "pass@1_not_lower": True, "thinking_tokens_ratio": pytest.approx(101 / 61),
      "thinking_tokens": True, "tokens_to_target_ratio": pytest.approx(1.6, rel=0.05),
      "tokens_to_target": True, "regret_lower": True, "reached": True}
  assert not checks["mrt_sampled"]["pass@1_not_lower"] and not checks["mrt_sampled"]["reached"]
  assert not checks["termination"]["regret_lower"] and not checks["termination"]["reached"]
  assert on_disk["target"]["reached"] and on_disk["target"]["reached_by"] == ["mrt_likelihood"]
  # Paired against grpo: the fabricated seeds move both arms alike, so every difference is exact.
  assert set(on_disk["paired"]) == set(checks)
  likelihood = on_disk["paired"]["mrt_likelihood"]
  assert likelihood["thinking_tokens"] == pytest.approx(
      {"mean": -40.0, "low": -40.0, "high": -40.0, "n": 3})
  assert likelihood["normalized_regret"]["mean"] == pytest.approx(-0.2)
  assert on_disk["paired"]["mrt_sampled"]["pass@1"]["mean"] == pytest.approx(-0.2)
  assert on_disk["against_warm_start"]["grpo"] == {
      "regret_lower": 3, "fixed_prover_regret_lower": 0, "pass@1_lower": 0, "n": 3}
  # The fixed prover's regret: grpo's 0.6 + 0.01 seed, the warm start's its own 0.6 + 0.01 seed.
  assert grpo["normalized_regret_fixed_prover"]["per_seed"] == pytest.approx([0.6, 0.61, 0.62])
  # The exact meta-prover's regret is read off each run's samples (the same traces here).
  assert len(set(grpo["normalized_regret_task"]["per_seed"])) == 1
  assert 0 < grpo["normalized_regret_task"]["mean"] < 1
  assert on_disk["warm_start"]["normalized_regret_fixed_prover"]["per_seed"] == pytest.approx(
      [0.6, 0.61, 0.62])
  assert likelihood["normalized_regret_fixed_prover"]["mean"] == pytest.approx(-0.2)
  assert on_disk["against_warm_start"]["mrt_sampled"]["pass@1_lower"] == 3
  # Pooled pass@1: 3 of 4 samples correct in each of 3 seeds.
  assert on_disk["pooled_pass@1"]["grpo"] == pytest.approx(summarize.wilson(9, 12))
  assert set(on_disk["pooled_pass@1"]) == {*_ARMS, "warm_start"}
  regime = on_disk["regime"]
  assert (regime["group_size"], regime["num_groups"], regime["all_equal"]) == (4, 1, 0.0)
  assert regime["pass@1"] == 0.75 and regime["wasteful_blocks"] == 1.0
  assert regime["progress_recheck"] == 0.0 and regime["settings"]["num_samples"] == 4
  assert on_disk["settings"]["arms"]["mrt_likelihood"]["overrides"] == list(
      reproduce_demo.ARMS["mrt_likelihood"][1])
  text = (docs / "RESULTS.md").read_text()
  assert text.startswith("# Results\n\nprose above\n\n") and text.endswith("\n\nprose below\n")
  assert "old" not in text and "**target: reached by mrt_likelihood**" in text
  assert "| mrt_sampled | 2 | 0.500 |" in text  # a per-seed row
  assert ("| mrt_likelihood | +0.000 [+0.000, +0.000] | -0.200 [-0.200, -0.200] | "
          "-0.200 [-0.200, -0.200] |") in text
  assert ("mrt_sampled lowers regret in 3 of 3 seeds (with the warm start's meta-prover in 3) "
          "and pass@1 in 3") in text
  assert "| normalized regret, J from the warm start's meta-prover | 0.610 [" in text
  for png in ("j_curves", "accuracy_vs_tokens", "train_reward_mean"):
    assert (docs / f"results_{png}.png").exists() and f"results_{png}.png)" in text


def test_fixed_prover_regret_refuses_other_traces_or_the_policys_own_j(tmp_path):
  own, fixed = tmp_path / "own", tmp_path / "fixed"
  _write_eval(own, pass1=0.5, tokens=10.0, regret=0.4, j_tokens=[0, 5, 9], seed=0)
  _write_eval(fixed, pass1=0.5, tokens=10.0, regret=0.5, j_tokens=[0, 5, 9], seed=0,
              meta_prover="/warm/model")
  assert summarize.fixed_prover_regret(str(fixed), str(own)) == 0.5
  _write_eval(fixed, pass1=0.5, tokens=10.0, regret=0.5, j_tokens=[0, 5, 9], seed=0)
  with pytest.raises(ValueError, match=r"fixed/eval.json: J came from the policy itself"):
    summarize.fixed_prover_regret(str(fixed), str(own))
  with open(own / "samples.jsonl", "a") as f:
    f.write(json.dumps({"problem_id": 1, "completion": "other", "verdict": 0.0}) + "\n")
  with pytest.raises(ValueError, match=r"fixed: its samples differ from .*own's"):
    summarize.fixed_prover_regret(str(fixed), str(own))


def test_regime_rejects_groups_of_unequal_size(tmp_path):
  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps({"problem_id": i, "completion": "", "verdict": 1.0}) + "\n"
                          for i in (0, 0, 1)))
  with pytest.raises(ValueError, match=r"groups of sizes \[1, 2\]"):
    summarize.regime_figures(str(path), {})


def _fake_tokenizer_setup(config):
  import types
  from mrt_jax.train import setup
  tokenizer = types.SimpleNamespace(encode=lambda text, add_special_tokens=False: [5, 6],
                                    eos_token_id=0)
  return setup.experience_config(config, tokenizer, types.SimpleNamespace(eos_token_ids=(3,)))


def test_the_default_arms_are_registered_and_hold_the_baseline():
  assert set(reproduce_demo.DEFAULT_ARMS) < set(reproduce_demo.ARMS)
  assert reproduce_demo.DEFAULT_ARMS[0] == reproduce_demo.BASELINE


@pytest.mark.parametrize("arm", list(reproduce_demo.ARMS))
def test_every_arm_loads_and_passes_the_setup_checks(arm, tmp_path):
  from mrt_jax.evaluation import runner
  args = reproduce_demo.argparse.Namespace(quick=False, steps=40, set=[])
  shared = reproduce_demo.overrides(args, str(tmp_path))
  base = config_cli.load_config(reproduce_demo.CONFIG, shared)
  config = config_cli.load_config(reproduce_demo.CONFIG,
                                  shared + reproduce_demo.arm_overrides(arm, base))
  experience = _fake_tokenizer_setup(config)
  # The frozen arms' meta-prover is the study's warm start; the others' is the policy.
  assert config.probe.meta_prover == (base.model.path if "frozen" in arm else "")
  assert base.model.path == f"{tmp_path}/assets/model"
  assert experience.estimator == config.advantage.estimator
  assert experience.measures_j == (arm != "grpo")
  # Every override of the arm reaches the step's settings (none is dropped on the way).
  wanted = dict(o.split("=", 1) for o in reproduce_demo.ARMS[arm][1])
  if "probe.estimator" in wanted:
    assert experience.j_estimator == wanted["probe.estimator"]
    assert (experience.task_prover is not None) == (wanted["probe.estimator"] == "task")
  assert experience.open_block == wanted.get("advantage.open_block", "progress")
  if "advantage.progress_norm" in wanted:
    assert experience.progress_norm == wanted["advantage.progress_norm"]
    assert experience.alpha == float(wanted["advantage.alpha"])
    assert experience.flat_threshold == float(wanted.get("advantage.flat_threshold", 0.02))
  else:
    assert experience.progress_norm == "none" and experience.alpha == 1.0
  # The study's warm start is the longer recipe, for every arm.
  assert (config.demo.sft_trace_steps, config.demo.sft_decision_weight,
          config.demo.num_warm_starts) == (2000, 8, 3)
  assert config.eval.j_estimator == "likelihood" and runner._j_estimator(config) == "likelihood"
  assert runner.EvalSettings.from_config(config).num_problems == 64
  regime = config_cli.load_config(reproduce_demo.CONFIG, shared + reproduce_demo.regime_overrides(
      config, str(tmp_path), quick=False))
  settings = runner.EvalSettings.from_config(regime)
  assert (settings.num_samples, settings.temperature) == (config.rollout.num_generations,
                                                          config.rollout.temperature)


def test_unknown_arm_is_refused(capsys):
  with pytest.raises(SystemExit):
    reproduce_demo.main(["--arms=grpo,mrt"])
  assert "--arms: ['mrt'] unknown" in capsys.readouterr().err


# ---- demo_seeds: fabricated step-0 and final evaluations ------------------------------------

def _demo_eval(workdir, step, pass1, low, tokens, regret):
  d = workdir / "eval" / f"step_{step}"
  d.mkdir(parents=True)
  (d / "eval.json").write_text(json.dumps({"num_problems": 16, "num_samples": 2, "metrics": {
      "pass@1": pass1, "pass@1_ci": [low, pass1 + 0.1], "mean_thinking_tokens": tokens,
      "normalized_regret": regret}}))


def test_demo_seeds_reads_first_and_last_evaluation_and_summarizes(tmp_path):
  runs = []
  # seed 0 improves; seed 1's regret rises; seed 2 falls below the warm start's interval.
  for seed, after in ((0, (0.70, 0.6, 110.0, 0.40)), (1, (0.75, 0.6, 130.0, 0.55)),
                      (2, (0.40, 0.3, 90.0, 0.30))):
    work = tmp_path / f"seed{seed}" / "run"
    _demo_eval(work, 0, 0.70, 0.60, 120.0, 0.50)
    _demo_eval(work, 2, 0.10, 0.0, 1.0, 0.9)  # step 2 < step 10: the last is step 10
    _demo_eval(work, 10, *after)
    before, last = demo_seeds.evaluations(str(work))
    model = tmp_path / f"seed{seed}" / "model"
    model.mkdir()
    # seed 1 chose its second of two candidates; the others were built from one.
    (model / "demo.json").write_text(json.dumps({"demo": {}} if seed != 1 else {
        "demo": {}, "chosen": 1, "warm_starts": [{"check_pass@1": 0.25}, {"check_pass@1": 0.5}]}))
    runs.append({"seed": seed, "wall_s": 60.0 * (seed + 1), "before": demo_seeds.side(before),
                 "after": demo_seeds.side(last), "warm_start": demo_seeds.warm_start(str(model))})
  assert runs[0]["before"] == {"pass@1": 0.70, "low": 0.60, "high": pytest.approx(0.80),
                               "thinking_tokens": 120.0, "normalized_regret": 0.50,
                               "num_problems": 16, "num_samples": 2}
  assert runs[0]["after"]["normalized_regret"] == 0.40
  s = demo_seeds.summary(runs)
  assert (s["num_seeds"], s["regret_drops"], s["pass@1_kept"], s["improved"]) == (3, 2, 2, 1)
  assert s["max_wall_s"] == 180.0
  mean, low, high = summarize.interval([-0.10, 0.05, -0.20])
  assert (s["after_minus_before"]["normalized_regret"]["mean"],
          s["after_minus_before"]["normalized_regret"]["low"]) == pytest.approx((mean, low))
  record = {"seeds": [0, 1, 2], "quick": False, "overrides": [], "runs": runs, "summary": s}
  results = tmp_path / "RESULTS.md"
  results.write_text(f"top\n{reproduce_demo.BEGIN}\nmeasured\n{reproduce_demo.END}\nbottom\n")
  reproduce_demo.splice(str(results), demo_seeds.table(record), demo_seeds.BEGIN, demo_seeds.END)
  text = results.read_text()
  assert "measured" in text and text.startswith("top\n") and demo_seeds.END in text
  assert runs[1]["warm_start"] == {"chosen": 1, "check_pass@1": [0.25, 0.5]}
  assert runs[0]["warm_start"] is None and "| 0 | 1 of 1 | 0.700" in text
  assert "| 1 | 2 of 2 (0.250, 0.500) | 0.700 [0.600, 0.800] | 0.750 [0.600, 0.850] | 120.0 → 130.0 | 0.500 → 0.550 |" \
      " 2.0 min |" in text
  assert "Regret drops in 2 of 3 seeds" in text and "both in 1." in text
  assert "16 held-out problems × 2 samples" in text and "Quick smoke" not in text
  assert "Longest run: 3.0 min" in text
  with pytest.raises(FileNotFoundError, match="expected the warm start"):
    demo_seeds.evaluations(str(tmp_path / "missing"))


def test_demo_seed_overrides_load_and_put_every_asset_under_the_seed(tmp_path):
  config = config_cli.load_config(demo_seeds.CONFIG, demo_seeds.seed_overrides(
      str(tmp_path), 3, ["train.total_steps=2"]))
  assert config.demo.seed == 3 and config.seed == 3 and config.train.total_steps == 2
  for path in (config.model.path, config.model.tokenizer_path, config.data.path,
               config.eval.data_path, config.workdir):
    assert path.startswith(str(tmp_path / "seed3") + "/")


def test_study_timings_keep_the_shared_steps_and_the_studys_arms():
  timings = {"warm_start": 10.0, "regime": 2.0, "base/seed0": 1.0, "grpo/seed0/train": 3.0,
             "mrt_task/seed0/train": 4.0, "mrt_likelihood/seed0/eval": 5.0}
  assert reproduce_demo.study_timings(timings, ["grpo", "mrt_likelihood"]) == {
      "warm_start": 10.0, "regime": 2.0, "base/seed0": 1.0, "grpo/seed0/train": 3.0,
      "mrt_likelihood/seed0/eval": 5.0}


def test_study_paths_follow_quick_and_the_defaults(tmp_path):
  parser = reproduce_demo.study_parser("Doc line.\nmore", "demo_seeds", "0,1,2", "0", "files")
  out, docs, seeds = reproduce_demo.study_paths(parser.parse_args([]))
  assert (out, docs, seeds) == ("/tmp/mrt_jax/demo_seeds",
                                os.path.join(reproduce_demo.ROOT, "docs"), [0, 1, 2])
  out, docs, seeds = reproduce_demo.study_paths(parser.parse_args(["--quick", "--seeds=4,5"]))
  assert (out, docs, seeds) == ("/tmp/mrt_jax/demo_seeds_quick",
                                "/tmp/mrt_jax/demo_seeds_quick/docs", [4, 5])
  out, _, _ = reproduce_demo.study_paths(parser.parse_args([f"--out={tmp_path}"]))
  assert out == str(tmp_path) and parser.description == "Doc line."


def test_results_runs_the_reproduction_then_the_demo_seeds_with_the_same_options(monkeypatch):
  from experiments import results
  calls = []
  monkeypatch.setattr(reproduce_demo, "main", lambda argv: calls.append(("reproduce", argv)))
  monkeypatch.setattr(demo_seeds, "main", lambda argv: calls.append(("demo_seeds", argv)))
  results.main(["--quick", "--set=advantage.alpha=2.0"])
  argv = ["--quick", "--set=advantage.alpha=2.0"]
  assert calls == [("reproduce", argv), ("demo_seeds", argv)]
  calls.clear()
  results.main([])
  assert calls == [("reproduce", []), ("demo_seeds", [])]
