"""Trains DuML: `python train.py --config=configs/duml.py:VARIANT --workdir=DIR`.

Rerunning with the same workdir resumes from its latest checkpoint. Any
config field can be overridden, e.g. `--config.num_train_steps=20`. On
several hosts, start the same command on each with `--multihost` (JAX reads
the coordinator from the cluster environment, or pass
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`).

Bad input (an unknown config key, an unwritable workdir, ...) exits with
status 2 and a line naming it; --verbosity=1 or DUML_TRACEBACK=1 shows the
traceback too.

Prints one line per log step (a live progress bar on a terminal) and the
evaluation tables; `--verbosity=0` adds every library's INFO log lines.
"""
from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from duml_jax import cli
from duml_jax import config_lib
from duml_jax import console
from duml_jax.evaluation import writers
from duml_jax.experiments import train_eval

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
  cli.check_output_dir(_WORKDIR.value, "workdir")        # before any work
  console.quiet_other_libraries()
  if _MULTIHOST.value or _COORD.value:
    jax.distributed.initialize(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                               process_id=_PID.value)
  config = config_lib.validate(_CONFIG.value, training=True)
  if jax.process_index() == 0:
    print(f"{config.name}: {config.num_train_steps} steps on {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s), {jax.process_count()} process(es) -> "
          f"{_WORKDIR.value}", flush=True)
  out = train_eval.train_and_evaluate(config, _WORKDIR.value)
  for name, report in out["reports"].items():
    if report is not None:
      print(f"\n== evaluation: {name} ==\n{writers.format_table(report)}", flush=True)


if __name__ == "__main__":
  cli.run(main)
