"""mrt_jax: Meta Reinforcement Fine-Tuning (MRT) for LLM reasoners in JAX."""

from mrt_jax import models

__version__ = "0.1.0"

__all__ = ["models"]
