"""Per-token KL estimators of KL(π_θ ‖ π_ref), registered by name in `KL_ESTIMATORS`.

With δ = log π_θ(y_t) − log π_ref(y_t) on the sampled token (Schulman 2020, "Approximating KL
divergence"):
  k1 = δ                    unbiased, high variance, can be negative
  k2 = δ² / 2               biased, low variance
  k3 = e^{−δ} + δ − 1       unbiased, low variance, >= 0 (GRPO, Shao et al. 2024, eq. 4)
All are 0 when π_θ = π_ref. Gradients flow through log π_θ only (π_ref is data).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def k1(delta: jax.Array) -> jax.Array:
  return delta


def k2(delta: jax.Array) -> jax.Array:
  return 0.5 * delta * delta


def k3(delta: jax.Array) -> jax.Array:
  # expm1 keeps e^{−δ} − 1 accurate for small δ, where the estimate is the difference of
  # two nearly equal numbers.
  return jnp.expm1(-delta) + delta


KL_ESTIMATORS: dict[str, Callable[[jax.Array], jax.Array]] = {"k1": k1, "k2": k2, "k3": k3}


def kl_divergence(logprobs: jax.Array, ref_logprobs: jax.Array, estimator: str = "k3"
                  ) -> jax.Array:
  """Per-token KL estimate, same shape as `logprobs`.

  Args:
    logprobs: log π_θ of the sampled tokens.
    ref_logprobs: log π_ref of the same tokens.
    estimator: a key of `KL_ESTIMATORS`.
  """
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"KL estimator {estimator!r} is unknown; expected one of "
                     f"{sorted(KL_ESTIMATORS)}")
  return KL_ESTIMATORS[estimator](logprobs - jax.lax.stop_gradient(ref_logprobs))
