"""The real-video comparison's summary (`scripts/real_video.sh`): one table, one report.

Reads evaluate.py's ``report.json`` of a folder holding the results of
cv2.TrackerNano, NanoTrack-JAX, DuML-nano and (where run) DuML-nano-offline --
DuML-nano at mu 0, its offline branch alone with the same calibration and voting,
the ablation of the online branch -- prints one table (success AUC, precision at
20 px, per-sequence AUC) and the paired per-sequence differences DuML-nano -
NanoTrack-JAX and DuML-nano - DuML-nano-offline with their bootstrap intervals
(`paired`), and writes ``OUT_DIR/report.json`` with one entry per tracker, named
`NAMES`.

With several starts (evaluate.py ``--init_shift``: folders ``<name>-shift<dx>_<dy>``
beside ``<name>``), each sequence's score is its mean over the starts: one run
of a tracker on a short clip swings by many AUC points with a 1-pixel change of
its start (docs/duml_nano.md), the mean over starts much less.

  python -m duml_jax.evaluation.real_video --results=OUT/results --out_dir=OUT
"""
import argparse
import json
import pathlib

from duml_jax.evaluation import paired
from duml_jax.evaluation import writers

# report name -> result-folder name prefix written by evaluate.py
NAMES = {"NanoTrack-cv2": "NanoTrack-cv2", "NanoTrack-JAX": "NanoTrack-JAX",
         "DuML-nano": "DuML-nano", "DuML-nano-offline": "DuML-nano-offline"}
OPTIONAL = ("DuML-nano-offline",)   # results folders from before the ablation lack it


SHIFT = "-shift"    # evaluate_lib.shift_suffix


def _named(folder, prefix):
  return folder == prefix or folder.startswith(prefix + "-")


def _find(trackers, prefix):
  """[the folder of the plain start, then its -shift folders (sorted)] of `prefix`."""
  longer = [v for v in NAMES.values() if v != prefix and v.startswith(prefix)]
  hits = [k for k in trackers
          if _named(k, prefix) and not any(_named(k, o) for o in longer)]
  plain = [k for k in hits if SHIFT not in k]
  if len(plain) != 1:
    raise KeyError(f"report: want one tracker named {prefix!r}[-...], found {plain} among "
                   f"{sorted(trackers)}")
  return plain + sorted(k for k in hits if k.startswith(plain[0] + SHIFT))


def _mean_over_starts(trackers, folders):
  """One entry whose per-sequence scores are the means over the starts' folders."""
  if len(folders) == 1:
    return dict(trackers[folders[0]], result_folder=folders[0])
  seqs = sorted(trackers[folders[0]]["sequences"])
  for f in folders[1:]:
    if sorted(trackers[f]["sequences"]) != seqs:
      raise KeyError(f"report: {f} and {folders[0]} hold different sequences")
  per = {}
  for s in seqs:
    runs = [trackers[f]["sequences"][s] for f in folders]
    per[s] = {k: sum(r[k] for r in runs) / len(runs) for k in ("success_auc", "precision")}
    per[s]["success_auc_per_start"] = [r["success_auc"] for r in runs]
  mean = lambda k: sum(v[k] for v in per.values()) / len(per)
  return {"success_auc": mean("success_auc"), "precision": mean("precision"),
          "sequences": per, "result_folders": folders, "starts": len(folders)}


def summarise(results_report, extra=None):
  """{'trackers': {NAME: entry}, 'duml_nano_vs_nanotrack_jax': paired stats, ...}."""
  trackers = results_report["trackers"]
  out = {"benchmark": results_report.get("benchmark"), "trackers": {}}
  starts = {}
  for name, prefix in NAMES.items():
    if name in OPTIONAL and not any(_named(k, prefix) for k in trackers):
      continue
    folders = _find(trackers, prefix)
    starts[name] = [f[len(folders[0]):] for f in folders]
    out["trackers"][name] = _mean_over_starts(trackers, folders)
  if len({tuple(v) for v in starts.values()}) != 1:
    raise KeyError(f"report: the trackers were run from different starts: {starts}")
  out["starts"] = ["plain"] + [v[len(SHIFT):].replace("_", ",")
                               for v in starts["DuML-nano"][1:]]
  t = out["trackers"]
  auc = lambda n: {s: v["success_auc"] for s, v in t[n]["sequences"].items()}
  out["duml_nano_vs_nanotrack_jax"] = paired.paired_difference(auc("DuML-nano"),
                                                               auc("NanoTrack-JAX"))
  out["nanotrack_jax_vs_cv2"] = paired.paired_difference(auc("NanoTrack-JAX"),
                                                         auc("NanoTrack-cv2"))
  if "DuML-nano-offline" in t:   # the online branch's own share of the gain
    out["duml_nano_vs_offline"] = paired.paired_difference(auc("DuML-nano"),
                                                           auc("DuML-nano-offline"))
  if extra:
    out.update(extra)
  return out


def table(summary) -> str:
  """The printed table: overall AUC / precision, then per-sequence AUC (x 100)."""
  t = summary["trackers"]
  names = list(t)
  seqs = sorted(t[names[0]]["sequences"])
  lines = [f"{'tracker':17s} {'AUC':>6s} {'Prec@20':>8s}"]
  for n in names:
    lines.append(f"{n:17s} {100 * t[n]['success_auc']:6.1f} {100 * t[n]['precision']:8.1f}")
  lines.append("")
  lines.append(f"{'sequence':16s} " + " ".join(f"{n:>17s}" for n in names) + f" {'DuML-JAX':>9s}")
  for s in seqs:
    v = [100 * t[n]["sequences"][s]["success_auc"] for n in names]
    d = 100 * summary["duml_nano_vs_nanotrack_jax"]["differences"][s]
    lines.append(f"{s:16s} " + " ".join(f"{x:17.1f}" for x in v) + f" {d:+9.1f}")
  k = summary.get("frame_stride", 1)
  if k > 1:
    lines.append(f"(one frame in {k} of each sequence: duml_jax.data.subsample)")
  if len(summary.get("starts", ())) > 1:
    lines.append(f"(each sequence: the mean over {len(summary['starts'])} starts, init box "
                 f"shifted by {', '.join(summary['starts'][1:])} px and not)")
  lines.append("")
  rows = [("DuML-nano - NanoTrack-JAX", "duml_nano_vs_nanotrack_jax"),
          ("DuML-nano - DuML-nano-offline (the online branch)", "duml_nano_vs_offline")]
  for label, key in rows:
    if key not in summary:
      continue
    p = summary[key]
    lines.append(f"{label}: mean {100 * p['mean']:+.2f} AUC, 95% bootstrap CI "
                 f"[{100 * p['ci_low']:+.2f}, {100 * p['ci_high']:+.2f}] over "
                 f"{p['num_sequences']} sequences; wins {p['wins']}, losses {p['losses']}; "
                 f"worst {100 * p['worst']:+.1f} ({p['worst_sequence']})")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--results", required=True, help="evaluate.py output folder (report.json)")
  ap.add_argument("--out_dir", required=True)
  ap.add_argument("--duml_nano_config", default="", help="recorded in report.json")
  ap.add_argument("--frame_stride", type=int, default=1,
                  help="recorded: the sequences were every k-th frame (data.subsample)")
  ap.add_argument("--report", default="report.json", help="file name under --out_dir")
  args = ap.parse_args(argv)
  path = pathlib.Path(args.results, "report.json")
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no evaluate.py report (run evaluate.py --score_only)")
  extra = {"frame_stride": args.frame_stride}
  if args.duml_nano_config:
    extra["duml_nano_config"] = args.duml_nano_config
  summary = summarise(json.loads(path.read_text()), extra)
  out = pathlib.Path(args.out_dir, args.report)
  writers.atomic_write_text(out, json.dumps(summary, indent=1))
  print(table(summary))
  print(f"\nwritten {out}")


if __name__ == "__main__":
  main()
