"""notebooks/mrt_demo.ipynb runs clean, top to bottom, in its short mode (MRT_DEMO_SHORT=1)."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from subprocess_util import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "mrt_demo.ipynb")


def test_notebook_runs_in_short_mode(tmp_path, monkeypatch):
  # The kernel inherits this environment: short mode, outputs under tmp_path, CPU, and the
  # checkout on the path (the package is installed editable by the README's test command).
  monkeypatch.setenv("MRT_DEMO_SHORT", "1")
  monkeypatch.setenv("MRT_DEMO_WORK", str(tmp_path / "work"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
  work = tmp_path / "work"
  for method in ("grpo", "mrt"):
    lines = (work / method / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("loss" in json.loads(l) for l in lines)
  assert json.loads(lines[-1])["num_probes"] > 0  # MRT probed its traces
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
