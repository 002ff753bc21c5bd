"""Grid search of tracking hyper-parameters on the synthetic validation split.

Tracking hyper-parameters (cosine-window influence, size penalty, size
smoothing, fusion weight, ...) are tuned on sequences rendered from
`synthetic.VALIDATION_SEEDS`: inside the training seed range but never drawn by
the CPU-sized recipe, and disjoint from the held-out `EVAL_SEEDS` that the
reported numbers use. Usage:

  python -m duml_jax.experiments.tune --workdir=WORKDIR \
      --grid='window_influence=0.2,0.3,0.42;penalty_k=0.05,0.15'

runs every combination in one `duml_jax.evaluation.sweep` pass (the traced
parameters share one compiled tracker; the sweep's folder ``WORKDIR/tune/runs``
keeps each finished combination, so a killed or later run with another grid
resumes), writes ``WORKDIR/tune/tune.json`` (one entry per combination ever
run there) and ``tune.md`` (sorted by success AUC), and prints the best
combination as ``--config.tracking.KEY=V`` flags.
"""
import json
import os
from typing import Dict

from absl import flags

from duml_jax import cli
from duml_jax import console
from duml_jax.data import synthetic
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import sweep as sweep_lib
from duml_jax.evaluation import writers

BENCHMARK = "otb"    # the one-pass protocol the held-out synthetic sets use
parse_grid = sweep_lib.parse_grid
combinations = sweep_lib.combinations


def check_untouched(config):
  """Refuses a checkpoint whose training draws include validation seeds."""
  s = config.data.synthetic
  first, stop = int(s.first_seed), int(s.first_seed) + int(s.num_videos)
  v = synthetic.VALIDATION_SEEDS
  if first < v.stop and v.start < stop:
    raise ValueError(f"config.data.synthetic draws training seeds [{first}, {stop}), which "
                     f"overlap the validation seeds [{v.start}, {v.stop}): tuning on them "
                     f"would tune on training videos")


def with_tracking(config, values: Dict[str, float]):
  """A copy of `config` with `values` set in config.tracking (and in the one-pass
  protocol's benchmark entry, which would override them)."""
  try:
    return evaluate_lib.with_tracking(config, values, BENCHMARK)
  except KeyError as e:
    raise KeyError(f"--grid key: {e.args[0]}") from e


def validation_dir(config, root, num_sequences: int, num_frames: int):
  """Writes (once) the validation sequences; returns their folder."""
  return evaluate_lib.sequence_set_dir(config, root, "validation",
                                       synthetic.VALIDATION_SEEDS[:num_sequences], num_frames,
                                       allowed=synthetic.VALIDATION_SEEDS)


def _fmt(v):
  return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _key(values):
  return json.dumps(values, sort_keys=True)


def tune(config, variables, grid, out_dir, num_sequences=8, num_frames=100,
         batch_sequences=4):
  """Runs every combination of `grid` on the validation split; returns the sorted entries."""
  check_untouched(config)
  folder = validation_dir(config, out_dir, num_sequences, num_frames)
  combos = combinations(grid)
  for values in combos:
    with_tracking(config, values)          # a wrong key or value fails before tracking
  summary = sweep_lib.run_sweep(config, variables, BENCHMARK, folder, out_dir, combos,
                                batch_sequences=batch_sequences, plot=False)
  path = os.path.join(out_dir, "tune.json")
  done = json.load(open(path)) if os.path.exists(path) else []
  index = {_key(e["values"]): e for e in done}
  for e in summary["settings"]:
    index[_key(e["values"])] = {"values": e["values"], "success_auc": e["success_auc"]}
  done = list(index.values())
  writers.atomic_write_text(path, json.dumps(done, indent=1))
  done.sort(key=lambda e: -e["success_auc"])
  # Entries of earlier grids resumed from tune.json may lack keys: '-' is the config's value.
  keys = sorted(set(grid).union(*(e["values"] for e in done)))
  lines = ["| " + " | ".join(keys) + " | validation AUC |",
           "|" + "---|" * (len(keys) + 1)]
  lines += ["| " + " | ".join(_fmt(e['values'][k]) if k in e['values'] else "-" for k in keys) +
            f" | {e['success_auc']:.3f} |" for e in done]
  writers.atomic_write_text(os.path.join(out_dir, "tune.md"), "\n".join(lines) + "\n")
  return done


def _define_flags():
  """Command-line flags, defined only when run as a script (the module is also
  imported next to others that define flags of the same names)."""
  flags.DEFINE_string("workdir", None, "training workdir (checkpoint + config)")
  flags.DEFINE_string("grid", None, "KEY=V1,V2;KEY2=... over config.tracking keys")
  flags.DEFINE_string("out", None, "output folder (default WORKDIR/tune)")
  flags.DEFINE_integer("num_sequences", 8, "validation sequences")
  flags.DEFINE_integer("frames", 100, "frames per validation sequence")
  flags.DEFINE_integer("batch_sequences", 4, "sequences tracked at once")
  flags.mark_flags_as_required(["workdir", "grid"])


def main(argv):
  del argv
  console.quiet_other_libraries()
  from duml_jax import checkpoint  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  variables, config = checkpoint.restore_variables(f.workdir)
  out = f.out or os.path.join(f.workdir, "tune")
  entries = tune(config, variables, parse_grid(f.grid), out, f.num_sequences, f.frames,
                 f.batch_sequences)
  best = entries[0]
  print(open(os.path.join(out, "tune.md")).read())
  print("best (validation AUC %.3f): %s" % (best["success_auc"], " ".join(
      f"--config.tracking.{k}={_fmt(v)}" for k, v in best["values"].items())))


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
