"""Paired per-sequence comparison of two trackers with a bootstrap confidence interval.

A benchmark mean hides which sequences a tracker wins or loses; with a few
sequences one large gain can carry it. `paired_difference` takes the
per-sequence scores of two trackers on the same sequences and returns the
mean difference, a percentile bootstrap interval over sequences (resampled
with replacement, the pairs kept together), wins / losses and the worst
sequence. `compare_reports` reads them from evaluate.py's ``report.json``.
"""
import json
import pathlib

import numpy as np


def paired_difference(a, b, *, num_resamples: int = 10000, confidence: float = 0.95,
                      seed: int = 0):
  """Per-sequence differences a - b and their bootstrap interval.

  Args:
    a, b: {sequence: score} of the two trackers (the same sequence names).
    num_resamples: bootstrap resamples of the sequences.
    confidence: two-sided level of the percentile interval.
    seed: numpy seed (the interval is reproducible).
  Returns:
    {'mean', 'ci_low', 'ci_high', 'wins', 'losses', 'ties', 'worst', 'worst_sequence',
     'num_sequences', 'differences': {sequence: a - b}}.
  """
  if set(a) != set(b):
    raise ValueError(f"paired_difference: different sequences: only in a "
                     f"{sorted(set(a) - set(b))}, only in b {sorted(set(b) - set(a))}")
  if not a:
    raise ValueError("paired_difference: no sequences")
  if not 0. < confidence < 1.:
    raise ValueError(f"paired_difference: confidence={confidence} outside (0, 1)")
  names = sorted(a)
  d = np.asarray([float(a[n]) - float(b[n]) for n in names])
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(d), size=(num_resamples, len(d)))
  means = d[idx].mean(axis=1)
  tail = 100. * (1. - confidence) / 2.
  lo, hi = np.percentile(means, [tail, 100. - tail])
  worst = int(np.argmin(d))
  return {"mean": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
          "wins": int((d > 0).sum()), "losses": int((d < 0).sum()), "ties": int((d == 0).sum()),
          "worst": float(d[worst]), "worst_sequence": names[worst], "num_sequences": len(d),
          "differences": dict(zip(names, d.tolist()))}


def report_scores(report, tracker: str, metric: str = "success_auc"):
  """{sequence: metric} of one tracker in an evaluate.py report (dict or path)."""
  if not isinstance(report, dict):
    path = pathlib.Path(report)
    report = json.loads(path.read_text())
  trackers = report.get("trackers", {})
  if tracker not in trackers:
    raise KeyError(f"report has no tracker {tracker!r}; it has {sorted(trackers)}")
  seqs = trackers[tracker].get("sequences", {})
  missing = [n for n, v in seqs.items() if metric not in v]
  if missing:
    raise KeyError(f"tracker {tracker!r}: no {metric!r} for sequences {missing}")
  return {n: v[metric] for n, v in seqs.items()}


def compare_reports(report, tracker_a: str, tracker_b: str, metric: str = "success_auc", **kw):
  """`paired_difference` of two trackers of one evaluate.py report."""
  return paired_difference(report_scores(report, tracker_a, metric),
                           report_scores(report, tracker_b, metric), **kw)


def _only_tracker(report, path, skip=("KeepFirstBox",)):
  """The single non-baseline tracker of a report; an error naming the file otherwise."""
  names = [n for n in report.get("trackers", {}) if n not in skip]
  if len(names) != 1:
    raise SystemExit(f"{path}: name the tracker (--tracker_a / --tracker_b); it has {names}")
  return names[0]


def main(argv=None):
  """python -m duml_jax.evaluation.paired REPORT_A [REPORT_B] [--tracker_a=...] [--tracker_b=...]"""
  import argparse  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(prog="python -m duml_jax.evaluation.paired",
                              description="paired per-sequence difference A - B with a "
                                          "bootstrap interval, from evaluate.py report.json files")
  p.add_argument("report_a")
  p.add_argument("report_b", nargs="?", help="default: REPORT_A (two trackers of one report)")
  p.add_argument("--tracker_a")
  p.add_argument("--tracker_b")
  p.add_argument("--metric", default="success_auc")
  p.add_argument("--resamples", type=int, default=10000)
  args = p.parse_args(argv)
  reports = []
  for path in (args.report_a, args.report_b or args.report_a):
    try:
      reports.append(json.loads(pathlib.Path(path).read_text()))
    except (OSError, ValueError) as e:
      raise SystemExit(f"{path}: cannot read an evaluate.py report ({e})") from None
  ta = args.tracker_a or _only_tracker(reports[0], args.report_a)
  tb = args.tracker_b or _only_tracker(reports[1], args.report_b or args.report_a)
  if args.report_b is None and ta == tb:
    raise SystemExit(f"{args.report_a}: one report needs two trackers: name them "
                     f"(--tracker_a / --tracker_b); it has {sorted(reports[0]['trackers'])}")
  try:
    r = paired_difference(report_scores(reports[0], ta, args.metric),
                          report_scores(reports[1], tb, args.metric),
                          num_resamples=args.resamples)
  except (KeyError, ValueError) as e:
    raise SystemExit(str(e).strip('"')) from None
  scale = 100.    # every per-sequence metric of a report is a fraction; print points
  print(f"{ta} - {tb} ({args.metric}, {r['num_sequences']} sequences): "
        f"{scale * r['mean']:+.2f} [{scale * r['ci_low']:+.2f}, {scale * r['ci_high']:+.2f}] "
        f"95% bootstrap; wins {r['wins']} / losses {r['losses']} / ties {r['ties']}; "
        f"worst {scale * r['worst']:+.2f} {r['worst_sequence']}")
  return r


if __name__ == "__main__":
  main()
