"""DuML-nano on real video: NanoTrack alone vs + DuML's online branch, through evaluate.py.

Runs every variant of the comparison with evaluate.py's library (the same
calls as the commands below), into one output folder, then scores all of
them together (`evaluate_lib.score_only`: report.json, success/precision
plots) and prints a markdown table:

  python evaluate.py --config=configs/duml_nano.py:nanotrack --baselines=cv2_nano \\
      --benchmark=otb --dataset_dir=OTB --output_dir=OUT
  python evaluate.py --config=configs/duml_nano.py:ARG [--checkpoint=META] \\
      --benchmark=otb --dataset_dir=OTB --output_dir=OUT        # for each ARG of VARIANTS
  python evaluate.py --benchmark=otb --dataset_dir=OTB --output_dir=OUT --score_only

Trackers: NanoTrack-cv2-v2 (cv2.TrackerNano, int boxes), NanoTrack-JAX-v2,
DuMLnano-v2-<init|meta>-mu<m>[-vote]: online pieces at their closed-form /
identity start ('init') or meta-trained ('meta', from --meta_workdir); mu 1
is ONR alone (`configs/duml_nano.py:onr`). mu 0 ignores the online branch,
so it runs once ('init'). The OTB sample is the evaluation set: nothing here
is tuned on it (tracking hyper-parameters are cv2.TrackerNano's and the paper's).

  python benchmarks/duml_nano_otb.py --meta_workdir=/tmp/duml_nano_meta --out_dir=/tmp/duml_nano_otb
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import duml_nano as nano_config  # noqa: E402  pylint: disable=g-import-not-at-top
from duml_jax.convert import nanotrack as nano_convert  # noqa: E402
from duml_jax.evaluation import evaluate_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTB = os.path.join(os.path.dirname(REPO), "shared", "data", "otb_sample")
# (config arg, use the meta-trained online params if given)
VARIANTS = (
    [("duml_nano,mu=0", False)]
    + [(f"duml_nano,mu={mu}", meta) for meta in (False, True) for mu in (0.2, 0.5, 0.8)]
    + [("onr", False), ("onr", True), ("duml_nano,mu=0.8,voting=0", False),
       ("duml_nano,mu=0.8,voting=0", True)])


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
  ap.add_argument("--otb_dir", default=OTB)
  ap.add_argument("--weights", default=str(nano_convert.default_weights_dir()))
  ap.add_argument("--meta_workdir", default="",
                  help="meta_nano workdir (online_params.npz); empty: no 'meta' trackers")
  ap.add_argument("--out_dir", required=True)
  args = ap.parse_args()
  t0 = time.perf_counter()
  runs = [("nanotrack", False)] + [v for v in VARIANTS if args.meta_workdir or not v[1]]
  for i, (arg, meta) in enumerate(runs):
    config, variables = evaluate_lib.config_and_variables(
        nano_config.get_config(f"{arg},weights={args.weights}"),
        args.meta_workdir if meta else None)
    evaluate_lib.evaluate_model(config, variables, "otb", args.otb_dir, args.out_dir,
                                baseline_names=("cv2_nano",) if i == 0 else (), plot=False)
    print(f"[{time.perf_counter() - t0:.0f}s] {evaluate_lib.tracker_name(config)} done",
          file=sys.stderr, flush=True)
  report = evaluate_lib.score_only("otb", args.otb_dir, args.out_dir)
  print(markdown_table(report))
  print(f"\n{time.perf_counter() - t0:.0f}s; report and plots in {args.out_dir}")


if __name__ == "__main__":
  main()
