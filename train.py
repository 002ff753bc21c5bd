"""Trains DuML: `python train.py --config=configs/duml.py:VARIANT --workdir=DIR`.

Rerunning with the same workdir resumes from its latest checkpoint. Any
config field can be overridden, e.g. `--config.num_train_steps=20`. On
several hosts, start the same command on each with `--multihost` (JAX reads
the coordinator from the cluster environment, or pass
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`).
"""
from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from duml_jax import config_lib
from duml_jax.evaluation import writers
from duml_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and evaluation reports.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORD = flags.DEFINE_string("coordinator_address", None, "Multi-host coordinator HOST:PORT.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _MULTIHOST.value or _COORD.value:
    jax.distributed.initialize(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                               process_id=_PID.value)
  config = config_lib.validate(_CONFIG.value, training=True)
  logging.info("devices: %s (process %d of %d)", jax.devices(), jax.process_index(),
               jax.process_count())
  out = trainer.train_and_evaluate(config, _WORKDIR.value)
  for name, report in out["reports"].items():
    if report is not None:
      print(f"\n== evaluation: {name} ==\n{writers.format_table(report)}", flush=True)


if __name__ == "__main__":
  app.run(main)
