"""Loud failures: what would otherwise look like a weak model.

- A verifier that fails (raises, returns a bad value, times out) costs a sample its reward; above
  `reward.max_error_rate` of a step's verifier calls the run stops with the first traceback
  (`check_verifier_errors`).
- A step whose advantages are all zero has a zero policy-gradient update; it is counted in the
  metrics (`zero_advantage_metrics`) and warned about when it persists (`ZeroAdvantageWatch`).
- The segmentation settings are printed once with the blocks of the first sampled trace
  (`describe_segmentation`): the defaults (built for R1 traces) may merge a task's blocks.

The decisions read only numbers that are the same on every process (counts are all-gathered), so
every process stops or warns at the same step.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from mrt_jax.mrt.segment import Segmentation, SegmentConfig


class VerifierFailed(RuntimeError):
  """A step's verifier calls failed at a rate above `reward.max_error_rate`."""


def check_verifier_errors(stats: Mapping, num_calls: int, max_error_rate: float,
                          verifier: str) -> None:
  """Raises `VerifierFailed` when failed calls / `num_calls` exceeds `max_error_rate`.

  Args:
    stats: a step's experience stats (`verify_*` for rollouts, `probe_*` for probes).
    num_calls: verifier calls of the step (rollouts + probe answers).
    max_error_rate: `reward.max_error_rate`.
    verifier: the verifier's name, for the message.
  """
  failed = sum(int(stats.get(f"{kind}_{k}", 0)) for kind in ("verify", "probe")
               for k in ("errors", "timeouts"))
  if num_calls == 0 or failed / num_calls <= max_error_rate:
    return
  details = [d for kind in ("verify", "probe") for _, d in stats.get(f"{kind}_details", ())]
  first = details[0] if details else "(the failures were on other processes' rows)"
  raise VerifierFailed(
      f"verifier {verifier!r} failed on {failed} of {num_calls} calls this step "
      f"({failed / num_calls:.0%}; rollouts: {stats.get('verify_errors', 0)} errors, "
      f"{stats.get('verify_timeouts', 0)} timeouts; probes: {stats.get('probe_errors', 0)} "
      f"errors, {stats.get('probe_timeouts', 0)} timeouts), above "
      f"reward.max_error_rate={max_error_rate}. The first failure:\n{first}")


def zero_advantage_metrics(advantages_BxT: np.ndarray, group_size: int) -> dict[str, float]:
  """`zero_advantage_step` (1 when every advantage of the step is zero) and
  `zero_advantage_groups` (the fraction of groups whose advantages are all zero)."""
  zero_G = ~np.any(advantages_BxT.reshape(-1, group_size * advantages_BxT.shape[1]) != 0, axis=1)
  return {"zero_advantage_step": float(zero_G.all()),
          "zero_advantage_groups": float(zero_G.mean())}


@dataclasses.dataclass
class ZeroAdvantageWatch:
  """Warns once per streak of `warn_after` consecutive all-zero-advantage steps (0: never)."""
  warn_after: int
  warn: Callable[[str], None] = print
  streak: int = 0

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    self.streak = self.streak + 1 if metrics["zero_advantage_step"] else 0
    if self.warn_after and self.streak == self.warn_after:
      self.warn(
          f"WARNING: steps {step - self.streak + 1}..{step} had all-zero advantages (in every "
          "group all outcomes were equal and no block made progress), so their policy-gradient "
          f"update is zero. reward_mean={metrics.get('reward_mean', float('nan')):.3g}: "
          "0 means the verifier accepts nothing (check samples in TensorBoard, "
          "verify_errors, the answer format), 1 that every problem is already solved.")


def _short(text: str, max_chars: int) -> str:
  if len(text) > max_chars:
    text = f"{text[:max_chars // 2]} [...] {text[-max_chars // 2:]}"
  return repr(text)


def describe_segmentation(config: SegmentConfig, pieces: Sequence[str], seg: Segmentation,
                          max_chars: int = 240) -> str:
  """The segmentation settings and the blocks of one trace (per-token text `pieces`), each
  block's text shortened to about `max_chars` characters."""
  lines = [f"segmentation: {config}", f"first sampled trace: {seg.num_blocks} blocks, "
           f"thinking ends at token {seg.think_end} of {seg.num_tokens}"]
  start = 0
  for j, end in enumerate(seg.boundaries, start=1):
    lines.append(f"  block {j} (tokens {start}..{end}): "
                 f"{_short(''.join(pieces[start:end]), max_chars)}")
    start = end
  lines.append(f"  answer (tokens {start}..{seg.num_tokens}): "
               f"{_short(''.join(pieces[start:]), max_chars)}")
  return "\n".join(lines)
