"""Bad input to a run fails before training, naming the field, file or directory at fault."""

import dataclasses

import jax
import pytest

from launch_fixtures import TINY, asset_flags
from mrt_jax import config_cli, models
from mrt_jax.data.sources import DataError
from mrt_jax.models.tokenizer import TokenizerError
from mrt_jax.train import demo, setup


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
  root = tmp_path_factory.mktemp("assets")
  config = _config(str(root), str(root / "work"))
  demo.build_assets(config)
  return str(root)


def _config(assets, workdir, *extra):
  overrides = [o.removeprefix("--config.") for o in TINY] + [
      f"workdir={workdir}", *[o.removeprefix("--config.") for o in asset_flags(assets)],
      *extra]
  return config_cli.load_config("configs/demo_cpu.py", overrides)


def test_unknown_config_field_is_named():
  with pytest.raises(config_cli.ConfigOverrideError, match="totl_steps"):
    config_cli.load_config("configs/demo_cpu.py", ["train.totl_steps=3"])


def test_missing_model_directory(assets, tmp_path):
  config = _config(assets, str(tmp_path / "w"), f"model.path={tmp_path}/nope")
  with pytest.raises(FileNotFoundError, match=r"config\.model\.path=.*nope"):
    setup.build(config)


def test_tokenizer_larger_than_model_vocab(assets, tmp_path):
  config = models.load_config(f"{assets}/model")
  small = dataclasses.replace(config, vocab_size=100)
  models.save_hf(small, models.init_params(small, jax.random.key(0)), tmp_path / "small")
  with pytest.raises(TokenizerError, match=r"vocab_size is 100"):
    setup.build(_config(assets, str(tmp_path / "w"), f"model.path={tmp_path}/small"))


def test_empty_dataset(assets, tmp_path):
  (tmp_path / "empty.jsonl").write_text("")
  with pytest.raises(DataError, match="empty.jsonl"):
    setup.build(_config(assets, str(tmp_path / "w"), f"data.path={tmp_path}/empty.jsonl"))


def test_dataset_without_answer_field(assets, tmp_path):
  (tmp_path / "noanswer.jsonl").write_text('{"problem": "1+1?", "solution": "2"}\n' * 4)
  with pytest.raises(DataError, match="noanswer.jsonl.*answer"):
    setup.build(_config(assets, str(tmp_path / "w"), f"data.path={tmp_path}/noanswer.jsonl"))


def test_unwritable_workdir(assets, tmp_path):
  (tmp_path / "file").write_text("not a directory")
  with pytest.raises(OSError, match=r"config\.workdir=.*not writable"):
    setup.build(_config(assets, str(tmp_path / "file" / "run")))


def test_unknown_verifier(assets, tmp_path):
  with pytest.raises(ValueError, match="nosuch"):
    setup.build(_config(assets, str(tmp_path / "w"), "reward.verifier=nosuch"))


def test_missing_tokenizer(assets, tmp_path):
  with pytest.raises(TokenizerError, match="notok"):
    setup.build(_config(assets, str(tmp_path / "w"), f"model.tokenizer_path={tmp_path}/notok"))


def test_fixed_meta_prover_of_another_architecture_or_path_is_refused(assets, tmp_path):
  """probe.meta_prover is loaded before the first step; its errors name the field."""
  from mrt_jax.train import loop  # pylint: disable=import-outside-toplevel
  mrt = ("advantage.estimator=mrt", "probe.estimator=likelihood")
  with pytest.raises(FileNotFoundError,
                     match=r"probe.meta_prover = '.*/nowhere': checkpoint '.*/nowhere' does not"):
    loop.train(_config(assets, str(tmp_path / "w1"), *mrt,
                       f"probe.meta_prover={tmp_path}/nowhere"))
  config = models.load_config(f"{assets}/model")
  wide = dataclasses.replace(config, intermediate_size=2 * config.intermediate_size)
  models.save_hf(wide, models.init_params(wide, jax.random.key(0)), tmp_path / "wide")
  with pytest.raises(ValueError, match=r"probe.meta_prover = '.*/wide': its architecture differs"):
    loop.train(_config(assets, str(tmp_path / "w2"), *mrt, f"probe.meta_prover={tmp_path}/wide"))
