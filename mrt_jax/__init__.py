"""mrt_jax: Meta Reinforcement Fine-Tuning (MRT) for LLM reasoners in JAX."""

from mrt_jax import models
from mrt_jax import mrt
from mrt_jax import sampling
from mrt_jax.mrt import mrt_advantages, progress_reward

__version__ = "0.1.0"

__all__ = ["models", "mrt", "mrt_advantages", "progress_reward", "sampling"]
