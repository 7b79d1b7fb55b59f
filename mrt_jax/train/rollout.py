"""One RL step's experience: rollouts → segmentation → probes → J → progress → advantages.

Letters: B rollouts (P prompts × G samples, prompt-major), T tokens, N blocks (the paper's K),
N1 = N + 1 boundaries b_0..b_N, M probes per boundary (the paper's m).

The meta-prover μ is the policy itself: a probe at boundary b_j of rollout i continues the
rollout's own KV cache (kept from generation, never re-prefilled) cut at prompt_len + b_j, fed
the termination suffix (which closes the thinking), and decodes a short answer; J_j is the
mean verdict of its M probes. J_0 uses the empty thinking (the cut right after the prompt).
Its prefix is the prompt alone, the same for the G rollouts of a prompt, so b_0 is probed once
per prompt (from prompt + suffix, a short prefill) and that J_0 is shared by the whole group: the
same estimate of μ's success on the prompt, at 1/G of the probes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np

from mrt_jax.mrt.advantages import mrt_advantages
from mrt_jax.mrt.progress import progress_reward, success_from_verdicts
from mrt_jax.mrt.segment import (SegmentConfig, Segmentation, segment, stack_segmentations)
from mrt_jax.sampling import Probe, Sampler

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
  std: str = "unbiased"             # group std: "unbiased" (G − 1) or "biased" (G)
  eps: float = 1e-6                 # ε added to the group std
  segment: SegmentConfig = SegmentConfig()


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


def token_pieces(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> list[str]:
  """Per-token texts of a completion, as the segmenter reads them."""
  return [decode([t]) for t in ids]


def _probe_success(sampler: Sampler, params, result, segs, prompts, records, cfg,
                   reward_fn: RewardFn, decode, seed: int, stats: dict):
  """J [B, N1] from M forced-answer probes at every boundary b_0..b_N of every rollout.

  Boundaries b_1..b_N fork the rollouts' cache (one batch). b_0's prefix is the prompt alone,
  the same for a group's G rollouts, so it is probed once per prompt and its J_0 shared. When
  prompt + suffix fits the sampler's prompt buckets, those P probes decode as their own small
  batch from prompt + suffix (a prompt-length prefill), so they do not widen the fork grid (its
  rows per trunk row follow the busiest rollout; one more probe on G rows of B would pad every
  trunk row). Otherwise they join the fork, each on the group's rollout with the fewest probes.
  """
  stack = stack_segmentations(segs)
  B, N1 = stack.boundaries_BxN1.shape
  G, M = cfg.num_generations, cfg.num_probes
  suffix = list(cfg.suffix_tokens)
  probes, where = [], []
  for i in range(B):
    for j in range(1, N1):
      if stack.boundary_mask_BxN1[i, j]:
        boundary = len(prompts[i]) + int(stack.boundaries_BxN1[i, j])
        probes.append(Probe(i, boundary, cfg.suffix_tokens, M))
        where.append((i, j))
  kwargs = dict(max_new_tokens=cfg.probe_max_answer_len, temperature=cfg.probe_temperature,
                top_p=cfg.probe_top_p, stop_token_ids=cfg.stop_token_ids)
  leaders = list(range(0, B, G))
  if max(len(prompts[i]) for i in leaders) + len(suffix) <= max(sampler.prompt_buckets):
    answers = sampler.generate(params, [list(prompts[i]) + suffix for i in leaders],
                               num_samples=M, seed=seed + 1, **kwargs).tokens
    forked = probes
  else:
    load_B = stack.boundary_mask_BxN1[:, 1:].sum(axis=1)
    hosts = [i + int(np.argmin(load_B[i:i + G])) for i in leaders]
    forked = [Probe(h, len(prompts[h]), cfg.suffix_tokens, M) for h in hosts] + probes
    answers = []
  if forked:
    answers += sampler.fork(params, result.cache, forked, seed=seed, **kwargs).tokens
  suffix_text = decode(suffix)
  rec = [records[i] for i in leaders + [i for i, _ in where] for _ in range(M)]
  rewards, probe_stats = reward_fn(rec, [suffix_text + decode(t) for t in answers],
                                   [suffix + t for t in answers])
  rewards_XxM = np.asarray(rewards, np.float32).reshape(-1, M)
  verdicts_BxN1xM = np.zeros((B, N1, M), np.float32)
  verdicts_BxN1xM[:, 0] = np.repeat(rewards_XxM[:len(leaders)], G, axis=0)  # shared J_0
  if probes:
    verdicts_BxN1xM[tuple(np.array(where).T)] = rewards_XxM[len(leaders):]
  stats.update({f"probe_{k}": v for k, v in probe_stats.items()})
  stats["probe_tokens_mean"] = float(np.mean([len(t) for t in answers]))
  stats["num_probes"] = len(answers)
  success = success_from_verdicts(verdicts_BxN1xM, stack.boundary_mask_BxN1)
  return np.asarray(success), stack


def collect(sampler: Sampler, params, prompts: Sequence[Sequence[int]],
            records: Sequence[dict], cfg: ExperienceConfig, reward_fn: RewardFn,
            decode: Callable[[Sequence[int]], str], seed: int) -> Experience:
  """Samples G rollouts per prompt, probes them, and computes per-token advantages."""
  G = cfg.num_generations
  probing = cfg.num_probes > 0
  t0 = time.perf_counter()
  result = sampler.generate(params, prompts, max_new_tokens=cfg.max_completion_len,
                            temperature=cfg.temperature, top_p=cfg.top_p,
                            stop_token_ids=cfg.stop_token_ids, num_samples=G, seed=seed,
                            keep_cache=probing)
  rows = [list(p) for p in prompts for _ in range(G)]
  recs = [r for r in records for _ in range(G)]
  texts = [decode(t) for t in result.tokens]
  t1 = time.perf_counter()
  outcome_B, stats = reward_fn(recs, texts, result.tokens)
  t2 = time.perf_counter()
  outcome_B = np.asarray(outcome_B, np.float32)
  stats = {f"verify_{k}": v for k, v in stats.items()}
  segs = [segment(t, token_pieces(decode, t), cfg.segment) for t in result.tokens]
  T = max(1, max(len(t) for t in result.tokens))
  t3 = time.perf_counter()
  if probing:
    success, stack = _probe_success(sampler, params, result, segs, rows, recs,
                                    cfg, reward_fn, decode, seed + 1, stats)
    block_ids_BxT = np.zeros((len(rows), T), np.int32)
    block_ids_BxT[:, :stack.token_block_ids_BxT.shape[1]] = stack.token_block_ids_BxT[:, :T]
    progress = np.asarray(progress_reward(success, stack.num_blocks_B))
    boundary_mask = np.asarray(stack.boundary_mask_BxN1)
  else:
    stats["num_probes"] = 0
    success = np.zeros((len(rows), 1), np.float32)
    boundary_mask = np.zeros((len(rows), 1), bool)
    progress = np.zeros((len(rows), 1), np.float32)
    block_ids_BxT = np.zeros((len(rows), T), np.int32)
  mask_BxT = np.zeros((len(rows), T), bool)
  for i, t in enumerate(result.tokens):
    mask_BxT[i, :len(t)] = True
  advantages = mrt_advantages(outcome_B, progress, block_ids_BxT, mask_BxT, group_size=G,
                              alpha=cfg.alpha, estimator=cfg.estimator,
                              eps=cfg.eps, std=cfg.std, outcome_norm=cfg.outcome_norm,
                              progress_norm=cfg.progress_norm)
  t4 = time.perf_counter()
  stats.update(_summaries(outcome_B, success, boundary_mask, progress, segs, result))
  stats.update(time_rollout_s=t1 - t0, time_verify_s=t2 - t1, time_segment_s=t3 - t2,
               time_probes_s=t4 - t3)
  return Experience(rows, result.tokens, result.logprobs, texts, outcome_B, segs, success,
                    boundary_mask, progress, np.asarray(advantages), stats)


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
