"""Per-token log-probabilities and entropies of sequences under the policy.

Arrays are aligned with the token array: entry t is about token t given tokens[:t]; entry 0 (no
context) is 0. Padding positions are whatever the model says; callers mask them.

Memory: [B, T, V] logits of long traces do not fit (16K tokens × 152K vocab is 10 GB per row in
f32), so the vocab projection runs `chunk` positions at a time under `jax.checkpoint`: the
forward keeps only [B, chunk, V] at once and the backward recomputes each chunk's logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mrt_jax.models import ModelConfig, forward
from mrt_jax.models.sharding import TRAIN_RULES, Rules
from mrt_jax.models.transformer import unembed


def token_logprobs(config: ModelConfig, params, tokens_BxT: jax.Array, *, temperature: float = 1.0,
                   compute_dtype=None, rules: Rules = TRAIN_RULES, chunk: int = 512,
                   remat: bool = True) -> tuple[jax.Array, jax.Array]:
  """log π(tokens[t] | tokens[:t]) and the entropy of that distribution, f32 [B, T].

  `temperature` divides the logits first, matching the sampler's log-probs (the distribution the
  tokens were drawn from before top-k/top-p truncation). `remat` recomputes each layer in the
  backward pass (see `models.forward`); it changes memory, not values.
  """
  B, T = tokens_BxT.shape
  hidden_BxTxD, _ = forward(config, params, tokens_BxT[:, :-1], compute_dtype=compute_dtype,
                            rules=rules, return_hidden=True, remat=remat)
  targets_BxT = tokens_BxT[:, 1:]
  C = max(1, min(chunk, T - 1))
  pad = -(T - 1) % C
  hidden_BxTxD = jnp.pad(hidden_BxTxD, ((0, 0), (0, pad), (0, 0)))
  targets_BxT = jnp.pad(targets_BxT, ((0, 0), (0, pad)))
  n = (T - 1 + pad) // C
  hidden_NxBxCxD = hidden_BxTxD.reshape(B, n, C, -1).swapaxes(0, 1)
  targets_NxBxC = targets_BxT.reshape(B, n, C).swapaxes(0, 1)

  @jax.checkpoint
  def one_chunk(args):
    h_BxCxD, t_BxC = args
    logits_BxCxV = unembed(config, params, h_BxCxD, rules).astype(jnp.float32) / temperature
    logz_BxC = jax.nn.logsumexp(logits_BxCxV, axis=-1)
    picked_BxC = jnp.take_along_axis(logits_BxCxV, t_BxC[..., None], axis=-1)[..., 0]
    probs_BxCxV = jnp.exp(logits_BxCxV - logz_BxC[..., None])
    entropy_BxC = logz_BxC - jnp.sum(probs_BxCxV * logits_BxCxV, axis=-1)
    return picked_BxC - logz_BxC, entropy_BxC

  logp_NxBxC, entropy_NxBxC = jax.lax.map(one_chunk, (hidden_NxBxCxD, targets_NxBxC))
  logp_BxT = logp_NxBxC.swapaxes(0, 1).reshape(B, -1)[:, :T - 1]
  entropy_BxT = entropy_NxBxC.swapaxes(0, 1).reshape(B, -1)[:, :T - 1]
  zero_Bx1 = jnp.zeros((B, 1), jnp.float32)
  return (jnp.concatenate([zero_Bx1, logp_BxT], axis=1),
          jnp.concatenate([zero_Bx1, entropy_BxT], axis=1))
