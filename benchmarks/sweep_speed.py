"""Frames/s of the Appendix C sweep (`duml_jax.evaluation.sweep`) against K separate runs.

Prints one JSON object. The same K tracking settings (drawn from the sweep's default ranges,
seed 0) are scored on the same S held-out synthetic sequences (JPEG frames on disk, written
once into a temporary folder) twice:

* sweep: one `sweep.run_sweep` (K settings x S sequences as lanes, traced parameters, one
  compiled program);
* separate: K `evaluate_lib.evaluate_model` runs (evaluate.py's library, `batch_sequences=S`),
  each compiling its own tracker since the parameters are static there.

Each is run cold (first in the process: compilation included) and warm (again into a fresh
output folder: compiled programs reused, the K separate trackers from `adapter`'s cache of 16).
Frames are K x the sequences' frames; frames/s = frames / wall seconds, result files written
and scored included. Random weights with the not-found threshold disabled (as
`track_speed.py`): the scheduled filter updates run as on a real sequence.

  python benchmarks/sweep_speed.py --config tiny --settings 8 --sequences 2 --frames 30
"""
import argparse
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.data import synthetic  # noqa: E402
from duml_jax.evaluation import evaluate_lib  # noqa: E402
from duml_jax.evaluation import sweep  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="tiny", help="configs/duml.py argument")
  p.add_argument("--settings", type=int, default=8, help="K tracking settings")
  p.add_argument("--sequences", type=int, default=2, help="S synthetic sequences")
  p.add_argument("--frames", type=int, default=30, help="frames per sequence")
  p.add_argument("--protocol", default="one_pass", choices=("one_pass", "vot"))
  args = p.parse_args(argv)

  config = evaluate_lib.with_tracking(duml_configs.get_config(args.config),
                                      {"not_found_threshold": float("-inf")}, "otb")
  model = duml_lib.build_model(config.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
  settings = sweep.sample_settings(config, sweep.DEFAULT_RANGES, args.settings, seed=0)
  protocol = "vot" if args.protocol == "vot" else None
  result = common.header("sweep_speed", args.config)
  root = tempfile.mkdtemp(prefix="sweep_speed_")
  seqs = evaluate_lib.sequence_set_dir(config, root, "synthetic",
                                       synthetic.EVAL_SEEDS[:args.sequences], args.frames)
  frames = args.settings * args.sequences * args.frames
  result.update(settings=args.settings, sequences=args.sequences,
                frames_per_sequence=args.frames, protocol=args.protocol, frames=frames,
                ranges={k: list(v) for k, v in sweep.DEFAULT_RANGES.items()})

  def run_sweep(tag):
    t0 = time.perf_counter()
    sweep.run_sweep(config, variables, "otb", seqs, os.path.join(root, f"sweep_{tag}"),
                    settings, protocol=protocol, settings_per_chunk=args.settings,
                    batch_sequences=args.sequences, plot=False, log_every_s=1e9)
    return time.perf_counter() - t0

  def run_separate(tag):
    t0 = time.perf_counter()
    for i, values in enumerate(settings):
      evaluate_lib.evaluate_model(evaluate_lib.with_tracking(config, values, "otb"), variables,
                                  "otb", seqs, os.path.join(root, f"sep_{tag}_{i}"),
                                  batch_sequences=args.sequences, protocol=protocol,
                                  name="one", plot=False)
    return time.perf_counter() - t0

  for name, fn in (("sweep", run_sweep), ("separate", run_separate)):
    for tag in ("cold", "warm"):
      s = fn(tag)
      result[f"{name}_{tag}"] = {"seconds": round(s, 2), "frames_per_s": round(frames / s, 1)}
      print(f"# {name} {tag}: {s:.1f} s", file=sys.stderr, flush=True)
  for tag in ("cold", "warm"):
    result[f"speedup_{tag}"] = round(result[f"separate_{tag}"]["seconds"] /
                                     result[f"sweep_{tag}"]["seconds"], 2)
  common.finish(result)


if __name__ == "__main__":
  main()
