"""The train state: params, optimizer state, step, RNG and non-finite counters (one pytree).

Everything a resumed run needs to continue bit-exactly lives here, so a checkpoint of this
pytree (plus the data iterator state) is a complete restart point.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrt_jax.models import ModelConfig, param_specs
from mrt_jax.models.sharding import TRAIN_RULES, Rules, named_sharding
from mrt_jax.models.weights import is_spec


@flax.struct.dataclass
class TrainState:
  step: jax.Array              # int32 [], optimizer updates applied
  params: Any                  # the policy's param pytree
  opt_state: Any               # optax state (moments sharded like params)
  rng_key: jax.Array           # uint32 [2] raw key data (checkpointable), split each step
  nonfinite_streak: jax.Array  # int32 [], consecutive skipped (NaN/inf) updates
  nonfinite_total: jax.Array   # int32 [], all skipped updates


def param_shardings(config: ModelConfig, mesh: Mesh, rules: Rules = TRAIN_RULES):
  """NamedShardings of the params on `mesh` from their logical axes."""
  return jax.tree.map(lambda s: named_sharding(mesh, s.logical, rules, s.shape),
                      param_specs(config), is_leaf=is_spec)


def init_state(params, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
  """A fresh state; call under jit so optimizer moments inherit the params' shardings."""
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, opt_state=optimizer.init(params),
                    rng_key=jax.random.key_data(jax.random.key(seed)),
                    nonfinite_streak=zero, nonfinite_total=zero)


def create_state(params, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
  """`init_state` jitted with explicit shardings: optimizer moments are laid out exactly like
  the params they belong to (sharding propagation alone leaves them replicated), counters and
  the RNG key are replicated."""
  param_shardings_ = jax.tree.map(lambda x: x.sharding, params)
  first = jax.tree.leaves(param_shardings_)[0]
  replicated = (NamedSharding(first.mesh, PartitionSpec()) if isinstance(first, NamedSharding)
                else first)
  abstract_opt = jax.eval_shape(optimizer.init, params)
  opt_shardings = optax.tree_utils.tree_map_params(
      optimizer, lambda _, sharding: sharding, abstract_opt, param_shardings_,
      transform_non_params=lambda _: replicated)
  out = TrainState(step=replicated, params=param_shardings_, opt_state=opt_shardings,
                   rng_key=replicated, nonfinite_streak=replicated, nonfinite_total=replicated)
  return jax.jit(init_state, static_argnums=(1, 2), out_shardings=out)(params, optimizer, seed)


def state_shardings(state: TrainState):
  """The shardings of an existing state, for the train step's in/out shardings."""
  return jax.tree.map(lambda x: x.sharding, state)
