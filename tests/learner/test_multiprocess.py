"""A 2-process `jax.distributed` (gloo) train step equals the 1-process result."""

import numpy as np

from multiprocess_util import run_processes

_STEP = """
import sys, numpy as np
sys.path.insert(0, "tests/learner")
from learner_fixtures import two_steps
from mrt_jax import models
mesh = models.make_mesh(data=-1, tensor=2)
out, _ = two_steps(dict(np.load("{batch}")), mesh)
if PROCESS_ID == 0:
  np.savez("{out}", **out)
"""


def test_two_processes_equal_one(one_device_steps, tmp_path):
  batch, one = one_device_steps
  # 2 processes x 2 CPU devices: data 2 (one per process) x tensor 2 (within a process).
  run_processes(_STEP.format(batch=batch, out=tmp_path / "two.npz"), num_processes=2,
                local_devices=2)
  two = np.load(tmp_path / "two.npz")
  assert set(one) == set(two.files)
  for k in one:
    np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-5, err_msg=k)
