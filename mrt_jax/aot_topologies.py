"""TPU slice names (`v5p-64`, `v5e-16`, `v4-8`, `v6e-8`) -> libtpu topology descriptions.

A slice name is `<generation>-<n>` as Cloud TPU writes it: `n` counts TensorCores on v4 and v5p
(two per chip, fused into one JAX device by megacore) and chips on v5e and v6e (one core each).
The chip grid follows Cloud TPU's slice shapes: starting from the smallest slice, each doubling
doubles the grid's smallest axis, the last one on ties (v5p: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4,
...; v5e: 1x1, 1x2, 2x2, 2x4, 4x4, 4x8, ...).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from jax.experimental import topologies

GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Generation:
  """How libtpu describes one TPU generation."""
  platform_name: str               # prefix of libtpu's topology name, e.g. "v5p" in "v5p:2x4x4"
  grid_rank: int                   # 3 for the 3D torus generations, 2 for the lite ones
  cores_per_chip: int              # TensorCores per chip (the `n` of a slice name counts these)
  chip_config_name: str | None     # "megacore": one JAX device per chip on v4/v5p
  chips_per_host_bounds: tuple[int, int, int]
  min_chips: int                   # the smallest slice
  hbm_bytes_per_chip: int
  peak_flops_per_chip: float       # dense bf16 matmul FLOP/s of one chip
  hbm_bytes_per_second: float      # HBM bandwidth of one chip


# Published per-chip figures, from the Cloud TPU system architecture pages
# (cloud.google.com/tpu/docs/v4, .../v5e, .../v5p, .../v6e), "peak compute per chip (bf16)" and
# "HBM capacity and bandwidth":
#   v4   32 GiB, 275 TFLOP/s, 1200 GB/s
#   v5e  16 GiB, 197 TFLOP/s,  819 GB/s
#   v5p  95 GiB, 459 TFLOP/s, 2765 GB/s
#   v6e  32 GiB, 918 TFLOP/s, 1640 GB/s (Trillium)
GENERATIONS: dict[str, Generation] = {
    "v4": Generation("v4", 3, 2, "megacore", (2, 2, 1), 4, 32 * GiB, 275e12, 1200e9),
    "v5p": Generation("v5p", 3, 2, "megacore", (2, 2, 1), 4, 95 * GiB, 459e12, 2765e9),
    "v5e": Generation("v5e", 2, 1, None, (2, 2, 1), 1, 16 * GiB, 197e12, 819e9),
    "v6e": Generation("v6e", 2, 1, None, (2, 2, 1), 1, 32 * GiB, 918e12, 1640e9),
}


@dataclasses.dataclass(frozen=True)
class Topology:
  """A named slice: its generation, chip grid and libtpu topology name."""
  name: str                        # e.g. "v5p-64"
  generation: Generation
  grid: tuple[int, ...]            # chips per axis, e.g. (2, 4, 4)

  @property
  def num_chips(self) -> int:
    return math.prod(self.grid)

  @property
  def libtpu_name(self) -> str:
    return f"{self.generation.platform_name}:{'x'.join(map(str, self.grid))}"


def _grid(chips: int, rank: int) -> tuple[int, ...]:
  grid = [2, 2, 1] if rank == 3 else [1, 1]
  while math.prod(grid) < chips:
    smallest = min(grid)
    last = max(i for i, g in enumerate(grid) if g == smallest)
    grid[last] *= 2
  return tuple(grid)


def parse(name: str) -> Topology:
  """The `Topology` of a slice name like "v5p-64"; ValueError names what is wrong."""
  known = ", ".join(f"{g}-N" for g in GENERATIONS)
  match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
  if not match or match.group(1) not in GENERATIONS:
    raise ValueError(f"--topology={name!r} is not a known TPU slice name; expected one of "
                     f"{known} (e.g. v5p-64, v5e-16, v4-8, v6e-8)")
  gen = GENERATIONS[match.group(1)]
  cores = int(match.group(2))
  chips = cores // gen.cores_per_chip
  if (cores % gen.cores_per_chip or chips < gen.min_chips or chips & (chips - 1)):
    smallest = gen.min_chips * gen.cores_per_chip
    raise ValueError(f"--topology={name!r}: {match.group(1)} slices count "
                     f"{'TensorCores' if gen.cores_per_chip > 1 else 'chips'} as a power of two "
                     f">= {smallest} (e.g. {match.group(1)}-{smallest}, "
                     f"{match.group(1)}-{smallest * 2}); got {cores}")
  return Topology(name=name, generation=gen, grid=_grid(chips, gen.grid_rank))


def quiet_libtpu_env(topology: Topology) -> None:
  """Environment for compiling through libtpu on a machine without TPUs.

  Set before libtpu initializes. Without these, libtpu queries the GCE metadata server, warns
  that the accelerator type and worker hostnames are unknown, and refuses to start while any
  other process on the machine holds its lockfile (e.g. a concurrent JAX test run).
  """
  os.environ["TPU_SKIP_MDS_QUERY"] = "1"
  os.environ["TPU_ACCELERATOR_TYPE"] = topology.name
  os.environ["TPU_WORKER_HOSTNAMES"] = "localhost"
  os.environ["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"


def devices(topology: Topology) -> list:
  """The topology's JAX devices (one per chip), compile-only, from libtpu."""
  gen = topology.generation
  kwargs = {"chip_config_name": gen.chip_config_name} if gen.chip_config_name else {}
  # A slice smaller than one host (v5e-1, v5e-2) is that host's whole grid.
  grid = topology.grid + (1,) * (3 - len(topology.grid))
  host = tuple(min(b, g) for b, g in zip(gen.chips_per_host_bounds, grid))
  desc = topologies.get_topology_desc(topology_name=topology.libtpu_name, platform="tpu",
                                      chips_per_host_bounds=host, num_slices=1, **kwargs)
  return list(desc.devices)
