"""Per-token log-probabilities and entropies of sequences under the policy.

Arrays are aligned with the token array: entry t is about token t given tokens[:t]; entry 0 (no
context) is 0. Padding positions are whatever the model says; callers mask them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.models import ModelConfig, forward
from mrt_jax.models.sharding import TRAIN_RULES, Rules


def token_logprobs(config: ModelConfig, params, tokens_BxT: jax.Array, *, temperature: float = 1.0,
                   compute_dtype=None, rules: Rules = TRAIN_RULES,
                   ) -> tuple[jax.Array, jax.Array]:
  """log π(tokens[t] | tokens[:t]) and the entropy of that distribution, f32 [B, T].

  `temperature` divides the logits first, matching the sampler's log-probs (the distribution the
  tokens were drawn from before top-k/top-p truncation).
  """
  logits_BxTxV, _ = forward(config, params, tokens_BxT[:, :-1], compute_dtype=compute_dtype,
                            rules=rules)
  logits_BxTxV = logits_BxTxV.astype(jnp.float32) / temperature
  logz_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
  picked_BxT = jnp.take_along_axis(logits_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
  logp_BxT = picked_BxT - logz_BxT
  probs_BxTxV = jnp.exp(logits_BxTxV - logz_BxT[..., None])
  entropy_BxT = logz_BxT - jnp.sum(probs_BxTxV * logits_BxTxV, axis=-1)
  zero_Bx1 = jnp.zeros((tokens_BxT.shape[0], 1), jnp.float32)
  return (jnp.concatenate([zero_Bx1, logp_BxT], axis=1),
          jnp.concatenate([zero_Bx1, entropy_BxT], axis=1))
