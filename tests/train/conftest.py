"""The MRT reference run shared by the launch tests (one per session: it compiles the most)."""

import pytest

from launch_fixtures import REF_DEVICES, ref_cmd, run


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
  """Assets, a compilation cache, and one uninterrupted MRT run the launch tests compare with."""
  root = tmp_path_factory.mktemp("launch")
  cache, assets = str(root / "jax_cache"), str(root / "assets")
  ref = str(root / "mrt_ref")
  out = run(ref_cmd(ref, assets), cache, devices=REF_DEVICES)
  return {"root": root, "cache": cache, "assets": assets, "ref": ref, "stdout": out.stdout}
