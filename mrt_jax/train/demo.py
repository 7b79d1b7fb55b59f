"""Builds the CPU demo's assets: synthetic problems, a tiny tokenizer, and a tiny model
warm-started by SFT on traces that mix useful and wasteful blocks.

Everything is derived from the config's `demo` block (with its own `demo.seed`, so runs that
differ in `seed` share one warm start) and the termination suffix; an asset that already exists
is reused, so re-running the demo command resumes instead of rebuilding. Problems: training
(data.path, stream demo.seed), warm start (stream demo.seed + 1) and held-out evaluation
(eval.data_path when set, stream demo.seed + 2) never share a generator stream, and the held-out
problems skip every puzzle the other two contain (`heldout_problems`). The model
directory records what it was built from (`demo.json`); a model built from other settings is
an error naming the differing fields, never silently reused.

The warm start is the best of demo.num_warm_starts SFT seeds by a check on RL prompts the SFT
did not see (`mrt_jax.train.warm_start_check`); demo.json records every candidate's check and
the choice.

The warm start must make the meta-prover μ meaningful, so its SFT data mirrors how the probes
are built token for token (`warm_start_pools`, through the public `mrt_jax.train.warm_start`):
a forced answer is trained after the trace's own tokens cut at a boundary (or at any token, as
the evaluation's budget cuts are), followed by the separately tokenized termination suffix,
exactly the sequence `Sampler.fork` feeds the model.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import jax
import numpy as np
from ml_collections import ConfigDict

from mrt_jax import config_defaults as defaults
from mrt_jax import models
from mrt_jax.data import elimination
from mrt_jax.data.sources import write_jsonl
from mrt_jax.models import tokenizer as tokenizer_lib
from mrt_jax.mrt.segment import SegmentConfig, segment
from mrt_jax.train import warm_start_check as check
from mrt_jax.train.sft import Example, example, train_sft
from mrt_jax.train.warm_start import forced_answer_example, trace_example

MANIFEST = "demo.json"  # in the model directory: the settings the assets were built from


def _task(config: ConfigDict) -> elimination.EliminationConfig:
  d = config.demo
  return elimination.EliminationConfig(num_candidates=d.num_candidates, num_clues=d.num_clues,
                                       indirect_prob=d.indirect_prob, waste_prob=d.waste_prob,
                                       clue_order=d.clue_order)


def trace_tokens(tokenizer, problem: elimination.Record, order: Sequence[int],
                 clue_weight: float = 1.0, decision_weight: float = 1.0
                 ) -> tuple[list[int], list[int], list[float]]:
  """A natural trace's completion ids, its block boundaries b_0 = 0 < ... < b_N (tokens), and
  each id's SFT weight (`trace_weights`).

  The boundaries come from the default paragraph segmenter, as the training probes' do; b_N is
  the end of thinking.
  """
  text = elimination.trace_completion(problem, order).text
  encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
  ids = list(encoded["input_ids"])
  seg = segment(ids, lambda i: tokenizer.decode([i]), SegmentConfig())
  if seg.num_blocks != len(order):
    raise ValueError(f"problem {problem['id']}: the segmenter found {seg.num_blocks} blocks in a "
                     f"trace of {len(order)}; expected one per checked clue")
  return ids, [0, *seg.boundaries], trace_weights(text, encoded["offset_mapping"], clue_weight,
                                                  decision_weight)


def trace_weights(text: str, offsets: Sequence[tuple[int, int]], clue_weight: float,
                  decision_weight: float = 1.0) -> list[float]:
  """Per-token SFT weights of a trace: `clue_weight` on the tokens that copy a clue,
  `decision_weight` on the tokens that choose between another block and stopping, 1 elsewhere.

  `offsets` are the tokens' character spans in `text`. The copying tokens are the letters and
  the closing period of each "Wait, clue: not ..." line (`elimination.CLUE_COPY_RE`): the one
  part of a block read from the prompt (an induction head's job, the last skill a tiny model
  picks up), a handful of tokens in a trace of ~150 that the rest outweighs. The deciding
  tokens follow each "Left" line up to the first character of "Wait" or "</think>"
  (`elimination.DECISION_RE`): one choice per block, which an unweighted loss lets a tiny model
  make by the trace's length instead of by the letters left.
  """
  spans = [(m.span(1), clue_weight) for m in elimination.CLUE_COPY_RE.finditer(text)]
  spans += [(m.span(1), decision_weight) for m in elimination.DECISION_RE.finditer(text)]
  return [max([w for (a, b), w in spans if a < end and start < b], default=1.0)
          for start, end in offsets]


def forced_example(prompt: Sequence[int], ids: Sequence[int], cut: int, left: str,
                   suffix: Sequence[int], tokenizer, rng: np.random.Generator) -> Example:
  """μ at a cut: prompt + trace[:cut] + suffix as context, then a guess among `left` and eos.

  The guess is uniform over the letters left, so the ideal μ succeeds w.p. 1 / len(left)
  (`elimination.oracle_success`).
  """
  guess = left[rng.integers(len(left))]
  answer = tokenizer.encode(f"\\boxed{{{guess}}}", add_special_tokens=False)
  return forced_answer_example(prompt, ids, cut, suffix, answer, tokenizer.eos_token_id)


def warm_start_pools(config: ConfigDict, tokenizer, problems
                     ) -> tuple[list[Example], list[Example]]:
  """The warm start's two SFT pools: (traces, meta-prover answers).

  Traces, `demo.sft_traces_per_problem` per problem (each with its own clue order and
  re-checks, `elimination.sample_clue_order`), problem by problem: the prompt, then the whole
  trace (useful and wasteful blocks, "</think>", answer, eos) as targets. Meta-prover answers,
  four per trace, train the answer letter only: the trace's own answer after "</think>" (one
  letter left), and μ after the termination suffix at the end of thinking b_N, at a block
  boundary b_j with j uniform in 0..N-1 (the cuts the training probes use) and at a token cut
  c uniform in 0..b_N (the evaluation's budget cuts fall inside blocks; the guess is among the
  letters left after the blocks that end at or before c). The suffix is never a target: the
  model would learn to write it and stop thinking early. The answers get steps of their own
  (`train_sft` plan): mixed into trace batches, one answer token per example is drowned by the
  traces' hundreds.
  """
  d = config.demo
  if d.sft_traces_per_problem < 1:
    raise ValueError(f"demo.sft_traces_per_problem = {d.sft_traces_per_problem}; expected >= 1")
  rng = np.random.default_rng([d.seed, 1])
  task = _task(config)
  suffix = tokenizer.encode(config.probe.termination_suffix, add_special_tokens=False)
  traces, answers = [], []
  for problem in problems:
    prompt = tokenizer_lib.render_prompt(tokenizer, problem["problem"])
    for _ in range(d.sft_traces_per_problem):
      order = elimination.sample_clue_order(problem, rng, task)
      trace, trace_answers = _trace_examples(config, tokenizer, problem, prompt, order, suffix,
                                             rng)
      traces.append(trace)
      answers.extend(trace_answers)
  return traces, answers


def _trace_examples(config: ConfigDict, tokenizer, problem: elimination.Record,
                    prompt: Sequence[int], order: Sequence[int], suffix: Sequence[int],
                    rng: np.random.Generator) -> tuple[Example, list[Example]]:
  """One trace's SFT example and its four answers (`warm_start_pools`)."""
  d = config.demo
  eos = [tokenizer.eos_token_id]
  ids, bounds, weights = trace_tokens(tokenizer, problem, order, d.sft_clue_weight,
                                      d.sft_decision_weight)
  # The answer letter is the third token from the end of "\boxed{X}" + eos.
  answers = [example((prompt + ids[:-2], False), (ids[-2:-1], True), (ids[-1:] + eos, False))]
  j = int(rng.integers(len(bounds) - 1))
  cut = int(rng.integers(bounds[-1] + 1))
  done = sum(b <= cut for b in bounds[1:])
  for at, num_blocks in ((bounds[-1], len(order)), (bounds[j], j), (cut, done)):
    answers.append(forced_example(prompt, ids, at, elimination.remaining(
        problem, order[:num_blocks]), suffix, tokenizer, rng))
  return trace_example(prompt, ids, tokenizer.eos_token_id, weights), answers


def sft_plan(d: ConfigDict) -> list[int]:
  """Pool of every SFT step: traces first (0), then two answer steps (1) per trace step.

  The answers are learned last: reading the last "Left" line needs the trace skills first.
  """
  return [0] * d.sft_trace_steps + [0 if i % 3 == 2 else 1 for i in range(d.sft_answer_steps)]


# How the warm start lays out a forced answer (the boundaries of `mrt_jax.mrt.segment`): assets
# built with another layout teach μ a context the probes no longer feed.
PROBE_LAYOUT = "thinking prefix ends before the blank line that the termination suffix starts"


def manifest(config: ConfigDict) -> dict:
  """What the assets are built from: the demo block, the termination suffix, the probe layout."""
  return {"demo": config.demo.to_dict(), "termination_suffix": config.probe.termination_suffix,
          "probe_layout": PROBE_LAYOUT}


def check_manifest(config: ConfigDict) -> None:
  """Raises if the model directory was built from other demo settings than `config`'s.

  A demo field that the manifest lacks (added to mrt_jax after the build) counts as built with
  its default, the behaviour from before the field existed.
  """
  path = os.path.join(config.model.path, MANIFEST)
  built = None
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      built = json.load(f)
  want = json.loads(json.dumps(manifest(config)))
  if built is not None:  # A field added since the build was built with its default.
    built["demo"] = {**json.loads(json.dumps(defaults.demo().to_dict())), **built["demo"]}
  if built is not None and {k: built.get(k) for k in want} == want:
    return  # the settings match; the record of the warm-start choice is not a setting
  if built is None:
    diff = f"it has no {MANIFEST} (built by an older mrt_jax)"
  else:
    keys = sorted({*built["demo"], *want["demo"]})
    fields = [f"demo.{k}: built {built['demo'].get(k)!r}, config {want['demo'].get(k)!r}"
              for k in keys if built["demo"].get(k) != want["demo"].get(k)]
    if built.get("termination_suffix") != want["termination_suffix"]:
      fields.append("probe.termination_suffix")
    if built.get("probe_layout") != want["probe_layout"]:
      fields.append(f"the forced answers' layout (built {built.get('probe_layout')!r}, now "
                    f"{want['probe_layout']!r})")
    diff = "; ".join(fields)
  raise ValueError(f"the demo model in {config.model.path!r} was built from other settings "
                   f"({diff}); delete that directory (and the tokenizer and data next to it) to "
                   "rebuild, or point config.model.path elsewhere")


def _write_problems(path: str, make_records) -> None:
  """Writes `make_records()` unless `path` exists; atomically, for runs that build at once."""
  if os.path.exists(path):
    return
  write_jsonl(f"{path}.{os.getpid()}.tmp", make_records())
  os.replace(f"{path}.{os.getpid()}.tmp", path)


def heldout_problems(config: ConfigDict) -> list[elimination.Record]:
  """`demo.num_test_problems` problems of stream demo.seed + 2 that neither the RL prompts nor
  the SFT warm start contain (the puzzle space is small enough for the streams to collide),
  numbered after the training problems' ids.

  Raises:
    ValueError: the puzzle space has too few unseen problems for `demo.num_test_problems`.
  """
  d = config.demo
  task = _task(config)
  seen = {p["problem"] for p in elimination.generate_problems(d.num_problems, d.seed, task)}
  seen |= {p["problem"] for p in elimination.generate_problems(d.sft_problems, d.seed + 1, task)}
  out = []
  for index in range(100 * d.num_test_problems):
    if len(out) == d.num_test_problems:
      break
    problem = elimination.generate_problem(d.seed + 2, index, task)
    if problem["problem"] not in seen:
      seen.add(problem["problem"])
      out.append({**problem, "id": d.num_problems + len(out)})
  if len(out) < d.num_test_problems:
    raise ValueError(f"demo.num_test_problems = {d.num_test_problems}: only {len(out)} puzzles of "
                     f"{d.num_candidates} letters and {d.num_clues} clues are unseen by training "
                     "and SFT; ask for fewer, or for more letters or clues")
  return out


def build_assets(config: ConfigDict) -> None:
  """Writes the problems, the tokenizer and the warm-started model where they are missing."""
  d = config.demo
  task = _task(config)
  _write_problems(config.data.path,
                  lambda: elimination.generate_problems(d.num_problems, d.seed, task))
  if config.eval.data_path:
    _write_problems(config.eval.data_path, lambda: heldout_problems(config))
  if not os.path.exists(os.path.join(config.model.tokenizer_path, "tokenizer.json")):
    corpus = elimination.tokenizer_corpus(200, d.seed, task, config.probe.termination_suffix)
    tokenizer_lib.build_tiny_tokenizer(config.model.tokenizer_path, corpus,
                                       vocab_size=d.vocab_size)
  if os.path.exists(os.path.join(config.model.path, "config.json")):
    check_manifest(config)
    return
  tokenizer = tokenizer_lib.load_tokenizer(config.model.tokenizer_path)
  vocab = -(-len(tokenizer) // 8) * 8  # Pad like real checkpoints (vocab >= tokenizer size).
  model_config = models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": vocab, "hidden_size": d.hidden_size,
      "intermediate_size": d.intermediate_size, "num_hidden_layers": d.num_layers,
      "num_attention_heads": d.num_heads, "num_key_value_heads": d.num_kv_heads,
      "rms_norm_eps": 1e-6, "rope_theta": d.rope_theta, "max_position_embeddings": 1024,
      "tie_word_embeddings": True, "bos_token_id": tokenizer.bos_token_id,
      "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
  if d.num_warm_starts < 1:
    raise ValueError(f"demo.num_warm_starts = {d.num_warm_starts}; expected >= 1 (1: no "
                     "choice among SFT seeds)")
  sft = d.sft_trace_steps + d.sft_answer_steps > 0
  if sft:
    sft_problems = elimination.generate_problems(d.sft_problems, d.seed + 1, task)
    traces, answers = warm_start_pools(config, tokenizer, sft_problems)
  if d.num_warm_starts > 1:
    rl_problems = elimination.generate_problems(d.num_problems, d.seed, task)
    checked = check.check_problems(config, rl_problems, sft_problems if sft else ())
  chosen, entries = None, []
  for index in range(d.num_warm_starts):
    params = models.init_params(model_config, check.candidate_key(d.seed, index))
    if sft:
      num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
      print(f"demo: SFT warm start {index + 1} of {d.num_warm_starts}: a "
            f"{num_params / 1e6:.2f}M-parameter model on {len(traces)} traces and "
            f"{len(answers)} answers", flush=True)
      params, _ = train_sft(model_config, params, [traces, answers], sft_plan(d),
                            batch_size=d.sft_batch_size, learning_rate=d.sft_learning_rate,
                            weight_decay=d.sft_weight_decay,
                            seed=check.candidate_sft_seed(d.seed, index), progress=True,
                            desc=f"sft {index + 1}/{d.num_warm_starts}")
    if d.num_warm_starts > 1:
      entries.append(check.check_candidate(config, model_config, params, tokenizer, checked,
                                           index))
      print(f"demo: warm start {index + 1}: check pass@1 {entries[-1]['check_pass@1']:.3f} on "
            f"{len(checked)} RL prompts unseen by SFT x {d.check_samples} samples", flush=True)
    if not entries or check.choose(entries) == index:  # the best so far; only it is kept
      chosen = params
  built = manifest(config)
  if entries:
    built.update(warm_starts=entries, chosen=check.choose(entries))
    print(f"demo: keeping warm start {built['chosen'] + 1} of {d.num_warm_starts}", flush=True)
  models.save_hf(model_config, chosen, config.model.path)
  with open(os.path.join(config.model.path, MANIFEST), "w", encoding="utf-8") as f:
    json.dump(built, f, indent=2)
