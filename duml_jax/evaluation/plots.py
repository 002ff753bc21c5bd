"""Success / precision / EAO plots of several trackers from a report (PNG).

Uses matplotlib's Agg backend through an explicit Figure (no pyplot state).
Trackers are sorted by their headline score, which is printed in the legend,
as got10k's ``plot_curves`` does.
"""
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from duml_jax.evaluation import metrics
from duml_jax.evaluation import writers


def plot_curves(trackers, curve_key, score_key, thresholds, path, *, title,
                xlabel, ylabel, score_scale=1.0):
  """One line per tracker of ``trackers[name][curve_key]``; returns `path`.

  Args:
    trackers: the report's {tracker: results} dict.
    curve_key: key of the curve (a list) in each tracker's results.
    score_key: key of the number shown in the legend and used for sorting.
    thresholds: x values of the curve.
    path: PNG file to write.
    title, xlabel, ylabel: labels.
    score_scale: factor applied to the legend score.
  """
  def score(name):
    v = trackers[name].get(score_key)
    return float("nan") if v is None else score_scale * float(v)

  names = sorted((n for n in trackers if trackers[n].get(curve_key)),
                 key=lambda n: -np.nan_to_num(score(n), nan=-np.inf))
  if not names:
    raise ValueError(f"no tracker has a {curve_key!r} curve")
  fig = Figure(figsize=(6, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  styles = ["-", "--", "-.", ":"]
  for i, name in enumerate(names):
    curve = np.array([np.nan if v is None else v
                      for v in trackers[name][curve_key]], np.float64)
    ax.plot(np.asarray(thresholds)[:len(curve)], curve,
            styles[(i // 10) % len(styles)], linewidth=1.5,
            label=f"{name} [{score(name):.3f}]")
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel,
         xlim=(float(np.min(thresholds)), float(np.max(thresholds))),
         ylim=(0.0, 1.0))
  ax.grid(True, alpha=0.4)
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=150, bbox_inches="tight")
  return path


def save_plots(report, out_dir):
  """Writes the plots suited to the report's benchmark; returns their paths.

  One-pass: ``success_plot.png``, ``precision_plot.png``,
  ``norm_precision_plot.png``; GOT-10k: ``success_plot.png``; VOT:
  ``eao_curve.png``.
  """
  bench = report["benchmark"]
  trackers = report["trackers"]
  layout = writers.benchmark_format(bench).layout

  def path(filename):
    return os.path.join(out_dir, filename)

  if layout == writers.ONE_PASS:
    return [
        plot_curves(trackers, "success_curve", "success_auc",
                    metrics.SUCCESS_THRESHOLDS, path("success_plot.png"),
                    title=f"Success plots of OPE on {bench}",
                    xlabel="Overlap threshold", ylabel="Success rate"),
        plot_curves(trackers, "precision_curve", "precision",
                    metrics.PRECISION_THRESHOLDS, path("precision_plot.png"),
                    title=f"Precision plots of OPE on {bench}",
                    xlabel="Location error threshold (px)",
                    ylabel="Precision"),
        plot_curves(trackers, "norm_precision_curve", "norm_precision",
                    metrics.NORM_PRECISION_THRESHOLDS,
                    path("norm_precision_plot.png"),
                    title=f"Normalized precision plots of OPE on {bench}",
                    xlabel="Normalized location error threshold",
                    ylabel="Normalized precision"),
    ]
  if layout == writers.GOT10K:
    return [plot_curves(trackers, "success_curve", "ao",
                        metrics.GOT10K_THRESHOLDS, path("success_plot.png"),
                        title=f"Success plots on {bench}",
                        xlabel="Overlap threshold", ylabel="Success rate")]
  longest = max(len(t["eao_curve"]) for t in trackers.values())
  return [plot_curves(trackers, "eao_curve", "eao", np.arange(longest),
                      path("eao_curve.png"),
                      title=f"Expected overlap curves on {bench}",
                      xlabel="Sequence length (frames)",
                      ylabel="Expected average overlap")]


def plot_cumulative(a_values, r_values, path, *, names=("accuracy", "robustness"), title=""):
  """Paper Fig. 7: per-setting values (dots) and their cumulative mean (line) as settings are
  added, for two metrics side by side (A left, R right); returns `path`."""
  fig = Figure(figsize=(10, 4))
  FigureCanvasAgg(fig)
  for col, (values, name) in enumerate(zip((a_values, r_values), names)):
    v = np.asarray(values, np.float64)
    n = np.arange(1, len(v) + 1)
    ax = fig.add_subplot(1, 2, col + 1)
    ax.plot(n, v, ".", color="0.7", markersize=4, label="each setting")
    ax.plot(n, np.cumsum(v) / n, "-", linewidth=1.8, label=f"cumulative mean [{v.mean():.3f}]")
    ax.set(xlabel="Number of hyper-parameter settings", ylabel=name, xlim=(1, max(len(v), 2)))
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=150, bbox_inches="tight")
  return path
