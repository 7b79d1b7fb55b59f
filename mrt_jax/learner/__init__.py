"""The learner: GRPO-family losses, KL estimators and micro-batch-invariant aggregation."""

from mrt_jax.learner.aggregation import AGGREGATIONS, Normalizer, normalizer
from mrt_jax.learner.kl import KL_ESTIMATORS, kl_divergence
from mrt_jax.learner.losses import (POLICY_LOSSES, LossConfig, combine_metrics, policy_loss,
                                    sft_loss)

__all__ = [
    "AGGREGATIONS", "KL_ESTIMATORS", "LossConfig", "Normalizer", "POLICY_LOSSES",
    "combine_metrics", "kl_divergence", "normalizer", "policy_loss", "sft_loss",
]
