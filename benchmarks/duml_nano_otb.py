"""DuML-nano on real video: NanoTrack alone vs + DuML's online branch, on the OTB sample.

Runs through the evaluation runner (`runner.evaluate`, OTB one-pass
protocol; report.json, success/precision plots in --out_dir) and prints a
markdown table. Trackers:

  NanoTrack-cv2            cv2.TrackerNano (v2 ONNX), `baselines.opencv_nano`
  NanoTrack-JAX            `nanotrack_tracker.NanoTracker` (OpenCV config)
  <init|meta>-mu<m>[-vote] DuML-nano: online pieces at their closed-form /
                           identity start ('init') or meta-trained ('meta',
                           from --meta_workdir); mu = 1 is ONR alone (box
                           from NanoTrack's decoded boxes at the online peak)

The OTB sample is the evaluation set: nothing here is tuned on it (the
tracking hyper-parameters are cv2.TrackerNano's and the paper's).

  PYTHONPATH=. python benchmarks/duml_nano_otb.py --meta_workdir=/tmp/duml_nano_meta \
      --out_dir=/tmp/duml_nano_otb
"""
import argparse
import json
import pathlib
import sys
import time

import jax

from duml_jax.convert.nanotrack import load_nanotrack
from duml_jax.data import benchmarks
from duml_jax.evaluation import baselines
from duml_jax.evaluation import runner
from duml_jax.models import duml_nano as dn
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import nanotrack_tracker as ntt
from duml_jax.training import meta_nano

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MUS = (0.0, 0.2, 0.5, 0.8, 1.0)


def trackers(weights, meta_workdir=None, mus=MUS, voting_off_mu=0.8):
  """The compared `BatchTracker`s (see the module docstring)."""
  nano = load_nanotrack(weights, "v2")
  out = [baselines.opencv_nano(weights / "nanotrackv2_nanotrack_backbone_sim.onnx",
                               weights / "nanotrackv2_nanotrack_head_sim.onnx",
                               name="NanoTrack-cv2"),
         runner.SequentialAdapter(lambda: ntt.NanoTracker(nano), 1, "NanoTrack-JAX")]
  model = dn.build("v2")
  variants = {"init": dn.init_online_params(model, jax.random.PRNGKey(0))}
  if meta_workdir:
    variants["meta"] = meta_nano.load_online_params(meta_workdir)
  cfg = dnt.default_config()
  for tag, online in variants.items():
    variables = dn.from_nanotrack(nano, online)
    runs = [(mu, True) for mu in mus] + [(voting_off_mu, False)]
    if tag == "init":   # mu = 0 ignores the online branch: one run is enough
      runs = [(mu, v) for mu, v in runs if mu > 0]
    for mu, vote in runs:
      p = dnt.params(cfg, mu=mu, score_voting=vote)
      name = f"DuMLnano-{tag}-mu{mu:g}" + ("-vote" if vote else "")
      out.append(runner.SequentialAdapter(
          lambda variables=variables, p=p, name=name: dnt.DuMLNanoTracker(
              model, variables, p, name), 1, name))
  return out


def markdown_table(report):
  rows = ["| tracker | AUC | Prec@20 | SR@.5 | FPS |", "|---|---|---|---|---|"]
  for name, r in report["trackers"].items():
    fps = r.get("fps")
    rows.append(f"| {name} | {100 * r['success_auc']:.1f} | {100 * r['precision']:.1f} | "
                f"{100 * r['success_rate_50']:.1f} | "
                f"{'-' if fps is None else f'{fps:.0f}'} |")
  return "\n".join(rows)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--otb_dir", default=str(SHARED / "data" / "otb_sample"))
  ap.add_argument("--weights", default=str(SHARED / "weights" / "nanotrack"))
  ap.add_argument("--meta_workdir", default="",
                  help="meta_nano workdir (online_params.npz); empty: no 'meta' trackers")
  ap.add_argument("--out_dir", required=True)
  args = ap.parse_args()
  otb = pathlib.Path(args.otb_dir)
  if not otb.is_dir():
    print(json.dumps({"skipped": f"{otb}: not found"}))
    return 0
  seqs = benchmarks.load_benchmark("otb", otb)
  t0 = time.perf_counter()
  report = runner.evaluate("OTB", seqs, args.out_dir,
                           trackers=trackers(pathlib.Path(args.weights), args.meta_workdir))
  print(markdown_table(report))
  print(f"\n{len(seqs)} sequences, {sum(len(s.frames) for s in seqs)} frames, "
        f"{time.perf_counter() - t0:.0f}s; report and plots in {args.out_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
