"""Failure analysis of a checkpoint on the validation split (`experiments.diagnose`)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_configs
from duml_jax.data import synthetic
from duml_jax.experiments import diagnose
from duml_jax.evaluation import metrics
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import postprocess
from duml_jax.tracking import tracker as tracker_lib


def test_loss_events_hand_made_track():
  T = 12
  gt = np.tile([[10., 10., 20., 20.]], (T, 1))
  pred = gt.copy()
  pred[2] = [12., 10., 40., 20.]          # still on target (IoU 0.5), twice as wide
  pred[3] = [100., 100., 20., 20.]        # lost onto the other object
  pred[4] = [100., 100., 20., 20.]        # still lost: no new event
  pred[6] = [60., 60., 20., 20.]          # lost again, target occluded (visible 0.3 at 5)
  pred[11] = [200., 10., 20., 20.]        # lost on nothing, 6 frames after the occlusion
  visible = np.ones(T)
  visible[5] = 0.3
  objects = np.tile([[[100., 100., 20., 20.]]], (1, T, 1))
  ev = diagnose.loss_events(pred, gt, visible, objects)
  assert [(e["frame"], e["kind"]) for e in ev] == [(3, "on_object"), (6, "occluded"),
                                                   (11, "other")]
  # Frame before the first loss: 40 x 20 box centred at (32, 20) vs 20 x 20 at (20, 20).
  assert ev[0]["size_ratio"] == pytest.approx(np.sqrt(2.))
  assert ev[0]["centre_error"] == pytest.approx(12. / 20.)
  assert ev[0]["object_iou"] == pytest.approx(1.0)
  assert ev[1]["size_ratio"] == pytest.approx(1.0) and ev[1]["centre_error"] == 0.
  # Occlusion only counts within the 5 frames up to the loss.
  late = diagnose.loss_events(pred, gt, visible, objects, occlusion_frames=1)
  assert [e["kind"] for e in late] == ["on_object", "other", "other"]
  assert diagnose.loss_events(gt, gt, visible, objects) == []


def test_scale_slope_and_iou():
  assert diagnose.scale_slope([-1., 0., 1.], [-0.4, 0.1, 0.6]) == pytest.approx(0.5)
  a = np.array([[0., 0., 10., 10.], [0., 0., 10., 10.], [0., 0., 0., 0.]])
  b = np.array([[5., 0., 10., 10.], [20., 20., 5., 5.], [0., 0., 0., 0.]])
  np.testing.assert_allclose(metrics.rect_iou(a, b), [50. / 150., 0., 0.])


def test_scene_objects_are_the_distractors_and_occluder():
  cfg = synthetic.SyntheticConfig(num_distractors=(2, 2), occlusion_prob=1.0)
  scene = synthetic.make_scene(synthetic.VALIDATION_SEEDS.start, 5, 64, 64, cfg)
  objs = diagnose.scene_objects(scene)
  assert objs.shape == (3, 5, 4)
  sp, cx, cy, w, h = (list(scene.behind) + list(scene.front))[0]
  np.testing.assert_allclose(objs[0, :, 0], cx - w / 2)


@pytest.fixture(scope="module")
def tiny_model():
  c = duml_configs.get_config("tiny")
  model = duml_lib.build_model(c.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0), c.model.exemplar_size,
                                      c.model.search_size)
  return c, model, variables


def test_measure_is_what_track_moves_by(tiny_model):
  c, model, variables = tiny_model
  tcfg = tracker_lib.tracking_params(c, "otb")
  video = synthetic.render_video(synthetic.VALIDATION_SEEDS.start, 2, 256, 256)
  image_size = np.array([256., 256.], np.float32)
  state = tracker_lib.init(model, variables, tcfg, video.frames[0], video.boxes[0], image_size)
  m = jax.jit(lambda s, f: tracker_lib.measure(model, variables, tcfg, s, f))(
      state, video.frames[1])
  centre, size = postprocess.update_target(state.centre, state.size, m["box_crop"],
                                           m["scale_z"], m["lr"], state.image_size,
                                           tcfg.min_size)
  _, out = tracker_lib.track(model, variables, tcfg, state, video.frames[1])
  np.testing.assert_allclose(out["box"], jnp.concatenate([centre - size / 2, size]),
                             rtol=1e-5, atol=1e-4)
  assert float(out["score"]) == pytest.approx(float(m["score"]), abs=1e-6)


def test_diagnose_end_to_end_on_validation_sequences(tiny_model, tmp_path, capsys):
  c, _, variables = tiny_model
  out = str(tmp_path / "diag")
  report = diagnose.diagnose(c, variables, out, num_sequences=2, num_frames=12, every=5)
  assert report["num_sequences"] == 2 and len(report["sequences"]) == 2
  assert [s["sequence"] for s in report["sequences"]] == [
      synthetic.sequence_name(s) for s in synthetic.VALIDATION_SEEDS[:2]]
  # Probes on frames 5 and 10 of each sequence, for every scale.
  assert set(report["scale_response"]) == {f"{k:g}" for k in diagnose.SCALES}
  assert all(v["n"] == 4 for v in report["scale_response"].values())
  assert report["size_bias"] == report["scale_response"]["1"]["mean"]
  assert np.isfinite(report["scale_slope"])
  n_events = sum(len(s["events"]) for s in report["sequences"])
  assert sum(report["loss_events"].values()) == n_events
  assert all(0. <= s["mean_iou"] <= 1. for s in report["sequences"])
  assert json.load(open(os.path.join(out, "report.json")))["mean_iou"] == report["mean_iou"]
  assert set(report["training_pairs_size_bias"]) == {"augmented", "nominal"}
  assert "scale response" in diagnose.summary(report) and "training pairs" in diagnose.summary(report)
  assert "[diagnose] 2/2" in capsys.readouterr().out


def test_diagnose_refuses_training_seeds_and_scales_without_one(tiny_model, tmp_path):
  c, _, variables = tiny_model
  with pytest.raises(ValueError, match="must include 1.0"):
    diagnose.diagnose(c, variables, str(tmp_path), 1, 4, scales=(0.8, 1.25))
  bad = duml_configs.get_config("tiny").unlock()
  bad.data.synthetic.num_videos = synthetic.VALIDATION_SEEDS.start + 1
  with pytest.raises(ValueError, match="overlap the validation seeds"):
    diagnose.diagnose(bad, variables, str(tmp_path), 1, 4)


def test_log_size_errors_by_hand():
  pred = np.zeros((2, 4))
  pred[0] = [0.3, 0.1, np.log(1.2), np.log(1.2)]     # 20% larger than the anchor
  pred[1] = [0., 0., 5., 5.]                          # off the mask
  target = np.zeros((2, 4))
  target[0, 2:] = [np.log(1.1), np.log(0.9)]
  errs = diagnose.log_size_errors(pred, target, [True, False])
  np.testing.assert_allclose(errs, [np.log(1.2) - 0.5 * np.log(0.99)])


def test_training_pairs_size_bias_runs_on_a_restored_style_config(tiny_model):
  c, _, variables = tiny_model
  # A checkpoint's config comes back from JSON with its datasets as plain dicts.
  restored = duml_configs.get_config("tiny").unlock()
  restored.data.datasets = [dict(e) for e in restored.data.datasets]
  out = diagnose.training_pairs_size_bias(restored, variables, num_pairs=4, augment=False)
  assert out["pairs"] == 4 and out["n"] > 0 and np.isfinite(out["mean"])
  aug = diagnose.training_pairs_size_bias(c, variables, num_pairs=4, augment=True)
  assert aug["pairs"] == 4 and aug["mean"] != out["mean"]
