"""Evaluates a tracker (or scores existing result files) on a benchmark.

  python evaluate.py --benchmark=otb --dataset_dir=../shared/data/otb_sample \
      --output_dir=/tmp/eval --checkpoint=WORKDIR [--config=configs/duml.py:tiny]
  python evaluate.py --config=configs/duml_nano.py:nanotrack --benchmark=otb \
      --dataset_dir=../shared/data/otb_sample --output_dir=/tmp/nano --baselines=cv2_nano
  python evaluate.py --config=configs/duml_nano.py:duml_nano,mu=0.8 --checkpoint=META_WORKDIR \
      --benchmark=otb --dataset_dir=../shared/data/otb_sample --output_dir=/tmp/nano
  python evaluate.py --benchmark=vot2018 --dataset_dir=VOT2018 --output_dir=OUT --score_only
  python evaluate.py --video=clip.mp4 --init_box=x,y,w,h --output_dir=OUT --checkpoint=WORKDIR
  python evaluate.py ... --batch_sequences=16 --multihost   # on every host; OUT shared by all

DuML: `--checkpoint` is a train.py workdir (its latest checkpoint and the
config saved beside it are used; `--config` overrides the config, e.g. to
evaluate another fusion weight with `--config.tracking.mu=0.7`). Without
`--checkpoint` the model is randomly initialised (a smoke test, not a
tracker). NanoTrack / DuML-nano (`configs/duml_nano.py`: nanotrack,
duml_nano, onr): pretrained NanoTrack weights (`config.model.weights`);
`--checkpoint` is a `python -m duml_jax.training.meta_nano` workdir of the
online pieces (a meta_nano workdir alone implies `configs/duml_nano.py`).
Results go to OUT/<tracker_name>/ in the benchmark's own format, with
OUT/report.json, a printed table and success/precision plots. The settings
that made them (config, weights, code version) are kept in
OUT/<tracker_name>/settings.json: a rerun with the same settings resumes, one
with other settings is refused unless --overwrite. Other libraries' INFO log
lines are hidden unless `--verbosity` is given (e.g. `--verbosity=0`).
`--batch_sequences` lanes are sharded over this host's devices; with
`--multihost` (flags as train.py's) each process tracks its share of the
sequences into OUT (a folder every host sees), and process 0 writes the report.

Bad input (flags, files, frames, boxes) exits with status 2 and a line naming
it; --verbosity=1 or DUML_TRACEBACK=1 shows the traceback too.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from configs import duml_nano as duml_nano_config
from duml_jax import cli
from duml_jax import console
from duml_jax.evaluation import baselines
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import families
from duml_jax.evaluation import video as video_lib
from duml_jax.evaluation import writers

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config (default: the checkpoint's).",
                                          lock_config=True)
_BENCHMARK = flags.DEFINE_enum("benchmark", None, sorted(evaluate_lib.BENCHMARKS), "Benchmark.")
_DATASET = flags.DEFINE_string("dataset_dir", None, "The benchmark's folder.")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where results, report.json and plots go.")
_CKPT = flags.DEFINE_string("checkpoint", None,
                            "A train.py workdir (DuML) or a meta_nano workdir (DuML-nano).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SCORE_ONLY = flags.DEFINE_bool("score_only", False, "Score result files already in output_dir.")
_TRACKERS = flags.DEFINE_list("trackers", [], "--score_only: tracker folders (default: all).")
_SEQUENCES = flags.DEFINE_list("sequences", [], "Only these sequences.")
_BATCH = flags.DEFINE_integer("batch_sequences", 1, "Sequences tracked at once (jax.vmap).")
_SPLIT = flags.DEFINE_string("split", None, "got10k: val (default) | test; lasot/trackingnet too.")
_NAME = flags.DEFINE_string("tracker_name", None, "Result folder name (default from config).")
_BASELINES = flags.DEFINE_list("baselines", [],
                               f"Also run: {', '.join(baselines.NAMES)} (cv2.TrackerNano).")
_PROTOCOL = flags.DEFINE_enum("protocol", None, ["vot"], "Run the VOT re-init protocol instead.")
_VIDEO = flags.DEFINE_string("video", None, "Video mode: a video file or a folder of frames.")
_INIT_BOX = flags.DEFINE_list("init_box", None, "Video mode: x,y,w,h of the target in frame 1.")
_INIT_SHIFT = flags.DEFINE_list(
    "init_shift", ["0", "0"], "dx,dy pixels added to every init box (sensitivity to the start; "
    "result folders get -shift<dx>_<dy>).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace results in OUT/<tracker_name>/ made with other settings "
    "(default: refuse them; the same settings resume).")
# As train.py's: each process tracks its share of the sequences; process 0 writes the report.
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORD = flags.DEFINE_string("coordinator_address", None, "Multi-host coordinator HOST:PORT.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")


def _config_and_variables():
  """(config, variables, source: where the variables came from)."""
  config = _CONFIG.value
  if config is None and not _CKPT.value:
    raise app.UsageError("give --checkpoint (a train.py or meta_nano workdir) and/or --config")
  source = evaluate_lib.checkpoint_source(config, _CKPT.value, _STEP.value)
  config, variables = evaluate_lib.resolve(config, _CKPT.value, source["checkpoint_step"],
                                           online_config=duml_nano_config.default)
  return config, variables, source


def _init_box():
  """--init_box as four floats (a usage error naming the flag otherwise)."""
  return list(cli.parse_numbers(_INIT_BOX.value, 4, _INIT_BOX.name, "four numbers x,y,w,h "
                                "(0-based pixels of the target in the first frame)"))


def _init_shift():
  return cli.parse_numbers(_INIT_SHIFT.value, 2, _INIT_SHIFT.name,
                           "two finite numbers dx,dy (pixels)", finite=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_other_libraries()
  if not _OUTPUT.value:
    raise app.UsageError("--output_dir is required")
  cli.check_output_dir(_OUTPUT.value, "output_dir")       # before any work
  init_shift = _init_shift()
  if _MULTIHOST.value or _COORD.value:
    jax.distributed.initialize(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                               process_id=_PID.value)
  if _VIDEO.value:
    init_box = _init_box()
    config, variables, _ = _config_and_variables()
    trk = evaluate_lib.make_single_tracker(config, variables, _NAME.value)
    suffix = "_" + families.name_of(config)
    boxes, out = video_lib.track_to_folder(trk, _VIDEO.value, init_box, _OUTPUT.value, suffix,
                                           box_name="--init_box")
    print(f"tracked {len(boxes)} frames -> {out}")
    return
  if not (_BENCHMARK.value and _DATASET.value):
    raise app.UsageError("--benchmark and --dataset_dir are required")
  seqs = _SEQUENCES.value or None
  if _SCORE_ONLY.value:
    report = evaluate_lib.score_only(_BENCHMARK.value, _DATASET.value, _OUTPUT.value,
                                     _TRACKERS.value, split=_SPLIT.value, sequences=seqs,
                                     protocol=_PROTOCOL.value)
  else:
    config, variables, source = _config_and_variables()
    report = evaluate_lib.evaluate_model(
        config, variables, _BENCHMARK.value, _DATASET.value, _OUTPUT.value, split=_SPLIT.value,
        sequences=seqs, batch_sequences=_BATCH.value, name=_NAME.value,
        baseline_names=_BASELINES.value, protocol=_PROTOCOL.value, overwrite=_OVERWRITE.value,
        source=source, init_shift=init_shift)
    if jax.process_index() != 0:
      return    # process 0 scores every process's files and prints the table
  if report is None:
    print(f"no public ground truth for this split: submission files are in {_OUTPUT.value}")
  else:
    print(writers.format_table(report))


if __name__ == "__main__":
  cli.run(main)
