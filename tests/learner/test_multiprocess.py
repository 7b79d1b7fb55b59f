"""A 2-process `jax.distributed` (gloo) train step equals the 1-process result."""

import numpy as np

from learner_fixtures import rl_batch, tiny_model
from multiprocess_util import run_processes
from subprocess_util import run_python

_STEP = """
import sys, jax, numpy as np, optax
from jax.experimental import multihost_utils
sys.path.insert(0, "tests/learner")
from learner_fixtures import tiny_model
from mrt_jax import models
from mrt_jax.learner import losses
from mrt_jax.learner.state import create_state, param_shardings, state_shardings
from mrt_jax.learner.step import StepConfig, batch_shardings, make_train_step
config, params = tiny_model()
batch = dict(np.load("{batch}"))
cfg = StepConfig(num_micro_batches=2, loss=losses.LossConfig(
    aggregation="seq_mean_token_mean", beta=0.04))
optimizer = optax.sgd(0.5)
mesh = models.make_mesh(data=-1, tensor={tensor})
shard_p = param_shardings(config, mesh)
params = jax.tree.map(lambda x, s: jax.make_array_from_callback(x.shape, s, lambda i: x[i]),
                      params, shard_p)
state = create_state(params, optimizer)
shard_b = batch_shardings(mesh, batch)
batch = {{k: jax.make_array_from_callback(v.shape, shard_b[k], lambda i, v=v: v[i])
         for k, v in batch.items()}}
step = make_train_step(config, cfg, optimizer, mesh=mesh, state_shardings=state_shardings(state),
                       batch_shardings_=shard_b)
for _ in range(2):
  state, metrics = step(state, batch)
leaves = [np.asarray(multihost_utils.process_allgather(x, tiled=True))
          for x in jax.tree.leaves(state.params)]
if jax.process_index() == 0:
  np.savez("{out}", loss=np.asarray(metrics["loss"]), *leaves)
"""


def test_two_processes_equal_one(tmp_path):
  config, params = tiny_model()
  np.savez(tmp_path / "batch.npz", **rl_batch(config, params))
  # 2 processes x 2 CPU devices: data 2 (one per process) x tensor 2 (within a process).
  run_processes(_STEP.format(batch=tmp_path / "batch.npz", out=tmp_path / "two.npz", tensor=2),
                num_processes=2, local_devices=2)
  run_python(_STEP.format(batch=tmp_path / "batch.npz", out=tmp_path / "one.npz", tensor=1),
             devices=1)
  one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
  assert set(one.files) == set(two.files)
  for k in one.files:
    np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-5, err_msg=k)
