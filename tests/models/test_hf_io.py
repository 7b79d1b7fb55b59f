"""save_hf / load_hf round trips through transformers, sharded files, and bad checkpoints."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import hf_fixtures
from mrt_jax import models
from mrt_jax.models import safetensors_io

TOL = 1e-4  # Max |Δlogit| vs transformers, f32 (as in test_parity). Never loosen.


def _tokens(config, n=9, seed=0):
  return np.random.default_rng(seed).integers(3, config.vocab_size, size=n).tolist()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_save_hf_loads_in_transformers_with_same_logits(tmp_path, family):
  hf_fixtures.make_checkpoint(family, str(tmp_path / "src"), seed=3)
  config, params = models.load_hf(tmp_path / "src")
  models.save_hf(config, params, tmp_path / "out")
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out",
                                                              dtype=torch.float32)
  tokens = _tokens(config)
  ours, _ = models.forward(config, params, jnp.asarray([tokens], jnp.int32))
  np.testing.assert_allclose(ours[0], hf_fixtures.torch_logits(reloaded, tokens), rtol=0,
                             atol=TOL)


def test_load_save_load_is_identical_and_shards(tmp_path):
  hf_fixtures.make_checkpoint("qwen2", str(tmp_path / "src"), seed=4)
  config, params = models.load_hf(tmp_path / "src")
  # A tiny shard size forces several files plus model.safetensors.index.json.
  models.save_hf(config, params, tmp_path / "sharded", max_shard_bytes=200_000)
  files = sorted(os.listdir(tmp_path / "sharded"))
  assert "model.safetensors.index.json" in files
  assert sum(f.endswith(".safetensors") for f in files) > 1
  config2, params2 = models.load_hf(tmp_path / "sharded")
  assert config2 == config
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, params2)
  models.save_hf(config2, params2, tmp_path / "again")
  _, params3 = models.load_hf(tmp_path / "again")
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, params3)


def test_bf16_round_trip_and_dtype_conversion(tmp_path):
  hf_fixtures.make_checkpoint("qwen3", str(tmp_path / "src"), seed=5, dtype=torch.bfloat16)
  config, params = models.load_hf(tmp_path / "src", dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
  models.save_hf(config, params, tmp_path / "out")
  assert json.load(open(tmp_path / "out" / "config.json"))["torch_dtype"] == "bfloat16"
  ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "src")
  out = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
  for (name, a), (_, b) in zip(ref.state_dict().items(), out.state_dict().items()):
    assert torch.equal(a, b), name
  _, params32 = models.load_hf(tmp_path / "out", dtype=jnp.float32)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a, np.float32), b),
               params, params32)


def test_legacy_config_format_of_released_checkpoints():
  """config.json as released for DeepSeek-R1-Distill-Qwen-7B (transformers 4.x field names)."""
  hf = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-6,
        "rope_theta": 10000, "max_position_embeddings": 131072, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": 4096, "bos_token_id": 151643,
        "eos_token_id": 151643, "hidden_act": "silu", "torch_dtype": "bfloat16"}
  c = models.config_from_hf_dict(hf)
  assert (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.num_groups) == (
      3584, 28, 4, 128, 7)
  assert c.qkv_bias and not c.o_bias and not c.qk_norm and not c.tie_word_embeddings
  assert c.rope_theta == 10000.0 and c.rope_scaling is None and c.eos_token_ids == (151643,)
  llama = models.config_from_hf_dict({
      **hf, "architectures": ["LlamaForCausalLM"], "rope_theta": 500000.0,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
  assert llama.rope_scaling == models.RopeScaling(8.0, 1.0, 4.0, 8192)
  assert hash(llama) != hash(c)


# --- Bad input: each error names the culprit ----------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
  hf_fixtures.make_checkpoint("qwen2", str(tmp_path / "ck"), seed=6)
  return tmp_path / "ck"


def _edit_config(path, **changes):
  cfg = json.load(open(path / "config.json"))
  cfg.update(changes)
  json.dump(cfg, open(path / "config.json", "w"))


def test_missing_config_json(tmp_path):
  with pytest.raises(models.ConfigError, match=r"config\.json"):
    models.load_hf(tmp_path)


def test_unknown_architecture_lists_supported(checkpoint):
  _edit_config(checkpoint, architectures=["GPT2LMHeadModel"])
  with pytest.raises(models.ConfigError, match="GPT2LMHeadModel.*LlamaForCausalLM.*Qwen2"):
    models.load_hf(checkpoint)


def test_unsupported_rope_type(checkpoint):
  _edit_config(checkpoint, rope_parameters={"rope_type": "yarn", "factor": 4.0})
  with pytest.raises(models.ConfigError, match="yarn.*llama3"):
    models.load_hf(checkpoint)


def _rewrite_weights(path, edit):
  sf = safetensors_io.SafetensorsFile(str(path / "model.safetensors"))
  tensors = {k: np.array(sf.get(k)) for k in sf.keys()}
  del sf
  edit(tensors)
  safetensors_io.save_file(tensors, str(path / "model.safetensors"))


def test_missing_tensor_is_named(checkpoint):
  _rewrite_weights(checkpoint, lambda t: t.pop("model.layers.2.mlp.up_proj.weight"))
  with pytest.raises(models.CheckpointError, match=r"model\.layers\.2\.mlp\.up_proj\.weight"):
    models.load_hf(checkpoint)


def test_wrong_shape_is_named_with_both_shapes(checkpoint):
  def edit(t):
    t["model.layers.1.self_attn.k_proj.weight"] = t["model.layers.1.self_attn.k_proj.weight"][:-1]
  _rewrite_weights(checkpoint, edit)
  with pytest.raises(models.CheckpointError,
                     match=r"k_proj\.weight.*\(31, 96\).*expected \(32, 96\)"):
    models.load_hf(checkpoint)


def test_vocab_mismatch_between_config_and_embedding(checkpoint):
  _edit_config(checkpoint, vocab_size=300)
  with pytest.raises(models.CheckpointError, match=r"embed_tokens.*\(211, 96\).*\(300, 96\)"):
    models.load_hf(checkpoint)


def test_unreadable_safetensors(checkpoint):
  (checkpoint / "model.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(models.CheckpointError, match="model.safetensors"):
    models.load_hf(checkpoint)


def test_no_weights(checkpoint):
  os.remove(checkpoint / "model.safetensors")
  with pytest.raises(models.CheckpointError, match="no .*safetensors"):
    models.load_hf(checkpoint)


def test_index_listing_a_missing_file(checkpoint):
  models.save_hf(*models.load_hf(checkpoint), checkpoint.parent / "sh", max_shard_bytes=200_000)
  shutil.rmtree(checkpoint)
  index = json.load(open(checkpoint.parent / "sh" / "model.safetensors.index.json"))
  second = sorted(set(index["weight_map"].values()))[1]
  os.remove(checkpoint.parent / "sh" / second)
  with pytest.raises(models.CheckpointError, match=second):
    models.load_hf(checkpoint.parent / "sh")
