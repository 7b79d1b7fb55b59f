"""Builds everything one run needs from its config: mesh, model, tokenizer, data, verifier,
optimizer, step and experience settings. Bad input fails here, before any compile, with an
error naming the config field, file or directory at fault.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from mrt_jax import models, plugins, storage, task
from mrt_jax.data.pipeline import pipeline_from_config
from mrt_jax.learner import losses
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer
from mrt_jax.learner.step import StepConfig
from mrt_jax.models import tokenizer as tokenizer_lib
from mrt_jax.mrt.advantages import NEEDS_J, AdvantageConfig
from mrt_jax.mrt.meta_prover import (AnswerTemplate, check_estimator, prover_answer, prover_task,
                                     reference_answer)
from mrt_jax.rewards import get_verifier, pool_for, verify_batch
from mrt_jax.train import anchor
from mrt_jax.train.multihost import split_over_processes
from mrt_jax.train.rollout import OPEN_BLOCKS, ExperienceConfig

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class PromptData:
  """The grain prompt iterator with the interface the loop needs (batch, get/set state).

  Every process reads the same global batch (SPMD: all hosts feed identical inputs to the
  jitted sampler and learner, whose shardings split the work).
  """

  def __init__(self, config: ConfigDict, tokenizer):
    self.dataset, self.prompts = pipeline_from_config(config, tokenizer)
    self._it = iter(self.dataset)

  def next_batch(self) -> tuple[list[dict], list[list[int]]]:
    batch = next(self._it)
    records = [ex["record"] for ex in batch]  # What verifiers receive (`mrt_jax.task`).
    return records, [np.asarray(ex["prompt_ids"]).tolist() for ex in batch]

  def get_state(self) -> dict:
    return self._it.get_state()

  def set_state(self, state: dict) -> None:
    self._it = iter(self.dataset)
    self._it.set_state(state)


@dataclasses.dataclass(frozen=True)
class AnswerRows:
  """Where the meta-prover's answer rows take their targets (`mrt_jax.train.anchor`)."""
  target: str                       # a key of anchor.ANSWER_TARGETS
  reference: AnswerTemplate | None  # the reference answer's template (target "reference")


@dataclasses.dataclass
class Run:
  """A run's built pieces (see `build`)."""
  workdir: str
  mesh: jax.sharding.Mesh
  model_config: models.ModelConfig
  params: Any
  tokenizer: Any
  data: PromptData
  optimizer: Any
  step_config: StepConfig
  experience: ExperienceConfig
  reward_fn: Callable
  decode: Callable[[Sequence[int]], str]
  prompt_buckets: tuple[int, ...]
  star_selection: str | None   # MRT-STaR trace selection, or None for RL
  answer_rows: AnswerRows | None  # the meta-prover's answer rows (loss.answer_nll_coef > 0)
  max_length: int              # max prompt + max completion tokens (the learner's longest row)


def check_workdir(workdir: str) -> str:
  """Creates `workdir` (a local path or a bucket URI) and checks it is writable (clear error
  otherwise)."""
  return storage.check_writable(workdir, "config.workdir")


def make_mesh(config: ConfigDict) -> jax.sharding.Mesh:
  m = config.mesh
  try:
    return models.make_mesh(m.data, m.fsdp, m.tensor)
  except ValueError as e:
    raise ValueError(f"config.mesh (data={m.data}, fsdp={m.fsdp}, tensor={m.tensor}): {e}") from e


def dtype_of(config: ConfigDict):
  if config.model.dtype not in _DTYPES:
    raise ValueError(f"config.model.dtype={config.model.dtype!r}; expected one of "
                     f"{sorted(_DTYPES)}")
  return _DTYPES[config.model.dtype]


def optimizer_config(config: ConfigDict) -> OptimizerConfig:
  """The schedule spans every optimizer update: steps × μ passes × mini-batches."""
  o, t = config.optimizer, config.train
  updates = t.total_steps * t.num_updates * t.mini_batches
  return OptimizerConfig(learning_rate=o.learning_rate, schedule=o.schedule,
                         warmup_ratio=o.warmup_ratio, total_steps=updates,
                         weight_decay=o.weight_decay, grad_clip=o.max_grad_norm)


def step_config(config: ConfigDict, objective: str = "policy") -> StepConfig:
  t = config.train
  mini = t.mini_batches
  if mini < 1 or t.global_batch_prompts % mini:
    raise ValueError(f"config.train.mini_batches={mini} must be >= 1 and divide "
                     f"config.train.global_batch_prompts={t.global_batch_prompts} (whole groups)")
  prompts = t.global_batch_prompts // mini
  if prompts % t.micro_batch_prompts:
    raise ValueError(f"config.train.micro_batch_prompts={t.micro_batch_prompts} does not divide "
                     f"the {prompts} prompts of a mini-batch (global_batch_prompts / "
                     "mini_batches)")
  loss = config.get("loss")
  loss_config = losses.LossConfig()
  if loss is not None:
    loss_config = losses.LossConfig(
        policy_loss=loss.policy_loss, aggregation=loss.aggregation, eps_low=loss.clip_eps,
        eps_high=loss.clip_eps_high, beta=loss.kl_beta, kl_estimator=loss.kl_estimator,
        entropy_coef=loss.entropy_coef, tis_cap=loss.tis_cap or None,
        max_len=config.rollout.max_completion_len,
        answer_nll_coef=loss.get("answer_nll_coef", 0.0))
  return StepConfig(objective=objective,
                    num_micro_batches=prompts // t.micro_batch_prompts,
                    temperature=config.rollout.temperature, loss=loss_config)


def experience_config(config: ConfigDict, tokenizer, model_config) -> ExperienceConfig:
  p, r = config.probe, config.rollout
  adv = config.get("advantage")
  star = config.get("star")
  if adv is None and star is None:
    raise ValueError("the config has neither an `advantage` block (RL) nor a `star` block "
                     "(MRT-STaR)")
  if adv is not None and adv.estimator == "mrt_prefix":
    raise ValueError("config.advantage.estimator='mrt_prefix' needs stale-prefix sampling, "
                     "which the launch loop does not do; use it through mrt_advantages directly")
  if adv is not None:
    try:  # the estimator's own checks, before any training
      AdvantageConfig(group_size=r.num_generations, std=adv.std, outcome_norm=adv.outcome_norm,
                      progress_norm=adv.progress_norm)
    except ValueError as e:
      raise ValueError(f"config.advantage / config.rollout: {e}") from None
    if adv.progress_norm != "none" and adv.estimator != "mrt":
      raise ValueError(f"config.advantage.progress_norm={adv.progress_norm!r} with config."
                       f"advantage.estimator={adv.estimator!r}: only 'mrt' adds progress to the "
                       "advantage; set progress_norm='none' or estimator='mrt'")
    if adv.open_block not in OPEN_BLOCKS:
      raise ValueError(f"config.advantage.open_block={adv.open_block!r} is unknown; expected one "
                       f"of {list(OPEN_BLOCKS)}")
    if adv.open_block != "progress" and adv.estimator != "mrt":
      raise ValueError(f"config.advantage.open_block={adv.open_block!r} with config.advantage."
                       f"estimator={adv.estimator!r}: only 'mrt' credits blocks with progress; "
                       "set open_block='progress' or estimator='mrt'")
  probing = star is not None or adv.estimator in NEEDS_J
  # MRT-STaR (no advantage block) reads progress only; the advantages computed for it are unused.
  advantage = (dict(estimator="mrt", alpha=0.0) if adv is None else
               dict(estimator=adv.estimator, alpha=adv.alpha, outcome_norm=adv.outcome_norm,
                    progress_norm=adv.progress_norm, flat_threshold=adv.flat_threshold,
                    open_block=adv.open_block, std=adv.std, eps=adv.eps))
  suffix = tokenizer.encode(p.termination_suffix, add_special_tokens=False)
  stop = tuple(sorted({tokenizer.eos_token_id, *model_config.eos_token_ids} - {None}))
  j_estimator = p.estimator if probing else None
  answer = task_prover = None
  eval_block = config.get("eval")
  if p.task_prover and j_estimator != "task" and (eval_block is None or
                                                    eval_block.j_estimator != "task"):
    raise ValueError(f"config.probe.task_prover={p.task_prover!r} is set, but neither "
                     f"config.probe.estimator ({j_estimator!r} in this run) nor "
                     "config.eval.j_estimator is 'task'; clear it or use the task estimator")
  if probing:
    check_estimator(j_estimator, "config.probe.estimator")
    if j_estimator == "sampled" and p.num_probes < 1:
      reader = (f"config.advantage.estimator={adv.estimator!r}" if star is None else
                "MRT-STaR (config.star)")
      raise ValueError(f"config.probe.num_probes={p.num_probes} with config.probe.estimator="
                       f"'sampled': {reader} reads the meta-prover's J, and sampled answers need "
                       "m >= 1 probes per boundary; set probe.num_probes >= 1 or "
                       "probe.estimator='likelihood'")
    answer = prover_answer(config, tokenizer, "probe.estimator", j_estimator)
    task_prover = prover_task(config, "probe.estimator", j_estimator)
    if task_prover is not None and p.meta_prover:
      raise ValueError(f"config.probe.meta_prover={p.meta_prover!r} names a checkpoint, but "
                       "config.probe.estimator='task' runs no model; clear one of the two")
  elif p.meta_prover:
    raise ValueError(f"config.probe.meta_prover={p.meta_prover!r} names a meta-prover, but "
                     f"config.advantage.estimator={adv.estimator!r} reads no J; clear "
                     "probe.meta_prover or use an estimator that reads J (e.g. 'mrt')")
  return ExperienceConfig(
      num_generations=r.num_generations, max_completion_len=r.max_completion_len,
      temperature=r.temperature, top_p=r.top_p,
      num_probes=p.num_probes if probing else 0,
      probe_temperature=p.temperature, probe_top_p=p.top_p,
      probe_max_answer_len=p.max_answer_len, suffix_tokens=tuple(suffix), stop_token_ids=stop,
      segment=task.segment_config(config), j_estimator=j_estimator, answer=answer,
      task_prover=task_prover, **advantage)


def answer_rows(config: ConfigDict, tokenizer, steps: StepConfig) -> AnswerRows | None:
  """The meta-prover's answer rows when config.loss.answer_nll_coef > 0, else None; errors
  name the field."""
  coef = steps.loss.answer_nll_coef
  if coef == 0:
    return None
  target = config.loss.answer_target
  anchor.check_target(target)
  reference = (reference_answer(config, tokenizer, "config.loss.answer_target='reference'")
               if target == "reference" else None)
  return AnswerRows(target, reference)


def prompt_buckets(max_prompt_len: int) -> tuple[int, ...]:
  """Powers of two from 16 up to (and including) the max prompt length."""
  sizes, n = [], 16
  while n < max_prompt_len:
    sizes.append(n)
    n *= 2
  return tuple(sizes + [max_prompt_len])


def load_model(config: ConfigDict, mesh):
  """(model_config, params, tokenizer) with the vocab checked; errors name the directory."""
  path = config.model.path
  if not os.path.isdir(path):
    raise FileNotFoundError(f"config.model.path={path!r}: no such model directory (expected a "
                            "Hugging Face checkpoint with config.json and *.safetensors)")
  tokenizer = tokenizer_lib.load_tokenizer(config.model.tokenizer_path)
  model_config, params = models.load_hf(path, dtype=dtype_of(config), mesh=mesh)
  tokenizer_lib.check_vocab(tokenizer, model_config)
  return model_config, params, tokenizer


def build(config: ConfigDict) -> Run:
  """Builds a run; see the module docstring."""
  workdir = check_workdir(config.workdir)
  plugins.import_plugins(config.plugins)  # Already done by the CLIs; configs built in code.
  mesh = make_mesh(config)
  model_config, params, tokenizer = load_model(config, mesh)
  task.check_thinking_tokens(tokenizer, config.segment.end_think,
                             config.probe.termination_suffix)
  data = PromptData(config, tokenizer)
  star = config.get("star")
  verifier, r = config.reward.verifier, config.reward
  get_verifier(verifier)  # Fails fast, naming the registered verifiers.
  pool_for(verifier, r.num_workers, r.timeout_s)  # Starts the workers; bad settings fail here.
  # Each process verifies a slice of the rows; every process gets all the verdicts.
  reward_fn = split_over_processes(lambda records, texts, ids: verify_batch(
      verifier, records, texts, ids, pool=pool_for(verifier, r.num_workers, r.timeout_s)))
  decode = lambda ids: task.decode_text(tokenizer, ids)
  experience = experience_config(config, tokenizer, model_config)
  steps = step_config(config, "sft" if star else "policy")
  return Run(workdir=workdir, mesh=mesh, model_config=model_config, params=params,
             tokenizer=tokenizer, data=data,
             optimizer=make_optimizer(optimizer_config(config)),
             step_config=steps,
             experience=experience, reward_fn=reward_fn, decode=decode,
             # One more size for the b_0 probes' prompt + suffix (`rollout._probe_success`).
             prompt_buckets=prompt_buckets(config.data.max_prompt_len) + (
                 (config.data.max_prompt_len + len(experience.suffix_tokens),)
                 if experience.num_probes else ()),
             star_selection=star.selection if star else None,
             answer_rows=answer_rows(config, tokenizer, steps),
             max_length=config.data.max_prompt_len + config.rollout.max_completion_len)
