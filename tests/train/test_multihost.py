"""`mrt_jax.train.multihost` on 2 processes (gloo) equals the plain 1-process computation."""

import pytest

from multiprocess_util import run_processes

_CODE = """
import jax, numpy as np
from mrt_jax import models
from mrt_jax.train import multihost

def reward_fn(records, texts, ids):
  # Row-specific rewards and counts, so a misplaced or dropped row shows.
  rewards = np.array([r["x"] + len(t) / 10 for r, t in zip(records, texts)], np.float32)
  bad = [i for i, r in enumerate(records) if r["x"] % 3 == 0]
  return rewards, {"errors": len(bad), "timeouts": len(ids) % 2,
                   "details": [(i, "bad") for i in bad]}

# 7 rows over 2 processes: process 0 verifies rows 0-3, process 1 rows 4-6.
records = [{"x": i} for i in range(7)]
texts = ["a" * (i + 1) for i in range(7)]
ids = [[1] * (i + 1) for i in range(7)]
rewards, stats = multihost.split_over_processes(reward_fn)(records, texts, ids)
want_rewards, want = reward_fn(records, texts, ids)
np.testing.assert_array_equal(rewards, want_rewards)
assert stats["errors"] == want["errors"], stats
assert stats["timeouts"] == (4 % 2) + (3 % 2), stats  # summed over the two slices
assert set(stats["details"]) <= set(want["details"]), stats

assert multihost.any_process(PROCESS_ID == 1) and not multihost.any_process(False)

mesh = models.make_mesh(data=2, fsdp=2)
s = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
host = np.arange(12, dtype=np.int32).reshape(4, 3)
placed = multihost.place({"a": host, "b": multihost.place({"b": host}, {"b": s})["b"]},
                         {"a": s, "b": jax.sharding.NamedSharding(mesh,
                                                                 jax.sharding.PartitionSpec())})
for shard in placed["a"].addressable_shards:
  np.testing.assert_array_equal(np.asarray(shard.data), host[shard.index])
assert placed["b"].sharding.is_fully_replicated
np.testing.assert_array_equal(np.asarray(placed["b"].addressable_data(0)), host)
print("ok")
"""


def test_split_verification_agreement_and_placement_match_one_process():
  outs = run_processes(_CODE, num_processes=2, local_devices=2)
  assert all(out.strip().endswith("ok") for out in outs), outs


def test_start_up_mode_explicit_flags_tpu_vm_or_one_process():
  from mrt_jax import distributed
  assert distributed.mode("h:1", 2, 1, tpu_vm=False) == "explicit"
  assert distributed.mode("h:1", 2, 0, tpu_vm=True) == "explicit"  # flags win on TPU VMs too
  assert distributed.mode(None, None, None, tpu_vm=True) == "auto"  # no GKE variable needed
  assert distributed.mode(None, None, None, tpu_vm=False) == "single"
  with pytest.raises(ValueError, match=r"\['--coordinator_address'\] missing"):
    distributed.mode(None, 2, 0, tpu_vm=False)
  with pytest.raises(ValueError, match="--process_id=2 with --num_processes=2"):
    distributed.mode("h:1", 2, 2, tpu_vm=False)


def test_auto_mode_calls_initialize_without_arguments(monkeypatch):
  from absl import flags
  from mrt_jax import distributed
  import jax
  calls = []
  monkeypatch.setattr(distributed, "on_cloud_tpu_vm", lambda: True)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  assert distributed.initialize() == "auto" and calls == [((), {})]
