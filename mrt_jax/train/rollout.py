"""One RL step's experience: rollouts → segmentation → probes → J → progress → advantages.

Letters: B rollouts (P prompts × G samples, prompt-major), T tokens, N blocks (the paper's K),
N1 = N + 1 boundaries b_0..b_N, M probes per boundary (the paper's m).

The meta-prover μ is the policy itself (the paper's): a probe at boundary b_j of rollout i
continues the rollout's own KV cache (kept from generation, never re-prefilled) cut at
prompt_len + b_j, fed the termination suffix (which closes the thinking), and decodes a short
answer; J_j is the mean verdict of its M probes, or (`j_estimator="likelihood"`) the
probability that it writes the reference answer, scored by teacher forcing
(`mrt_jax.mrt.meta_prover`). J_0 uses the empty thinking (the cut right after the prompt).
Its prefix is the prompt alone, the same for the G rollouts of a prompt, so b_0 is estimated
once per prompt and that J_0 is shared by the whole group: the same estimate of μ's success on
the prompt, at 1/G of the cost.

A fixed meta-prover (`FixedProver`, config `probe.meta_prover`, e.g. the frozen warm start)
answers instead of the policy: the rollouts are prefilled into its own KV cache once per step
and its probes fork that cache, so J measures the traces alone and does not drift as RL
changes the policy's forced answers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mrt_jax.mrt.advantages import NEEDS_J, mrt_advantages
from mrt_jax.mrt.meta_prover import J_ESTIMATORS, AnswerTemplate, Cuts, ProverSettings
from mrt_jax.mrt.progress import progress_reward
from mrt_jax.mrt.segment import (SegmentConfig, Segmentation, end_of_thinking, segment,
                                 stack_segmentations)
from mrt_jax.sampling import Sampler

# How the advantage treats the last block of a completion that never closes its thinking (no
# end-of-thinking tag; the block then runs to the completion's end, which is no boundary the
# model wrote): "progress" credits it with the progress measured at that end, "outcome" makes
# its tokens an answer segment (the outcome advantage alone: no progress, no flat price).
OPEN_BLOCKS = ("progress", "outcome")

# (records, completion texts, completion token ids) -> (rewards f32 [B], stats dict).
RewardFn = Callable[[Sequence[dict], Sequence[str], Sequence[Sequence[int]]],
                    tuple[np.ndarray, dict]]


@dataclasses.dataclass(frozen=True)
class ExperienceConfig:
  """What one step samples and how it turns samples into advantages."""
  num_generations: int              # G rollouts per prompt (one advantage group)
  max_completion_len: int           # token budget of a rollout
  temperature: float                # rollout sampling temperature
  top_p: float                      # rollout nucleus
  num_probes: int                   # m probes per boundary; 0 = no probes (outcome-only RL)
  probe_temperature: float
  probe_top_p: float
  probe_max_answer_len: int         # tokens a probe may write after the suffix
  suffix_tokens: tuple[int, ...]    # the termination suffix, tokenized
  stop_token_ids: tuple[int, ...]   # end of sequence
  estimator: str                    # advantage estimator (mrt_jax.mrt.ESTIMATORS)
  alpha: float                      # α, weight of progress
  outcome_norm: str = "grpo"        # group normalization of the outcome part
  progress_norm: str = "none"       # group normalization of progress (mrt; PROGRESS_NORMS)
  flat_threshold: float = 0.02      # τ of the flat_price norms: a block with p <= τ is flat
  open_block: str = "progress"      # an unclosed completion's last block: OPEN_BLOCKS
  std: str = "unbiased"             # group std: "unbiased" (G − 1) or "biased" (G)
  eps: float = 1e-6                 # ε added to the group std
  segment: SegmentConfig = SegmentConfig()
  j_estimator: str | None = "sampled"  # J of the meta-prover (meta_prover.J_ESTIMATORS); None:
                                       # J is not measured (outcome-only estimators)
  answer: AnswerTemplate | None = None  # the reference answer μ should write (likelihood)
  task_prover: Callable[[Mapping[str, Any], str], float] | None = None  # J of the thinking
                                       # text (j_estimator "task"; mrt_jax.rewards task provers)

  def __post_init__(self):
    if self.open_block not in OPEN_BLOCKS:
      raise ValueError(f"open_block={self.open_block!r} is unknown; expected one of "
                       f"{list(OPEN_BLOCKS)}")
    if self.open_block != "progress" and self.estimator != "mrt":
      raise ValueError(f"open_block={self.open_block!r} with estimator={self.estimator!r}: "
                       "only 'mrt' credits blocks with progress; expected open_block='progress'")
    if self.j_estimator is not None and self.j_estimator not in J_ESTIMATORS:
      raise ValueError(f"j_estimator={self.j_estimator!r} is unknown; expected one of "
                       f"{sorted(J_ESTIMATORS)} or None")
    if self.estimator in NEEDS_J and not self.measures_j:
      raise ValueError(f"estimator={self.estimator!r} reads the meta-prover's J, which this "
                       f"config does not measure (j_estimator={self.j_estimator!r}, num_probes="
                       f"{self.num_probes}); expected num_probes >= 1 or j_estimator="
                       "'likelihood'")
    if self.j_estimator == "likelihood" and self.answer is None:
      raise ValueError("j_estimator='likelihood' needs the reference answer's template "
                       "(answer=AnswerTemplate(...)); none was given")
    if (self.j_estimator == "task") != (self.task_prover is not None):
      raise ValueError(f"task_prover is {'missing' if self.task_prover is None else 'given'}; "
                       "expected it exactly when j_estimator='task'")

  @property
  def measures_j(self) -> bool:
    """Whether a step estimates J at every boundary (sampled answers need m >= 1)."""
    return self.j_estimator in ("likelihood", "task") or (self.j_estimator == "sampled" and
                                                          self.num_probes > 0)


@dataclasses.dataclass
class Experience:
  """Everything the learner and the logs need from one step's sampling."""
  prompts: list[list[int]]           # [B] prompt tokens (each prompt repeated G times)
  completions: list[list[int]]       # [B] generated tokens
  sampler_logprobs: list[np.ndarray]  # [B] aligned with completions
  texts: list[str]                   # [B] decoded completions
  outcome_B: np.ndarray              # f32 0/1 verifier reward of the full trace
  segments: list[Segmentation]
  success_BxN1: np.ndarray           # J_j per boundary (0 where masked)
  boundary_mask_BxN1: np.ndarray
  progress_BxN: np.ndarray           # p_j = J_j − J_{j−1}
  advantages_BxT: np.ndarray         # over completion tokens (T = longest completion)
  stats: dict[str, float]


@dataclasses.dataclass(frozen=True)
class FixedProver:
  """A fixed meta-prover: its params (the policy's architecture) and the sampler it runs on,
  whose prompt buckets hold whole rollouts (prompt + completion), since it prefills them."""
  sampler: Sampler
  params: Any


def token_pieces(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> list[str]:
  """Per-token texts of a completion, as the segmenter reads them."""
  return [decode([t]) for t in ids]


_NO_ANSWERS = {"num_probes": 0, "answers": 0, "answer_tokens": 0}


def _probe_success(sampler: Sampler, params, cache, segs, prompts, completions, records, cfg,
                   reward_fn: RewardFn, decode, seed: int, stats: dict):
  """J [B, N1] from the meta-prover `params` at every boundary b_0..b_N of every rollout, whose
  prompt + tokens row i of `cache` holds (row i's completion: `completions[i]`; an estimator
  that reads text gets each cut's thinking decoded from it, and no model or cache).

  Boundaries b_1..b_N fork the rollouts' cache (one batch). b_0's prefix is the prompt alone,
  the same for a group's G rollouts, so it is estimated once per prompt and its J_0 shared.
  With an estimator that wants it apart (`meta_prover.JEstimator.heads_apart`) and when
  prompt + suffix fits the sampler's prompt buckets, those P cuts run from prompt + suffix as
  their own small batch (m sampled answers on one trunk row would widen the fork grid for every
  row). Otherwise they join the fork, each on the group's rollout with the fewest cuts.
  """
  stack = stack_segmentations(segs)
  B, N1 = stack.boundaries_BxN1.shape
  G = cfg.num_generations
  where = [(i, j) for i in range(B) for j in range(1, N1) if stack.boundary_mask_BxN1[i, j]]
  sources = [i for i, _ in where]
  boundaries = [len(prompts[i]) + int(stack.boundaries_BxN1[i, j]) for i, j in where]
  leaders = list(range(0, B, G))
  estimator = J_ESTIMATORS[cfg.j_estimator]
  settings = ProverSettings(cfg.suffix_tokens, cfg.num_probes, cfg.probe_max_answer_len,
                            cfg.probe_temperature, cfg.probe_top_p, cfg.stop_token_ids,
                            cfg.answer, cfg.task_prover)
  run = lambda cuts, s: estimator.fn(sampler, params, cache, cuts, settings, verdicts,
                                     decode, s)

  def verdicts(recs, texts, ids):
    rewards, probe_stats = reward_fn(recs, texts, ids)
    for k, v in probe_stats.items():  # summed over the calls of a step (counts and lists)
      stats[f"probe_{k}"] = stats[f"probe_{k}"] + v if f"probe_{k}" in stats else v
    return rewards

  longest = max(len(prompts[i]) for i in leaders) + len(cfg.suffix_tokens)
  if estimator.heads_apart and longest <= max(sampler.prompt_buckets):
    heads = Cuts(leaders, [len(prompts[i]) for i in leaders], [records[i] for i in leaders],
                 prompts=[prompts[i] for i in leaders])
    j0_P, head_stats = run(heads, seed + 1)
  else:
    load_B = stack.boundary_mask_BxN1[:, 1:].sum(axis=1)
    hosts = [i + int(np.argmin(load_B[i:i + G])) for i in leaders]
    sources = hosts + sources
    boundaries = [len(prompts[h]) for h in hosts] + boundaries
    j0_P, head_stats = None, _NO_ANSWERS
  thinking = ([decode(completions[i][:b - len(prompts[i])]) for i, b in zip(sources, boundaries)]
              if estimator.reads_text else None)
  j_U, fork_stats = (run(Cuts(sources, boundaries, [records[i] for i in sources],
                              thinking=thinking), seed)
                     if sources else (np.zeros(0), _NO_ANSWERS))
  if j0_P is None:
    j0_P, j_U = j_U[:len(leaders)], j_U[len(leaders):]
  success_BxN1 = np.zeros((B, N1), np.float32)
  success_BxN1[:, 0] = np.repeat(j0_P, G)  # shared J_0
  if where:
    success_BxN1[tuple(np.array(where).T)] = j_U
  total = lambda k: head_stats[k] + fork_stats[k]
  stats["num_probes"] = total("num_probes")  # sampled answers (0 under the likelihood prover)
  stats["probe_answers"] = total("answers")  # answers sampled or scored: J measurements made
  stats["probe_tokens_mean"] = total("answer_tokens") / max(total("answers"), 1)
  return np.where(stack.boundary_mask_BxN1, success_BxN1, 0.0).astype(np.float32), stack


def collect(sampler: Sampler, params, prompts: Sequence[Sequence[int]],
            records: Sequence[dict], cfg: ExperienceConfig, reward_fn: RewardFn,
            decode: Callable[[Sequence[int]], str], seed: int,
            prover: FixedProver | None = None) -> Experience:
  """Samples G rollouts per prompt, probes them, and computes per-token advantages.

  `prover`: a fixed meta-prover whose forced answers give J; None: the policy's own (the
  paper's μ).
  """
  G = cfg.num_generations
  probing = cfg.measures_j
  if prover is not None and not probing:
    raise ValueError(f"a fixed meta-prover was given, but estimator={cfg.estimator!r} with "
                     f"j_estimator={cfg.j_estimator!r} measures no J for it to answer")
  model_j = probing and J_ESTIMATORS[cfg.j_estimator].uses_model
  if prover is not None and not model_j:
    raise ValueError(f"a fixed meta-prover was given, but j_estimator={cfg.j_estimator!r} "
                     "runs no model")
  own_cache = model_j and prover is None
  t0 = time.perf_counter()
  result = sampler.generate(params, prompts, max_new_tokens=cfg.max_completion_len,
                            temperature=cfg.temperature, top_p=cfg.top_p,
                            stop_token_ids=cfg.stop_token_ids, num_samples=G, seed=seed,
                            keep_cache=own_cache)
  rows = [list(p) for p in prompts for _ in range(G)]
  recs = [r for r in records for _ in range(G)]
  texts = [decode(t) for t in result.tokens]
  t1 = time.perf_counter()
  outcome_B, stats = reward_fn(recs, texts, result.tokens)
  t2 = time.perf_counter()
  outcome_B = np.asarray(outcome_B, np.float32)
  stats = {f"verify_{k}": v for k, v in stats.items()}
  segs = [segment(t, token_pieces(decode, t), cfg.segment, cfg.stop_token_ids)
          for t in result.tokens]
  T = max(1, max(len(t) for t in result.tokens))
  t3 = time.perf_counter()
  if probing:
    if own_cache or not model_j:  # (a task prover reads no cache: result.cache is None)
      mu = (sampler, params, result.cache)
    else:  # the fixed meta-prover reads the rollouts into its own cache
      mu = (prover.sampler, prover.params,
            prover.sampler.prefill(prover.params, [r + list(t) for r, t in
                                                   zip(rows, result.tokens)]))
    success, stack = _probe_success(*mu, segs, rows, result.tokens, recs, cfg, reward_fn,
                                    decode, seed + 1, stats)
    block_ids_BxT = np.zeros((len(rows), T), np.int32)
    block_ids_BxT[:, :stack.token_block_ids_BxT.shape[1]] = stack.token_block_ids_BxT[:, :T]
    progress = np.asarray(progress_reward(success, stack.num_blocks_B))
    if cfg.open_block == "outcome":
      block_ids_BxT = open_blocks_as_answer(block_ids_BxT, segs, texts, cfg.segment.end_think)
    boundary_mask = np.asarray(stack.boundary_mask_BxN1)
  else:
    stats["num_probes"] = stats["probe_answers"] = 0
    success = np.zeros((len(rows), 1), np.float32)
    boundary_mask = np.zeros((len(rows), 1), bool)
    progress = np.zeros((len(rows), 1), np.float32)
    block_ids_BxT = np.zeros((len(rows), T), np.int32)
  mask_BxT = np.zeros((len(rows), T), bool)
  for i, t in enumerate(result.tokens):
    mask_BxT[i, :len(t)] = True
  extra = ({"success": success} if cfg.estimator in ("termination", "termination_dense")
           else {})
  advantages = mrt_advantages(outcome_B, progress, block_ids_BxT, mask_BxT, group_size=G,
                              alpha=cfg.alpha, estimator=cfg.estimator,
                              eps=cfg.eps, std=cfg.std, outcome_norm=cfg.outcome_norm,
                              progress_norm=cfg.progress_norm,
                              flat_threshold=cfg.flat_threshold, **extra)
  t4 = time.perf_counter()
  stats.update(_summaries(outcome_B, success, boundary_mask, progress, segs, result))
  stats.update(time_rollout_s=t1 - t0, time_verify_s=t2 - t1, time_segment_s=t3 - t2,
               time_probes_s=t4 - t3)
  return Experience(rows, result.tokens, result.logprobs, texts, outcome_B, segs, success,
                    boundary_mask, progress, np.asarray(advantages), stats)


def open_blocks_as_answer(block_ids_BxT: np.ndarray, segs: Sequence[Segmentation],
                          texts: Sequence[str], end_think: str) -> np.ndarray:
  """Block ids with the last block of every completion that never closes its thinking (no
  `end_think` in its text) turned into answer-segment tokens (id 0); other rows unchanged."""
  out_BxT = np.array(block_ids_BxT, copy=True)
  for i, (seg, text) in enumerate(zip(segs, texts)):
    if seg.num_blocks and end_of_thinking(text, end_think) < 0:
      out_BxT[i][out_BxT[i] == seg.num_blocks] = 0
  return out_BxT


def _summaries(outcome_B, success, boundary_mask, progress, segs, result) -> dict[str, Any]:
  real_blocks = np.concatenate([progress[i, :s.num_blocks] for i, s in enumerate(segs)] or
                               [np.zeros(0)])
  out = {
      "reward_mean": float(outcome_B.mean()),
      "completion_tokens_mean": float(np.mean([len(t) for t in result.tokens])),
      "stopped_fraction": float(np.mean([r == "stop" for r in result.finish_reasons])),
      "blocks_mean": float(np.mean([s.num_blocks for s in segs])),
      "progress_mean": float(real_blocks.mean()) if real_blocks.size else 0.0,
      "progress_std": float(real_blocks.std()) if real_blocks.size else 0.0,
  }
  for j in range(min(success.shape[1], 8)):  # J at the first boundaries, averaged over rows.
    m = boundary_mask[:, j]
    if m.any():
      out[f"J_{j}"] = float(success[m, j].mean())
  return out


def learner_batch(exp: Experience, length: int) -> dict[str, np.ndarray]:
  """Right-padded [B, length] arrays aligned with prompt + completion tokens (learner layout)."""
  B = len(exp.prompts)
  tokens = np.zeros((B, length), np.int32)
  mask = np.zeros((B, length), np.float32)
  adv = np.zeros((B, length), np.float32)
  sampler_lp = np.zeros((B, length), np.float32)
  for i, (p, c) in enumerate(zip(exp.prompts, exp.completions)):
    n = len(p) + len(c)
    if n > length:
      raise ValueError(f"rollout {i} has {n} tokens, more than the learner length {length}")
    tokens[i, :n] = p + c
    mask[i, len(p):n] = 1.0
    adv[i, len(p):n] = exp.advantages_BxT[i, :len(c)]
    sampler_lp[i, len(p):n] = exp.sampler_logprobs[i][:len(c)]
  return {"tokens": tokens, "mask": mask, "advantages": adv, "sampler_logprobs": sampler_lp}
