"""Train, then evaluate: what train.py and the end-to-end tests run.

Composed here, above both layers, so that `duml_jax.training` never imports
`duml_jax.evaluation` nor the other way round (docs/architecture.md).
"""
import json
import os

import jax

from duml_jax.evaluation import evaluate_lib
from duml_jax.training import trainer


def train_and_evaluate(config, workdir):
  """Trains (resuming from `workdir`), then evaluates the tracker; returns {'state', 'reports'}.

  Evaluation (every process its share of the sequences, process 0 the reports):
  `config.eval.synthetic_sequences` held-out
  synthetic sequences (seeds never used in training) and the OTB-layout
  folder `config.eval.otb_sample_dir` when it exists; reports under
  `workdir/eval/<name>/report.json` and `workdir/eval/summary.json`.
  """
  state = trainer.train(config, workdir)
  reports = {}
  if config.eval.synthetic_sequences or config.eval.otb_sample_dir:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    reports = evaluate_lib.evaluate_after_training(config, trainer.eval_variables(state), workdir)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "eval", "summary.json"), "w") as f:
        json.dump(reports, f, indent=2, default=str)
  return {"state": state, "reports": reports}
