"""Issue 5 in small: a few minutes of training of the CPU-sized DuML (the
`tiny` recipe, fewer steps) lowers the loss and tracks held-out synthetic
sequences better than keeping the first box."""
import json
import os

import numpy as np

from configs import duml as duml_config
from duml_jax.experiments import train_eval

STEPS = 300


def test_short_training_loss_falls_and_tracking_beats_keep_first_box(tmp_path):
  c = duml_config.get_config("tiny")
  c.unlock()
  c.batch_size = 8
  c.steps_per_epoch = STEPS // c.optim.num_epochs
  c.num_train_steps = STEPS
  c.log_every_steps = 10
  c.checkpoint_every_steps = STEPS
  c.eval.synthetic_sequences = 2
  c.eval.synthetic_frames = 60
  c.eval.batch_sequences = 2
  c.eval.otb_sample_dir = ""
  workdir = str(tmp_path / "tiny")
  out = train_eval.train_and_evaluate(c, workdir)

  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  # Step 1 (the loss terms at initialisation), then every 10th step.
  assert [r["step"] for r in rows] == [1] + list(range(10, STEPS + 1, 10))
  losses = [r["loss"] for r in rows]
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses

  trackers = out["reports"]["synthetic"]["trackers"]
  ours = next(v for k, v in trackers.items() if k.startswith("DuML"))
  keep = trackers["KeepFirstBox"]
  assert ours["success_auc"] > keep["success_auc"], (ours["success_auc"],
                                                       keep["success_auc"])
