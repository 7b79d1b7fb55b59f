"""Logical axis names -> mesh axes.

Every parameter and key activation carries a tuple of logical axis names (see `weights.py` and
`transformer.py`). A `Rules` table maps each name to a mesh axis (`data`, `fsdp`, `tensor`), a
tuple of them, or None (replicated). There is one table for training and one for sampling.

Numerics/layout decisions:
- A dimension whose size is not divisible by its mesh axes' total size is replicated instead
  (e.g. a prime vocab of 211 on `tensor=2`); this keeps tiny test models shardable.
- Mapping two logical axes of one array to the same mesh axis is an error (a collision), raised
  with the array's logical axes in the message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

MeshAxes = str | tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class Rules:
  """An immutable logical-axis -> mesh-axis table."""
  table: tuple[tuple[str, MeshAxes], ...]

  @classmethod
  def of(cls, mapping: Mapping[str, MeshAxes]) -> "Rules":
    return cls(tuple(mapping.items()))

  def __getitem__(self, name: str) -> MeshAxes:
    for key, value in self.table:
      if key == name:
        return value
    raise KeyError(f"logical axis {name!r} has no sharding rule; known: "
                   f"{[k for k, _ in self.table]}")


# Training: FSDP over `embed`, tensor parallel over heads / ffn / vocab, batch over data x fsdp.
TRAIN_RULES = Rules.of({
    "batch": ("data", "fsdp"),
    "seq": None,
    "cache_seq": None,
    "layers": None,
    "vocab": "tensor",
    "embed": "fsdp",
    "act_embed": None,
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
})

# Sampling: weights replicated over data/fsdp (no all-gathers per decode step), tensor parallel
# over heads / ffn / vocab, the batch and the KV cache split over data x fsdp.
SAMPLE_RULES = Rules.of({
    "batch": ("data", "fsdp"),
    "seq": None,
    "cache_seq": None,
    "layers": None,
    "vocab": "tensor",
    "embed": None,
    "act_embed": None,
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
})


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def logical_to_spec(logical: Sequence[str | None], rules: Rules,
                    shape: Sequence[int] | None = None,
                    mesh_shape: Mapping[str, int] | None = None) -> PartitionSpec:
  """The `PartitionSpec` of an array with the given logical axes.

  With `shape` and `mesh_shape`, a dimension not divisible by its mesh axes is replicated; mesh
  axes absent from `mesh_shape` are dropped.
  """
  used: dict[str, str] = {}
  spec = []
  for i, name in enumerate(logical):
    axes = _as_tuple(rules[name]) if name is not None else ()
    if mesh_shape is not None:
      axes = tuple(a for a in axes if a in mesh_shape)
      if shape is not None and axes and shape[i] % math.prod(mesh_shape[a] for a in axes):
        axes = ()
    for a in axes:
      if a in used:
        raise ValueError(f"sharding collision: logical axes {used[a]!r} and {name!r} of "
                         f"{tuple(logical)} both map to mesh axis {a!r}")
      used[a] = name
    spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, logical: Sequence[str | None], rules: Rules,
                   shape: Sequence[int] | None = None) -> NamedSharding:
  """A `NamedSharding` on `mesh` for an array with the given logical axes (and shape)."""
  return NamedSharding(mesh, logical_to_spec(logical, rules, shape, dict(mesh.shape)))


def constrain(x: jax.Array, logical: Sequence[str | None], rules: Rules) -> jax.Array:
  """`with_sharding_constraint` by logical axes under the ambient mesh; a no-op without one.

  The ambient mesh is the one set with `jax.set_mesh(mesh)` (or `jax.sharding.use_mesh`).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  spec = logical_to_spec(logical, rules, x.shape, dict(mesh.shape))
  return jax.lax.with_sharding_constraint(x, spec)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (`data`, `fsdp`, `tensor`) mesh; -1 in one axis takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [data, fsdp, tensor]
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} "
                     f"tensor={tensor}")
  if -1 in sizes:
    known = math.prod(s for s in sizes if s != -1)
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs "
                     f"{math.prod(sizes)} devices, have {len(devices)}")
  # Auto axes: shardings propagate from inputs and `constrain`, as in GSPMD-style code.
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=auto, devices=devices)


def from_host(x, sharding: jax.sharding.Sharding) -> jax.Array:
  """A host array that every process holds identically, placed with `sharding`.

  Each process fills only the shards its own devices hold (no collective). Unlike
  `jax.device_put`, which all-gathers the value to check it is equal on every process (one
  collective per call), the caller vouches for equality.
  """
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x) -> np.ndarray:
  """The whole value of `x` as a NumPy array on every process.

  On a multi-process mesh an array sharded over other hosts' devices is not fully addressable;
  it is all-gathered (a collective: every process must call this in the same order).
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
    from jax.experimental import multihost_utils  # Only needed on multi-process meshes.
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))
