"""Evaluates a DuML checkpoint (or scores existing result files) on a benchmark.

  python evaluate.py --benchmark=otb --dataset_dir=../shared/data/otb_sample \
      --output_dir=/tmp/eval --checkpoint=WORKDIR [--config=configs/duml.py:tiny]
  python evaluate.py --benchmark=vot2018 --dataset_dir=VOT2018 --output_dir=OUT --score_only
  python evaluate.py --video=clip.mp4 --init_box=x,y,w,h --output_dir=OUT --checkpoint=WORKDIR

`--checkpoint` is a train.py workdir (its latest checkpoint and the config
saved beside it are used; `--config` overrides the config, e.g. to
evaluate another fusion weight with `--config.tracking.mu=0.7`).
Without `--checkpoint` the model is randomly initialised (a smoke test, not
a tracker). Results go to OUT/<tracker_name>/ in the benchmark's own format,
with OUT/report.json, a printed table and success/precision plots.
"""
import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
from ml_collections import config_flags

from duml_jax import config_lib
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import video as video_lib
from duml_jax.evaluation import writers
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import adapter
from duml_jax.tracking import tracker as tracker_lib
from duml_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config (default: the checkpoint's).",
                                          lock_config=True)
_BENCHMARK = flags.DEFINE_enum("benchmark", None, sorted(evaluate_lib.BENCHMARKS), "Benchmark.")
_DATASET = flags.DEFINE_string("dataset_dir", None, "The benchmark's folder.")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where results, report.json and plots go.")
_CKPT = flags.DEFINE_string("checkpoint", None, "A train.py workdir.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SCORE_ONLY = flags.DEFINE_bool("score_only", False, "Score result files already in output_dir.")
_TRACKERS = flags.DEFINE_list("trackers", [], "--score_only: tracker folders (default: all).")
_SEQUENCES = flags.DEFINE_list("sequences", [], "Only these sequences.")
_BATCH = flags.DEFINE_integer("batch_sequences", 1, "Sequences tracked at once (jax.vmap).")
_SPLIT = flags.DEFINE_string("split", None, "got10k: val (default) | test; lasot/trackingnet too.")
_NAME = flags.DEFINE_string("tracker_name", None, "Result folder name (default from config).")
_BASELINES = flags.DEFINE_list("baselines", [], "Also run: keep_first, mil.")
_PROTOCOL = flags.DEFINE_enum("protocol", None, ["vot"], "Run the VOT re-init protocol instead.")
_VIDEO = flags.DEFINE_string("video", None, "Video mode: a video file or a folder of frames.")
_INIT_BOX = flags.DEFINE_list("init_box", None, "Video mode: x,y,w,h of the target in frame 1.")


def _model_and_variables():
  if _CKPT.value:
    variables, config = trainer.restore_variables(_CKPT.value, _STEP.value, _CONFIG.value)
  elif _CONFIG.value is not None:
    config = _CONFIG.value
    logging.warning("no --checkpoint: evaluating a randomly initialised model")
    model = duml_lib.build_model(config.model)
    variables = duml_lib.init_variables(model, jax.random.PRNGKey(config.seed),
                                        config.model.exemplar_size, config.model.search_size)
  else:
    raise app.UsageError("give --checkpoint (a train.py workdir) and/or --config")
  return config_lib.validate(config), variables


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _OUTPUT.value:
    raise app.UsageError("--output_dir is required")
  if _VIDEO.value:
    if not _INIT_BOX.value or len(_INIT_BOX.value) != 4:
      raise app.UsageError("--video needs --init_box=x,y,w,h")
    config, variables = _model_and_variables()
    trk = adapter.DuMLTracker(duml_lib.build_model(config.model), variables,
                              tracker_lib.tracking_params(config))
    os.makedirs(_OUTPUT.value, exist_ok=True)
    out = os.path.join(_OUTPUT.value, os.path.splitext(os.path.basename(
        _VIDEO.value.rstrip("/")))[0] + "_duml.mp4")
    boxes = video_lib.track_video(trk, _VIDEO.value, np.asarray(_INIT_BOX.value, float), out)
    np.savetxt(out[:-4] + ".txt", boxes, fmt="%.2f", delimiter=",")
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
    config, variables = _model_and_variables()
    report = evaluate_lib.evaluate_model(
        config, variables, _BENCHMARK.value, _DATASET.value, _OUTPUT.value, split=_SPLIT.value,
        sequences=seqs, batch_sequences=_BATCH.value, name=_NAME.value,
        baseline_names=_BASELINES.value, protocol=_PROTOCOL.value)
  if report is None:
    print(f"no public ground truth for this split: submission files are in {_OUTPUT.value}")
  else:
    print(writers.format_table(report))


if __name__ == "__main__":
  app.run(main)
