"""Plots: three models per figure, each written as a valid PNG at the returned path."""

import struct

import numpy as np
import pytest

from mrt_jax.evaluation import (mean_normalized_regret, plot_accuracy_vs_tokens, plot_j_curves,
                                plot_regret)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODELS = {"base": 0.35, "GRPO": 0.42, "MRT": 0.5}  # Label -> asymptotic success.


def _assert_png(path):
  with open(path, "rb") as f:
    data = f.read()
  assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
  assert data[12:16] == b"IHDR"
  width, height = struct.unpack(">II", data[16:24])
  assert width > 100 and height > 100 and len(data) > 1000


def _j_curves():
  budgets_C = np.linspace(0, 4096, 9)
  rng = np.random.default_rng(0)
  curves = {}
  for label, top in MODELS.items():
    j_PxC = top * (1 - np.exp(-budgets_C / 1500)) + 0.1 + 0.05 * rng.random((13, 9))
    curves[label] = (budgets_C, np.clip(j_PxC, 0, 1))
  return curves


def test_plots_written(tmp_path):
  budgets_C = np.array([256, 512, 1024, 2048, 4096])
  accuracy = {label: (budgets_C * (0.8 + 0.1 * i), top * (1 - np.exp(-budgets_C / 1200)))
              for i, (label, top) in enumerate(MODELS.items())}
  j_curves = _j_curves()
  horizons_H = np.array([512, 1024, 2048, 4096, 8192])
  regrets = {label: (horizons_H, mean_normalized_regret(b, j, horizons_H))
             for label, (b, j) in j_curves.items()}
  paths = [
      plot_accuracy_vs_tokens(accuracy, tmp_path / "accuracy_vs_tokens.png"),
      plot_j_curves(j_curves, tmp_path / "j_curves.png"),
      plot_regret(regrets, tmp_path / "nested" / "regret.png", log_x=True),
  ]
  assert paths == [str(tmp_path / "accuracy_vs_tokens.png"), str(tmp_path / "j_curves.png"),
                   str(tmp_path / "nested" / "regret.png")]
  for path in paths:
    _assert_png(path)


def test_plot_bad_input(tmp_path):
  with pytest.raises(ValueError, match="no regret curves to plot"):
    plot_regret({}, tmp_path / "r.png")
  with pytest.raises(ValueError, match=r"curve 'MRT': x has shape \(3,\) and y \(2,\)"):
    plot_accuracy_vs_tokens({"MRT": ([1, 2, 3], [0.1, 0.2])}, tmp_path / "a.png")
