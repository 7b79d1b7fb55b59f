"""notebooks/mrt_demo.ipynb runs clean, top to bottom, in its short mode (MRT_DEMO_SHORT=1), and its
install cell installs the checkout it sits in."""

import importlib.util
import json
import os
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from subprocess_util import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "mrt_demo.ipynb")


def test_notebook_runs_in_short_mode(tmp_path, monkeypatch):
  # The kernel inherits this environment: short mode, outputs under tmp_path, CPU, and the
  # checkout on the path (the package is installed editable by the README's test command).
  monkeypatch.setenv("MRT_DEMO_SHORT", "1")
  monkeypatch.setenv("MRT_DEMO_WORK", str(tmp_path / "work"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # Programs compiled again by the second method's run load from a persistent cache.
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # The kernel starts in the notebook's directory, as Jupyter starts it.
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
  # mrt_jax imports from this checkout here, so the install cell finds it and installs nothing.
  install_output = "".join(o.get("text", "") for o in _install_cell(nb).get("outputs", []))
  assert f"mrt_jax is already importable from {os.path.realpath(ROOT)}" in install_output
  work = tmp_path / "work"
  for method in ("grpo", "mrt"):
    lines = (work / method / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("loss" in json.loads(l) for l in lines)
  # MRT measured J at its traces' boundaries (the demo config's meta-prover)
  assert "J_0" in json.loads(lines[-1]) and json.loads(lines[-1])["probe_answers"] > 0
  assert any(p.suffix == ".png" for p in (work / "compare").iterdir())
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert images, "the last cell displays the comparison plots"


def test_notebook_is_stored_without_outputs():
  """The committed notebook carries no outputs (they would be stale, and bloat diffs)."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert all(not c.get("outputs") and c.get("execution_count") is None
             for c in nb.cells if c.cell_type == "code")


def _can_build_here() -> bool:
  """Whether this environment's setuptools can prepare editable metadata without downloads."""
  try:
    import setuptools
  except ImportError:
    return False
  version = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
  return version >= (70, 1) or importlib.util.find_spec("wheel") is not None  # bdist_wheel


def _install_cell(nb):
  (cell,) = [c for c in nb.cells if c.cell_type == "code" and "def find_checkout" in c.source]
  return cell


def test_install_cell_installs_the_checkout_it_sits_in(tmp_path):
  """Where mrt_jax does not import (a fresh Colab runtime), the cell runs pip on the checkout.

  The cell's code runs as it is, under `python -S` (no site-packages, so no installed mrt_jax)
  from the notebook's directory; pip is made a dry run without dependencies or an index through
  its environment, so nothing is installed and nothing is downloaded.
  """
  source = _install_cell(nbformat.read(NOTEBOOK, as_version=4)).source
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(PIP_DRY_RUN="1", PIP_NO_DEPS="1", PIP_LOG=str(tmp_path / "pip.log"))
  if _can_build_here():  # offline: build with this environment's setuptools, no index
    env.update(PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1")  # "0" means --no-build-isolation
  out = subprocess.run([sys.executable, "-S", "-c", source], cwd=os.path.dirname(NOTEBOOK),
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert f"installing mrt_jax from {os.path.realpath(ROOT)}" in out.stdout
  log = (tmp_path / "pip.log").read_text()
  assert os.path.realpath(ROOT) in log and "Would install mrt_jax" in log, log[-2000:]


def test_install_cell_names_what_is_missing_outside_a_checkout(tmp_path):
  source = _install_cell(nbformat.read(NOTEBOOK, as_version=4)).source
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  out = subprocess.run([sys.executable, "-S", "-c", source], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode != 0
  assert "no mrt_jax checkout" in out.stderr and "clone the repository first" in out.stderr
