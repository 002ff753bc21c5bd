"""The real-video comparison's summary (`scripts/real_video.sh`): one table, one report.

Reads evaluate.py's ``report.json`` of a folder holding the results of
cv2.TrackerNano, NanoTrack-JAX and DuML-nano, prints one table (success AUC,
precision at 20 px, per-sequence AUC) and the paired per-sequence difference
DuML-nano - NanoTrack-JAX with its bootstrap interval (`paired`), and writes
``OUT_DIR/report.json`` with one entry per tracker, named `NAMES`.

  python -m duml_jax.evaluation.real_video --results=OUT/results --out_dir=OUT
"""
import argparse
import json
import pathlib

from duml_jax.evaluation import paired

# report name -> result-folder name prefix written by evaluate.py
NAMES = {"NanoTrack-cv2": "NanoTrack-cv2", "NanoTrack-JAX": "NanoTrack-JAX",
         "DuML-nano": "DuML-nano"}


def _find(trackers, prefix):
  hits = [k for k in trackers if k == prefix or k.startswith(prefix + "-")]
  if len(hits) != 1:
    raise KeyError(f"report: want one tracker named {prefix!r}[-...], found {hits} among "
                   f"{sorted(trackers)}")
  return hits[0]


def summarise(results_report, extra=None):
  """{'trackers': {NAME: entry}, 'duml_nano_vs_nanotrack_jax': paired stats, ...}."""
  trackers = results_report["trackers"]
  out = {"benchmark": results_report.get("benchmark"), "trackers": {}}
  for name, prefix in NAMES.items():
    src = _find(trackers, prefix)
    entry = dict(trackers[src])
    entry["result_folder"] = src
    out["trackers"][name] = entry
  t = out["trackers"]
  auc = lambda n: {s: v["success_auc"] for s, v in t[n]["sequences"].items()}
  out["duml_nano_vs_nanotrack_jax"] = paired.paired_difference(auc("DuML-nano"),
                                                               auc("NanoTrack-JAX"))
  out["nanotrack_jax_vs_cv2"] = paired.paired_difference(auc("NanoTrack-JAX"),
                                                         auc("NanoTrack-cv2"))
  if extra:
    out.update(extra)
  return out


def table(summary) -> str:
  """The printed table: overall AUC / precision, then per-sequence AUC (x 100)."""
  t = summary["trackers"]
  names = list(t)
  seqs = sorted(t[names[0]]["sequences"])
  lines = [f"{'tracker':16s} {'AUC':>6s} {'Prec@20':>8s}"]
  for n in names:
    lines.append(f"{n:16s} {100 * t[n]['success_auc']:6.1f} {100 * t[n]['precision']:8.1f}")
  lines.append("")
  lines.append(f"{'sequence':16s} " + " ".join(f"{n:>14s}" for n in names) + f" {'DuML-JAX':>9s}")
  for s in seqs:
    v = [100 * t[n]["sequences"][s]["success_auc"] for n in names]
    d = 100 * summary["duml_nano_vs_nanotrack_jax"]["differences"][s]
    lines.append(f"{s:16s} " + " ".join(f"{x:14.1f}" for x in v) + f" {d:+9.1f}")
  p = summary["duml_nano_vs_nanotrack_jax"]
  lines.append("")
  lines.append(f"DuML-nano - NanoTrack-JAX: mean {100 * p['mean']:+.2f} AUC, 95% bootstrap CI "
               f"[{100 * p['ci_low']:+.2f}, {100 * p['ci_high']:+.2f}] over {p['num_sequences']} "
               f"sequences; wins {p['wins']}, losses {p['losses']}; worst "
               f"{100 * p['worst']:+.1f} ({p['worst_sequence']})")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--results", required=True, help="evaluate.py output folder (report.json)")
  ap.add_argument("--out_dir", required=True)
  ap.add_argument("--duml_nano_config", default="", help="recorded in report.json")
  args = ap.parse_args(argv)
  path = pathlib.Path(args.results, "report.json")
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no evaluate.py report (run evaluate.py --score_only)")
  summary = summarise(json.loads(path.read_text()),
                      {"duml_nano_config": args.duml_nano_config} if args.duml_nano_config
                      else None)
  out = pathlib.Path(args.out_dir, "report.json")
  out.write_text(json.dumps(summary, indent=1))
  print(table(summary))
  print(f"\nwritten {out}")


if __name__ == "__main__":
  main()
