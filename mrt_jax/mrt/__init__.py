"""The MRT method: episode segmentation, the progress reward and the advantage estimators.

Public API:
  seg = segment(token_ids, decode, SegmentConfig(...))       # token-space blocks of one trace
  batch = stack_segmentations([seg, ...])                      # padded numpy arrays for jit
  J = success_from_verdicts(verdicts, boundary_mask)         # [B, N+1, M] -> [B, N+1]
  progress = progress_reward(J, num_blocks)                   # [B, N+1], [B] -> [B, N]
  adv = mrt_advantages(outcome, progress, token_block_ids, token_mask,
                       group_size=G, alpha=α, estimator="mrt")  # -> [B, T]
"""

from mrt_jax.mrt.advantages import (ESTIMATORS, OUTCOME_NORMS, PROGRESS_NORMS, AdvantageConfig,
                                    EstimatorInputs, mrt_advantages)
from mrt_jax.mrt.progress import progress_reward, success_from_verdicts
from mrt_jax.mrt.segment import (DEFAULT_MARKERS, SEGMENTERS, SegmentBatch, SegmentConfig,
                                 Segmentation, segment, stack_segmentations, token_pieces)

__all__ = [
    "AdvantageConfig", "DEFAULT_MARKERS", "ESTIMATORS", "EstimatorInputs", "OUTCOME_NORMS",
    "PROGRESS_NORMS", "SEGMENTERS", "SegmentBatch", "SegmentConfig", "Segmentation", "mrt_advantages",
    "progress_reward", "segment", "stack_segmentations", "success_from_verdicts", "token_pieces",
]
