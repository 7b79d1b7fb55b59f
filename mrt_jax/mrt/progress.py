"""The progress reward of MRT: how much each block raises the meta-prover's success rate.

docs/method.md: J_j is the success rate of m forced-answer probes after the prefix up to b_j
(J_0: empty thinking) and the progress of block j is p_j = J_j − J_{j−1}, j = 1..N.

Letters: B rollouts, N blocks (the paper's K), N1 = N + 1 boundaries b_0..b_N, M probes per
boundary. Both functions are jitted and pure; numpy inputs are fine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def progress_reward(success: jax.Array, num_blocks: jax.Array) -> jax.Array:
  """Per-block progress p_j = J_j − J_{j−1} (MRT; docs/method.md).

  Args:
    success: f32 [B, N+1], J_0..J_N; column 0 is the empty-thinking success J_0.
    num_blocks: i32 [B], the number of real blocks of each row (entries of `success` past it are
      ignored).

  Returns:
    f32 [B, N]: p_j in column j−1 for j <= num_blocks[b], exactly 0 beyond.
  """
  if success.ndim != 2 or success.shape[1] < 1:
    raise ValueError(f"success has shape {success.shape}; expected [B, N+1] with N+1 >= 1")
  B, N1 = success.shape
  if num_blocks.shape != (B,):
    raise ValueError(f"num_blocks has shape {num_blocks.shape}; expected [B]=({B},) to match "
                     f"success {success.shape}")
  J_BxN1 = success.astype(jnp.float32)
  p_BxN = J_BxN1[:, 1:] - J_BxN1[:, :-1]
  j_1xN = jnp.arange(1, N1, dtype=jnp.int32).reshape(1, N1 - 1)
  real_BxN = j_1xN <= num_blocks.astype(jnp.int32).reshape(B, 1)
  return jnp.where(real_BxN, p_BxN, jnp.zeros_like(p_BxN))


@jax.jit
def success_from_verdicts(verdicts: jax.Array, boundary_mask: jax.Array | None = None
                          ) -> jax.Array:
  """Meta-prover success J_j = mean over the m probes at boundary b_j of their 0/1 verdicts.

  Args:
    verdicts: [B, N+1, M] probe rewards (bool or float in [0, 1]); column j probes boundary b_j.
    boundary_mask: optional bool [B, N+1]; False marks a boundary that was not probed (a row with
      fewer blocks). Its J is 0; `progress_reward` never reads it when the mask is
      `j <= num_blocks` (as built by `segment.stack_segmentations`).

  Returns:
    f32 [B, N+1], J_0..J_N.
  """
  if verdicts.ndim != 3 or verdicts.shape[2] < 1:
    raise ValueError(f"verdicts has shape {verdicts.shape}; expected [B, N+1, M] with M >= 1")
  B, N1, M = verdicts.shape
  J_BxN1 = jnp.mean(verdicts.astype(jnp.float32), axis=2)
  if boundary_mask is None:
    return J_BxN1
  if boundary_mask.shape != (B, N1):
    raise ValueError(f"boundary_mask has shape {boundary_mask.shape}; expected [B, N+1]="
                     f"{(B, N1)} to match verdicts {verdicts.shape}")
  return jnp.where(boundary_mask.astype(bool), J_BxN1, jnp.zeros_like(J_BxN1))
