"""The RL training loop: data → experience → update → weights to the sampler → logs → checkpoint.

Determinism and exact resume: the only randomness is the data order (grain, checkpointed
iterator state) and the sampler seeds, which are a pure function of (config.seed, step). A
checkpoint holds the `TrainState` and the iterator state, so `kill -9` then the same command
continues bit-for-bit: metrics lines past the restored step are dropped from `metrics.jsonl`
and recomputed identically.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from mrt_jax import distributed, storage
from mrt_jax.learner.logprobs import token_logprobs
from mrt_jax.learner.state import create_state, param_shardings, state_shardings
from mrt_jax.learner.step import batch_shardings, make_train_step
from mrt_jax.models.sharding import SAMPLE_RULES
from mrt_jax.mrt import star
from mrt_jax.mrt.segment import stack_segmentations
from mrt_jax.sampling import Sampler
from mrt_jax.sampling.buckets import pow2_at_least
from mrt_jax.train import anchor, failures, multihost, setup
from mrt_jax.train.checkpoint import Checkpointer, abstract_train_state
from mrt_jax.train.metrics import MetricsWriter
from mrt_jax.train.restore import load_meta_prover
from mrt_jax.train.rollout import FixedProver, collect, learner_batch, token_pieces


class TooManyBadSteps(RuntimeError):
  """`train.max_bad_steps` consecutive updates had a NaN/inf loss or gradient."""


def _step_seed(seed: int, step: int) -> int:
  return (seed * 1_000_003 + step * 7_919) % (2**31 - 1)


class _Stop:
  """Turns SIGTERM (preemption) into a checkpoint-and-exit at the next step boundary.

  Processes get the signal at different times; `agreed()` stops all of them at the same step
  boundary (a process that stopped alone would leave the others waiting in a collective).
  """

  def __init__(self):
    self.requested = False  # set by the handler, at any time
    self.stopping = False   # the agreed decision, the same on every process
    signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    """Whether any process has been asked to stop (a collective with several processes)."""
    self.stopping = self.stopping or multihost.any_process(self.requested)
    return self.stopping


def train(config: ConfigDict) -> dict[str, Any]:
  """Runs `config` to `train.total_steps` (resuming from `workdir` if it holds a checkpoint).

  Returns the last step's metrics.
  """
  run = setup.build(config)
  distributed.log_process(run.mesh)
  workdir = run.workdir
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=config.train.checkpoint_every,
                      keep=config.train.keep_checkpoints)
  restored = ckpt.restore(abstract_train_state(run.params, run.optimizer))
  if restored is None:
    state, start = create_state(run.params, run.optimizer), 0
  else:  # Placed with the run's shardings, whatever mesh or process count wrote it.
    state, extra = restored
    start = int(extra["step"])
    run.data.set_state(extra["data"])
  ref_params = run.params if run.step_config.loss.beta > 0 else None
  if ref_params is not None:
    ref_params = jax.tree.map(jnp.copy, ref_params)  # The state's params are donated.
  writer = MetricsWriter(workdir, config.train.total_steps, start)

  mesh = run.mesh
  train_step = None
  logprobs = jax.jit(token_logprobs, static_argnums=0, static_argnames="temperature")
  sample_shardings = param_shardings(run.model_config, mesh, SAMPLE_RULES)
  sampler = Sampler(run.model_config, mesh=mesh, rules=SAMPLE_RULES,
                    prompt_buckets=run.prompt_buckets)
  answers = _AnswerSource(run, ref_params, sample_shardings)
  prover = _fixed_prover(config, run, ref_params, sample_shardings)
  provers = {storage.absolute(str(config.probe.meta_prover)): prover.params} if prover else {}
  stop = _Stop()
  zero_watch = failures.ZeroAdvantageWatch(config.train.zero_advantage_warn_steps)
  values: dict[str, Any] = {}
  total = config.train.total_steps
  try:
    for step in range(start, total):
      records, prompts = run.data.next_batch()
      sampler_params = jax.device_put(state.params, sample_shardings)
      if _eval_due(config, step):
        _evaluate(config, run, sampler_params, step, writer, provers)
      exp = collect(sampler, sampler_params, prompts, records, run.experience,
                    run.reward_fn, run.decode, _step_seed(config.seed, step), prover=prover)
      _check_experience(config, run, exp, step == start, zero_watch, step + 1)
      if run.star_selection is not None:
        batch, selected = star_batch(exp, run.star_selection, run.experience.num_generations,
                                     run.max_length)
        exp.stats["star_selected"] = selected
      else:
        batch = _policy_batch(run, state.params, ref_params, exp, logprobs)
        if run.answer_rows is not None:
          batch.update(_answer_batch(run, exp, records, answers, _step_seed(config.seed, step)))
      for mini in _mini_batches(batch, config):
        shard_b = batch_shardings(mesh, mini)
        if train_step is None:
          train_step = make_train_step(run.model_config, run.step_config, run.optimizer,
                                       mesh=mesh, state_shardings=state_shardings(state),
                                       batch_shardings_=shard_b)
        state, metrics = train_step(state, multihost.place(mini, shard_b))
      metrics = dict(metrics, **exp.stats)
      values = writer.write(step + 1, metrics)
      if config.train.sample_every > 0 and step % config.train.sample_every == 0:
        writer.write_text(step + 1, "samples", _sample_text(exp))
      if int(state.nonfinite_streak) >= config.train.max_bad_steps:
        raise TooManyBadSteps(
            f"{int(state.nonfinite_streak)} consecutive steps had a non-finite loss or gradient "
            f"(train.max_bad_steps={config.train.max_bad_steps}); the last good checkpoint in "
            f"{ckpt.directory} is intact")
      extra = {"step": step + 1, "data": run.data.get_state()}
      last = step + 1 == config.train.total_steps
      stopping = stop.agreed()
      if int(state.nonfinite_streak) == 0:  # Never checkpoint a state mid-way through a NaN run.
        ckpt.maybe_save(step + 1, state, extra, force=last or stopping)
      if stopping:
        break
    if _eval_due(config, total) and not stop.stopping:
      _evaluate(config, run, jax.device_put(state.params, sample_shardings), total, writer,
                provers)
      _compare_evals(workdir)
  finally:
    ckpt.close()
    writer.close()
  return values


def _check_experience(config: ConfigDict, run, exp, first: bool, zero_watch, step: int) -> None:
  """Loud failures (`failures`): the verifier's error rate, all-zero advantages, and on the
  first step the segmentation settings with the blocks of the first trace."""
  failures.check_verifier_errors(exp.stats, len(exp.completions) + exp.stats["num_probes"],
                                 config.reward.max_error_rate, config.reward.verifier)
  exp.stats.update(failures.zero_advantage_metrics(exp.advantages_BxT,
                                                   run.experience.num_generations))
  if jax.process_index() != 0:
    return
  if first:
    print(failures.describe_segmentation(run.experience.segment,
                                         token_pieces(run.decode, exp.completions[0]),
                                         exp.segments[0]), flush=True)
  if run.star_selection is None:  # MRT-STaR reports its selections instead (star_selected).
    zero_watch.update(step, exp.stats)


def _mini_batches(batch: dict, config: ConfigDict):
  """μ passes over the batch, each in `train.mini_batches` row slices of whole groups.

  Advantages were computed on the whole batch first, so a slice never splits a group before
  its advantages exist; rows of one prompt's group stay together in one slice.
  """
  mini = config.train.mini_batches
  rows = next(iter(batch.values())).shape[0]
  size = rows // mini
  for _ in range(config.train.num_updates):
    for k in range(mini):
      yield {name: v[k * size:(k + 1) * size] for name, v in batch.items()}


def _eval_due(config: ConfigDict, step: int) -> bool:
  every = config.train.eval_every
  return every > 0 and (step % every == 0 or step == config.train.total_steps)


def _evaluate(config: ConfigDict, run, params, step: int, writer: MetricsWriter,
              provers: dict) -> None:
  """`mrt_jax.evaluate` on the current params into workdir/eval/step_<N> (skipped if done).

  `provers` maps a meta-prover's path to its params in the sampler's layout: eval.meta_prover
  is loaded at the first evaluation and kept for the next ones (probe.meta_prover's seeds it).

  Every process evaluates (the sampler's programs span the mesh); process 0 writes the outputs,
  the others write theirs into a scratch directory that is then deleted.
  """
  from mrt_jax.evaluation.runner import evaluate  # Imported lazily: plotting libraries.
  out = os.path.join(run.workdir, "eval", f"step_{step}")
  done = storage.exists(os.path.join(out, "eval.json")) and jax.process_index() == 0
  if multihost.any_process(done):
    return  # Already evaluated before a restart.
  # Default buckets, as a standalone evaluation: its prompts outgrow the training buckets.
  sampler = Sampler(run.model_config, mesh=run.mesh, rules=SAMPLE_RULES)
  path = str(config.eval.meta_prover)
  if path and storage.absolute(path) not in provers:
    provers[storage.absolute(path)] = load_meta_prover(config, "eval.meta_prover",
                                                       run.model_config, run.mesh, SAMPLE_RULES)
  with contextlib.ExitStack() as scratch:
    if jax.process_index() != 0:
      out = scratch.enter_context(tempfile.TemporaryDirectory())
    record = evaluate(config, params, run.model_config, run.tokenizer, out,
                      checkpoint=f"{run.workdir}@step_{step}", name=f"step_{step}",
                      sampler=sampler, extra={"step": step},
                      prover_params=provers.get(storage.absolute(path)) if path else None)
  scalars = {f"eval/{k}": v for k, v in record["metrics"].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
  writer.write_scalars(step, scalars)


def _eval_paths(workdir: str) -> list[str]:
  """The run's eval.json files (workdir/eval/step_<N>), by step."""
  root = os.path.join(workdir, "eval")
  if not storage.isdir(root):
    return []
  paths = [os.path.join(root, d, "eval.json") for d in storage.listdir(root)
           if d.startswith("step_")]
  return sorted((p for p in paths if storage.exists(p)),
                key=lambda p: int(p.split("step_")[-1].split("/")[0]))


def _compare_evals(workdir: str) -> None:
  """Plots every evaluation of the run together (e.g. the warm start against the end)."""
  from mrt_jax.evaluate import compare
  paths = _eval_paths(workdir)
  if jax.process_index() == 0 and len(paths) > 1:
    compare(paths, os.path.join(workdir, "eval", "compare"))


def _read_json(path: str) -> Any:
  with storage.open_file(path) as f:
    return json.load(f)


def evaluation_table(workdir: str) -> str | None:
  """The run's first and last evaluations side by side (`report.before_after_table`), or None
  with fewer than two."""
  paths = _eval_paths(workdir)
  if len(paths) < 2:
    return None
  from mrt_jax.evaluation import report  # Imported lazily, as the evaluation is.
  first, last = (_read_json(p) for p in (paths[0], paths[-1]))
  return report.before_after_table(first, last, run_dir=workdir,
                                   plots_dir=os.path.join(workdir, "eval", "compare"))


def _length(exp, cap: int) -> int:
  """Learner length: a power-of-two bucket (few recompiles), capped at the longest possible."""
  longest = max(len(p) + len(c) for p, c in zip(exp.prompts, exp.completions))
  return _bucket(longest, cap)


def _bucket(longest: int, cap: int) -> int:
  return max(longest, min(pow2_at_least(longest, minimum=16), cap))


class _AnswerSource:
  """Samples the meta-prover's answers from the frozen warm start (loss.answer_target =
  'warm_start'): its params in the sampler's layout (the reference model's when β > 0, else a
  copy taken before the state's params are donated), and a sampler with the default prompt
  buckets, since its contexts hold whole traces."""

  def __init__(self, run, ref_params, sample_shardings):
    self.params = self.sampler = None
    if run.answer_rows is not None and run.answer_rows.target == "warm_start":
      warm = ref_params if ref_params is not None else jax.tree.map(jnp.copy, run.params)
      self.params = jax.device_put(warm, sample_shardings)
      self.sampler = Sampler(run.model_config, mesh=run.mesh, rules=SAMPLE_RULES)

  def sample(self, run, contexts, seed: int) -> list[list[int]]:
    e = run.experience
    return self.sampler.generate(self.params, contexts, max_new_tokens=e.probe_max_answer_len,
                                 temperature=1.0, top_p=1.0, stop_token_ids=e.stop_token_ids,
                                 seed=seed).tokens


def _fixed_prover(config: ConfigDict, run, ref_params, sample_shardings) -> FixedProver | None:
  """probe.meta_prover's params in the sampler's layout (the reference model's when it names
  model.path and β > 0), on a sampler whose buckets hold whole rollouts; None for "" (μ is the
  policy)."""
  path = str(config.probe.meta_prover)
  if not path:
    return None
  buckets = sorted(set(setup.prompt_buckets(run.max_length)) | set(run.prompt_buckets))
  sampler = Sampler(run.model_config, mesh=run.mesh, rules=SAMPLE_RULES,
                    prompt_buckets=tuple(buckets))
  if ref_params is not None and storage.absolute(path) == storage.absolute(config.model.path):
    return FixedProver(sampler, jax.device_put(ref_params, sample_shardings))
  return FixedProver(sampler, load_meta_prover(config, "probe.meta_prover", run.model_config,
                                               run.mesh, SAMPLE_RULES))


def _answer_batch(run, exp, records, answers: _AnswerSource, seed: int) -> dict:
  """The meta-prover's answer rows of this step (`mrt_jax.train.anchor`), one per rollout,
  padded to a power-of-two bucket; cuts and sampled answers follow the step's seed."""
  t0 = time.perf_counter()
  suffix = run.experience.suffix_tokens
  cuts = anchor.draw_cuts(exp.segments, np.random.default_rng([seed, 2]))
  contexts = anchor.contexts(exp.prompts, exp.completions, cuts, suffix)
  if run.answer_rows.target == "reference":
    recs = [r for r in records for _ in range(run.experience.num_generations)]
    targets = anchor.reference_targets(recs, run.answer_rows.reference)
  else:
    targets = answers.sample(run, contexts, seed + 3)
  longest = max(len(c) + len(t) for c, t in zip(contexts, targets))
  # At most a whole rollout, the suffix and an answer as long as a probe's.
  cap = run.max_length + len(suffix) + run.experience.probe_max_answer_len
  rows = anchor.answer_rows(contexts, targets, length=_bucket(longest, cap))
  exp.stats["time_answers_s"] = time.perf_counter() - t0
  return rows


def _policy_batch(run, params, ref_params, exp, logprobs) -> dict:
  """RL batch: tokens, mask, advantages, sampler / old / reference log-probs."""
  batch = learner_batch(exp, _length(exp, run.max_length))
  temp = run.experience.temperature
  # Rows split over the batch axes as in the train step, so old and new log-probs are computed
  # with the same partitioning (the first update's ratios are exactly 1).
  tokens = multihost.place({"tokens": batch["tokens"]},
                           batch_shardings(run.mesh, {"tokens": batch["tokens"]}))["tokens"]
  with jax.set_mesh(run.mesh):
    batch["old_logprobs"], _ = logprobs(run.model_config, params, tokens, temperature=temp)
    if ref_params is not None:
      batch["ref_logprobs"], _ = logprobs(run.model_config, ref_params, tokens,
                                          temperature=temp)
  return batch


def star_batch(exp, selection: str, group_size: int, cap: int) -> tuple[dict, int]:
  """MRT-STaR SFT batch: one row per group, the selected trace or an all-masked row."""
  lengths = np.array([len(c) for c in exp.completions])
  stack = stack_segmentations(exp.segments)
  chosen = star.select(selection, exp.outcome_B, exp.success_BxN1, stack.boundaries_BxN1,
                       stack.num_blocks_B, lengths, group_size)
  full = learner_batch(exp, _length(exp, cap))
  rows = np.where(chosen >= 0, chosen, 0)
  mask = full["mask"][rows] * (chosen >= 0)[:, None]
  return {"tokens": full["tokens"][rows], "mask": mask.astype(np.float32)}, int((chosen >= 0).sum())


def _sample_text(exp) -> str:
  """The first rollout with its blocks and J values, for TensorBoard."""
  seg = exp.segments[0]
  j = exp.success_BxN1[0][exp.boundary_mask_BxN1[0]]
  return (f"outcome={exp.outcome_B[0]:.0f} blocks={seg.num_blocks} "
          f"J={np.round(j, 3).tolist()}\n\n{exp.texts[0]}")
