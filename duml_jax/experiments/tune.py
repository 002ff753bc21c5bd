"""Grid search of tracking hyper-parameters on the synthetic validation split.

Tracking hyper-parameters (cosine-window influence, size penalty, size
smoothing, fusion weight, ...) are tuned on sequences rendered from
`synthetic.VALIDATION_SEEDS`: inside the training seed range but never drawn by
the CPU-sized recipe, and disjoint from the held-out `EVAL_SEEDS` that the
reported numbers use. Usage:

  python -m duml_jax.experiments.tune --workdir=WORKDIR \
      --grid='window_influence=0.2,0.3,0.42;penalty_k=0.05,0.15'

writes ``WORKDIR/tune/tune.json`` (one entry per combination, written
atomically after each, so a killed run resumes) and ``tune.md`` (sorted by
success AUC), and prints the best combination as ``--config.tracking.KEY=V``
flags. Every combination compiles its own tracker (the parameters are static).
"""
import itertools
import json
import os
from typing import Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging

from duml_jax.data import synthetic
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import writers

BENCHMARK = "otb"    # the one-pass protocol the held-out synthetic sets use


def _value(text: str):
  try:
    return float(text)
  except ValueError:
    return text                 # a word (e.g. centre_from=score_peak); typed by with_tracking


def parse_grid(text: str) -> Dict[str, List]:
  """'a=1,2;b=0.5;c=x' -> {'a': [1.0, 2.0], 'b': [0.5], 'c': ['x']} (keys of config.tracking).

  Numbers become floats, anything else stays a word; `with_tracking` casts each value to
  its key's type and refuses one that is not (e.g. a word for a numeric key)."""
  grid = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    if "=" not in part:
      raise ValueError(f"--grid entry {part!r}: expected KEY=V1,V2,...")
    key, values = part.split("=", 1)
    key = key.strip()
    grid[key] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    if not grid[key]:
      raise ValueError(f"--grid entry {part!r}: no value")
  if not grid:
    raise ValueError("--grid is empty")
  return grid


def combinations(grid: Dict[str, Sequence[float]]) -> List[Dict[str, float]]:
  keys = sorted(grid)
  return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


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
  path = os.path.join(out_dir, "tune.json")
  done = json.load(open(path)) if os.path.exists(path) else []
  seen = {_key(e["values"]) for e in done}
  combos = combinations(grid)
  for i, values in enumerate(combos):
    if _key(values) in seen:
      continue
    c = with_tracking(config, values)
    run_dir = os.path.join(out_dir, "runs", "_".join(f"{k}{_fmt(v)}" for k, v in values.items()))
    report = evaluate_lib.evaluate_model(c, variables, BENCHMARK, folder, run_dir,
                                         batch_sequences=batch_sequences, name="tuned",
                                         plot=False)
    auc = float(report["trackers"]["tuned"]["success_auc"])
    done.append({"values": values, "success_auc": auc})
    writers.atomic_write_text(path, json.dumps(done, indent=1))
    logging.info("tune: %d/%d %s -> AUC %.3f", i + 1, len(combos), values, auc)
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
  app.run(main)
