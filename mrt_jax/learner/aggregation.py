"""Loss aggregations over tokens, written as sums with a global normalizer.

Letters: B sequences, T tokens (of this micro-batch), as in `mrt_jax.models.config`.

Every aggregation is a weighted SUM over the tokens it is given,
    agg(x) = Σ_{b,t} w_{b,t} · x_{b,t},   w_{b,t} = m_{b,t} · c_b / Z,
where m is the token mask, c_b depends only on row b (its own token count) and Z depends only on
a `Normalizer` computed ONCE over the whole global batch (all micro-batches, all devices). Hence
for any split of the batch into row blocks, Σ_micro agg(x_micro) = agg(x_full): a learner that
sums per-micro-batch losses (and gradients) gets exactly the full-batch value, whatever the
number of micro-batches or devices. Rows must not be split along T.

  token_mean               Σ m·x / Σ_global m                   (DAPO, Yu et al. 2025)
  seq_mean_token_mean      (1/S) Σ_b Σ_t m·x / |o_b|            (GRPO, Shao et al. 2024, eq. 3)
  seq_mean_token_sum_norm  (1/S) Σ_b Σ_t m·x / L_max            (Dr. GRPO, Liu et al. 2025)
with S the global number of sequences that have at least one unmasked token (all-padding rows do
not count, so padding a micro-batch with empty rows changes nothing) and |o_b| = Σ_t m_{b,t}.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Normalizer(NamedTuple):
  """Global-batch counts (f32 scalars; a pytree, so it can be traced, sharded or donated)."""
  num_tokens: jax.Array  # Σ_global m
  num_seqs: jax.Array    # S, sequences with at least one unmasked token


def normalizer(mask_BxT: jax.Array) -> Normalizer:
  """The `Normalizer` of a batch; call it on the WHOLE global batch's mask (bool or 0/1)."""
  m_BxT = (jnp.asarray(mask_BxT) != 0).astype(jnp.float32)
  return Normalizer(num_tokens=jnp.sum(m_BxT),
                    num_seqs=jnp.sum((jnp.sum(m_BxT, axis=1) > 0).astype(jnp.float32)))


def _safe(z: jax.Array) -> jax.Array:
  """A count used as a divisor; an empty batch sums to 0, so dividing by 1 keeps it 0."""
  return jnp.maximum(z, 1.0)


def _masked(x_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """x where the mask (bool or 0/1) is set, else 0."""
  return jnp.where(mask_BxT != 0, x_BxT, jnp.zeros_like(x_BxT))


def token_mean(x_BxT, mask_BxT, norm: Normalizer, max_len: int | None) -> jax.Array:
  del max_len
  return jnp.sum(_masked(x_BxT, mask_BxT)) / _safe(norm.num_tokens)


def seq_mean_token_mean(x_BxT, mask_BxT, norm: Normalizer, max_len: int | None) -> jax.Array:
  del max_len
  len_B = jnp.sum((mask_BxT != 0).astype(jnp.float32), axis=1)
  return jnp.sum(jnp.sum(_masked(x_BxT, mask_BxT), axis=1) / _safe(len_B)) / _safe(norm.num_seqs)


def seq_mean_token_sum_norm(x_BxT, mask_BxT, norm: Normalizer, max_len: int | None
                            ) -> jax.Array:
  return jnp.sum(_masked(x_BxT, mask_BxT)) / (max_len * _safe(norm.num_seqs))


Aggregation = Callable[[jax.Array, jax.Array, Normalizer, "int | None"], jax.Array]

AGGREGATIONS: dict[str, Aggregation] = {
    "token_mean": token_mean,
    "seq_mean_token_mean": seq_mean_token_mean,
    "seq_mean_token_sum_norm": seq_mean_token_sum_norm,
}
