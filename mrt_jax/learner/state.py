"""The train state: params, optimizer state, step and non-finite counters (one pytree).

Everything a resumed run needs to continue bit-exactly lives here, so a checkpoint of this
pytree (plus the data iterator state) is a complete restart point. There is no RNG key: every
random draw of a run (rollouts, probes) is seeded by a pure function of (config.seed, step).
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
  nonfinite_streak: jax.Array  # int32 [], consecutive skipped (NaN/inf) updates
  nonfinite_total: jax.Array   # int32 [], all skipped updates


def param_shardings(config: ModelConfig, mesh: Mesh, rules: Rules = TRAIN_RULES):
  """NamedShardings of the params on `mesh` from their logical axes."""
  return jax.tree.map(lambda s: named_sharding(mesh, s.logical, rules, s.shape),
                      param_specs(config), is_leaf=is_spec)


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
  """A fresh state (see `create_state` for the sharded, jitted form)."""
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, opt_state=optimizer.init(params),
                    nonfinite_streak=zero, nonfinite_total=zero)


def state_layout(params, optimizer: optax.GradientTransformation) -> TrainState:
  """The shardings of `init_state(params, optimizer)` for (possibly abstract) sharded params.

  Optimizer moments are laid out exactly like the params they belong to (sharding propagation
  alone leaves zero-initialized moments replicated: every device would hold all of them);
  counters are replicated.
  """
  param_shardings_ = jax.tree.map(lambda x: x.sharding, params)
  first = jax.tree.leaves(param_shardings_)[0]
  replicated = (NamedSharding(first.mesh, PartitionSpec()) if isinstance(first, NamedSharding)
                else first)
  opt_shardings = optax.tree_utils.tree_map_params(
      optimizer, lambda _, sharding: sharding, jax.eval_shape(optimizer.init, params),
      param_shardings_, transform_non_params=lambda _: replicated)
  return TrainState(step=replicated, params=param_shardings_, opt_state=opt_shardings,
                    nonfinite_streak=replicated, nonfinite_total=replicated)


def create_state(params, optimizer: optax.GradientTransformation) -> TrainState:
  """`init_state` jitted and laid out by `state_layout`."""
  out = state_layout(params, optimizer)
  return jax.jit(init_state, static_argnums=1, out_shardings=out)(params, optimizer)


def state_shardings(state: TrainState):
  """The shardings of an existing state, for the train step's in/out shardings."""
  return jax.tree.map(lambda x: x.sharding, state)
