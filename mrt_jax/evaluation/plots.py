"""PNG plots of an evaluation, several models or checkpoints per plot (e.g. base, GRPO, MRT).

Figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas directly, so
no pyplot state, GUI backend or global `matplotlib.use` call is involved: safe in threads and in
headless jobs. Each function writes one PNG (parent directories created) and returns its path.

Inputs are mappings from a legend label to that model's arrays; the legend follows the mapping's
order. Letters: C points of a curve, H horizons, X any leading axes (problems × traces).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mrt_jax import storage

_DPI = 120
_SIZE = (6.4, 4.4)  # Inches.


def _axes(title: str, xlabel: str, ylabel: str):
  fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ax.set_title(title)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(True, alpha=0.3)
  return fig, ax


def _save(fig: Figure, ax, path: str | os.PathLike) -> str:
  ax.legend(loc="best", frameon=False)
  path = os.fspath(path)
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  with storage.open_file(path, "wb") as f:
    fig.savefig(f, format="png")
  return path


def _xy(label: str, x, y, batched: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Validates one curve: x [C] and y [C] (or [..., C] when `batched`)."""
  x_C = np.asarray(x, np.float64)
  y_XxC = np.asarray(y, np.float64)
  ok_ndim = y_XxC.ndim >= 1 if batched else y_XxC.ndim == 1
  if x_C.ndim != 1 or not ok_ndim or y_XxC.shape[-1] != x_C.shape[0] or x_C.size == 0:
    raise ValueError(f"curve {label!r}: x has shape {x_C.shape} and y {y_XxC.shape}; expected "
                     f"x [C] and y {'[..., C]' if batched else '[C]'} with C >= 1")
  return x_C, y_XxC


def _check_nonempty(curves: Mapping, what: str) -> None:
  if not curves:
    raise ValueError(f"no {what} to plot; expected a mapping from label to arrays")


def plot_accuracy_vs_tokens(curves: Mapping[str, tuple], path: str | os.PathLike, *,
                            title: str = "Accuracy vs thinking tokens") -> str:
  """Accuracy against mean tokens spent, one line per model.

  Args:
    curves: label -> (tokens_C, accuracy_C), e.g. pass@1 at each budget-forcing budget against
      the mean thinking tokens actually used there.
    path: PNG file to write.
    title: figure title.

  Returns:
    `path` as a string.
  """
  _check_nonempty(curves, "accuracy curves")
  fig, ax = _axes(title, "thinking tokens", "accuracy")
  for label, (tokens, accuracy) in curves.items():
    tokens_C, acc_C = _xy(label, tokens, accuracy)
    ax.plot(tokens_C, acc_C, marker="o", label=label)
  return _save(fig, ax, path)


def plot_j_curves(curves: Mapping[str, tuple], path: str | os.PathLike, *,
                  title: str = "Meta-prover success J(c)") -> str:
  """Mean J(c) over problems and traces against the thinking budget c, one line per model.

  The band is ± one standard error of the mean across curves (absent for a single curve).

  Args:
    curves: label -> (budgets_C, j_XxC): J on a common budget grid (see
      `regret.resample_curve`), any leading axes averaged.
    path: PNG file to write.
    title: figure title.

  Returns:
    `path` as a string.
  """
  return plot_mean_band(curves, path, title=title, xlabel="thinking budget c (tokens)",
                        ylabel="J(c)", ylim=(-0.02, 1.02))


def plot_mean_band(curves: Mapping[str, tuple], path: str | os.PathLike, *, title: str,
                   xlabel: str, ylabel: str, ylim: tuple[float, float] | None = None) -> str:
  """Mean of several curves per model with a ± one-standard-error band (e.g. over seeds).

  Args:
    curves: label -> (x_C, y_XxC): curves on a common x grid, any leading axes averaged.
    path: PNG file to write.
    title, xlabel, ylabel: figure texts.
    ylim: y-axis limits, or None for matplotlib's.

  Returns:
    `path` as a string.
  """
  _check_nonempty(curves, "curves")
  fig, ax = _axes(title, xlabel, ylabel)
  for label, (x, y) in curves.items():
    x_C, y_XxC = _xy(label, x, y, batched=True)
    y_YxC = y_XxC.reshape(-1, x_C.size)
    mean_C = y_YxC.mean(axis=0)
    (line,) = ax.plot(x_C, mean_C, marker=".", label=label)
    if y_YxC.shape[0] > 1:
      sem_C = y_YxC.std(axis=0, ddof=1) / np.sqrt(y_YxC.shape[0])
      ax.fill_between(x_C, mean_C - sem_C, mean_C + sem_C, color=line.get_color(), alpha=0.2,
                      linewidth=0)
  if ylim is not None:
    ax.set_ylim(*ylim)
  return _save(fig, ax, path)


def plot_regret(regrets: Mapping[str, tuple], path: str | os.PathLike, *,
                title: str = "Normalized regret per horizon", log_x: bool = False) -> str:
  """Normalized regret against the horizon C0, one line per model.

  Args:
    regrets: label -> (horizons_H, regret_H), e.g. from `regret.mean_normalized_regret`.
    path: PNG file to write.
    title: figure title.
    log_x: logarithmic horizon axis (for horizons spanning decades).

  Returns:
    `path` as a string.
  """
  _check_nonempty(regrets, "regret curves")
  fig, ax = _axes(title, "horizon C0 (thinking tokens)", "normalized regret")
  ticks = set()
  for label, (horizons, regret) in regrets.items():
    horizons_H, regret_H = _xy(label, horizons, regret)
    ax.plot(horizons_H, regret_H, marker="s", label=label)
    ticks.update(horizons_H.tolist())
  if log_x:
    # Plain labels at the measured horizons instead of 6×10^2-style log ticks.
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.minorticks_off()
  return _save(fig, ax, path)
