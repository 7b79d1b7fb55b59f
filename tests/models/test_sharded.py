"""The forward pass sharded over data 2 x fsdp 2 x tensor 2 (8 CPU devices) equals 1 device."""

import jax.numpy as jnp
import numpy as np
import pytest

import hf_fixtures
from subprocess_util import run_python
from mrt_jax import models

TOL = 1e-5  # Max |Δlogit| sharded vs single device, f32 (reduction order only). Never loosen.


@pytest.mark.parametrize("rules", ["TRAIN_RULES", "SAMPLE_RULES"])
def test_sharded_forward_equals_single_device(tmp_path, rules):
  hf_fixtures.make_checkpoint("qwen2", str(tmp_path / "ck"), seed=7)
  config, params = models.load_hf(tmp_path / "ck")
  tokens = np.random.default_rng(0).integers(0, config.vocab_size, size=(4, 11)).astype(np.int32)
  np.save(tmp_path / "tokens.npy", tokens)
  ref, _ = models.forward(config, params, jnp.asarray(tokens))

  run_python(f"""
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from mrt_jax import models
    assert jax.device_count() == 8
    mesh = models.make_mesh(data=2, fsdp=2, tensor=2)
    rules = models.{rules}
    config, params = models.load_hf("{tmp_path / 'ck'}", mesh=mesh, rules=rules)
    q = params["layers"]["q"]  # [L, D, H, E]: embed -> fsdp (train only), q_heads -> tensor
    expected = P(None, "fsdp", "tensor", None) if rules is models.TRAIN_RULES else \\
        P(None, None, "tensor", None)
    assert q.sharding.spec == expected, q.sharding.spec
    assert q.addressable_shards[0].data.shape[2] == config.num_heads // 2
    tokens = jax.device_put(np.load("{tmp_path / 'tokens.npy'}"),
                            models.named_sharding(mesh, ("batch", "seq"), rules))
    fwd = jax.jit(models.forward, static_argnums=0, static_argnames="rules")
    with jax.set_mesh(mesh):
      logits, _ = fwd(config, params, tokens, rules=rules)
    assert logits.sharding.spec[0] == ("data", "fsdp"), logits.sharding.spec
    np.save("{tmp_path / 'sharded.npy'}", np.asarray(logits))
  """)
  sharded = np.load(tmp_path / "sharded.npy")
  np.testing.assert_allclose(sharded, ref, rtol=0, atol=TOL)


def test_rules_collision_and_indivisible_dims():
  rules = models.Rules.of({"a": "tensor", "b": ("data", "tensor"), "c": None})
  with pytest.raises(ValueError, match="collision.*'a'.*'b'.*tensor"):
    models.logical_to_spec(("a", "b"), rules)
  # Prime sizes do not divide the mesh: that dimension is replicated, not an error.
  spec = models.logical_to_spec(("a", "c"), rules, shape=(211, 4),
                                mesh_shape={"data": 1, "fsdp": 1, "tensor": 2})
  assert tuple(spec) == (None, None)
  with pytest.raises(KeyError, match="no sharding rule"):
    models.logical_to_spec(("unknown",), rules)
