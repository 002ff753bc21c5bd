"""train_and_evaluate on 2 CPU devices: the loss falls, resume equals uninterrupted, NaN stops."""
import json
import os

import jax
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax import checkpoint
from duml_jax.experiments import train_eval
from duml_jax.training import trainer


def _config(tmp_path, arg, steps, **extra):
  c = duml_config.get_config(arg)
  c.unlock()
  c.batch_size = 4
  c.steps_per_epoch = 100
  c.num_train_steps = steps
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.optim.warmup_epochs = 0
  c.optim.schedule = "constant"
  c.optim.base_lr = 0.02
  c.data.data_root = str(tmp_path / "data")
  c.data.tfds_dir = str(tmp_path / "tfds")
  c.data.synthetic.num_videos = 3
  c.data.synthetic.num_frames = 12
  c.data.neg_prob = 0.0
  c.eval.synthetic_sequences = 0
  for k, v in extra.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["loss"] for line in f]


def test_pair_training_loss_falls_and_resume_equals_uninterrupted(tmp_path):
  # The same 4 examples every step (1 step per "epoch" of a 1-video stream is
  # not available, so overfit: fixed data seed and a tiny dataset).
  straight = str(tmp_path / "straight")
  c = _config(tmp_path, "tiny-ofc5s", 8)
  out = train_eval.train_and_evaluate(c, straight)
  losses = _losses(straight)
  assert len(losses) == 8 and np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
  assert int(jax.device_get(out["state"].step)) == 8

  # Killed after step 4 (its last checkpoint), then rerun to the end.
  resumed = str(tmp_path / "resumed")
  trainer.train(_config(tmp_path, "tiny-ofc5s", 4), resumed)
  trainer.train(_config(tmp_path, "tiny-ofc5s", 8), resumed)
  a, _ = checkpoint.restore_variables(straight)
  b, _ = checkpoint.restore_variables(resumed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert os.path.exists(os.path.join(resumed, "config.json"))
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(resumed))


def test_joint_training_through_the_inner_loop_runs(tmp_path):
  workdir = str(tmp_path / "joint")
  c = _config(tmp_path, "tiny,loss=eq6", 3)
  c.log_every_steps = 3
  trainer.train(c, workdir)
  rec = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  # Step 1 (the losses of the initial parameters) is always logged, then every 3rd.
  assert [r["step"] for r in rec] == [1, 3]
  for key in ("loss_online", "loss_offline", "loss_box", "loss_iou", "online_first_iter"):
    assert np.isfinite(rec[-1][key]), key
  for r in rec:                 # each Eq. 6 term as it enters the total (eq6: 10 / 1 / 1.2 / 1.2)
    for key, w in (("online", 10.), ("offline", 1.), ("box", 1.2), ("iou", 1.2)):
      np.testing.assert_allclose(r[f"weighted_{key}"], w * r[f"loss_{key}"], rtol=1e-5)


def test_nan_loss_stops_with_the_step_named(tmp_path):
  c = _config(tmp_path, "tiny-ofc5s", 4)
  c.loss.w_box = float("nan")          # the loss is NaN from the first step on
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match="step 1"):
    trainer.train(c, workdir)
  # No checkpoint holds a state from a non-finite step.
  assert not os.path.isdir(os.path.join(workdir, "checkpoints")) or not [
      d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
