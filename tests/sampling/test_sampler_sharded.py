"""The sampler on 8 simulated devices (data 4 x tensor 2, SAMPLE_RULES) equals one device."""

import json
import os

import numpy as np

from mrt_jax import sampling
from subprocess_util import run_python
import sharded_scenario

LOGPROB_TOL = 1e-5  # f32; sharding changes reduction order only. Never loosen.


def test_sharded_sampler_equals_single_device(checkpoint, tmp_path):
  _, config, params, directory = checkpoint("qwen2")
  ref = sharded_scenario.run(sampling.Sampler(config), params)
  out = tmp_path / "sharded.json"
  here = os.path.dirname(os.path.abspath(__file__))
  run_python(f"""
    import json, sys
    sys.path.insert(0, {here!r})
    import jax
    from mrt_jax import models, sampling
    import sharded_scenario
    assert jax.device_count() == 8
    mesh = models.make_mesh(data=4, tensor=2)
    config, params = models.load_hf({str(directory)!r}, mesh=mesh, rules=models.SAMPLE_RULES)
    result = sharded_scenario.run(sampling.Sampler(config, mesh=mesh), params)
    json.dump(result, open({str(out)!r}, "w"))
  """)
  got = json.loads(out.read_text())
  # Rows split over data (4), kv heads over tensor (2): [L, B/4, S, K/2, E] per device.
  L, B, K, S, E = ref["cache_shard_shape"]
  assert got["cache_shard_shape"] == [L, B // 4, K // 2, S, E]
  assert got["parked_lengths"] == ref["parked_lengths"]
  for name in ("greedy", "sampled", "forked", "queued", "parked", "parked_forks"):
    assert got[f"{name}_tokens"] == ref[f"{name}_tokens"], name
    assert got[f"{name}_reasons"] == ref[f"{name}_reasons"], name
    for a, b in zip(got[f"{name}_logprobs"], ref[f"{name}_logprobs"]):
      np.testing.assert_allclose(a, b, rtol=0, atol=LOGPROB_TOL)
