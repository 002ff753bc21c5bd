"""Synthetic tracking videos: determinism, geometry, knobs, OTB-layout writer."""
import dataclasses
import os

import numpy as np
import pytest

from duml_jax.data import frames
from duml_jax.data import synthetic
from duml_jax.data.builders import base


def test_shapes_dtypes_and_determinism():
  f1, b1 = synthetic.make_video(7, 12, 48, 64)
  f2, b2 = synthetic.make_video(7, 12, 48, 64)
  f3, _ = synthetic.make_video(8, 12, 48, 64)
  assert f1.shape == (12, 48, 64, 3) and f1.dtype == np.uint8
  assert b1.shape == (12, 4) and b1.dtype == np.float32
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(b1, b2)
  assert np.abs(f1.astype(int) - f3.astype(int)).mean() > 5  # another seed, another video


def test_boxes_inside_frame_positive_and_smooth():
  cfg = synthetic.SyntheticConfig(speed=0.02)
  for seed in range(4):
    _, b = synthetic.make_video(seed, 40, 64, 80, cfg)
    assert (b[:, 2:] > 0).all()
    assert (b[:, :2] >= 0).all()
    assert (b[:, 0] + b[:, 2] <= 80 + 1e-4).all() and (b[:, 1] + b[:, 3] <= 64 + 1e-4).all()
    centre = b[:, :2] + b[:, 2:] / 2
    # Smooth motion: no jump larger than a few times the nominal speed plus wander.
    assert np.abs(np.diff(centre, axis=0)).max() < 0.25 * 64


def test_no_scale_change_keeps_the_box_size():
  cfg = synthetic.SyntheticConfig(scale_change=0.0, aspect_change=0.0)
  _, b = synthetic.make_video(3, 30, 64, 64, cfg)
  np.testing.assert_allclose(b[:, 2:], b[:1, 2:].repeat(30, 0), rtol=1e-5)
  cfg = synthetic.SyntheticConfig(scale_change=0.4)
  _, b = synthetic.make_video(3, 60, 64, 64, cfg)
  assert b[:, 2].max() / b[:, 2].min() > 1.1


def test_box_bounds_the_target_pixels():
  """The box is the bounding box of the drawn target (alpha > 0.5) within 1 px
  wherever the target is unoccluded."""
  cfg = synthetic.SyntheticConfig(num_distractors=(1, 2), occlusion_prob=0.5)
  checked = 0
  for seed in range(3):
    v = synthetic.render_video(seed, 15, 64, 72, cfg, with_masks=True)
    for i in np.flatnonzero(v.visible > 0.999):
      ys, xs = np.nonzero(v.masks[i] > 0.5)
      x, y, w, h = v.boxes[i]
      np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                 [x, y, x + w, y + h], atol=1.0)
      checked += 1
  assert checked >= 10


def test_occlusion_and_distractor_knobs():
  occluded = synthetic.SyntheticConfig(occlusion_prob=1.0, occluder_size=(1.5, 2.0),
                                       num_distractors=(0, 0))
  clear = synthetic.SyntheticConfig(occlusion_prob=0.0, num_distractors=(0, 0))
  vis_occ = [synthetic.render_video(s, 40, 64, 64, occluded).visible.min() for s in range(4)]
  vis_clear = [synthetic.render_video(s, 40, 64, 64, clear).visible.min() for s in range(4)]
  assert min(vis_occ) < 0.5
  assert min(vis_clear) == pytest.approx(1.0)


def test_noise_bank_replaces_only_the_sensor_noise():
  """render_frame(noise_bank=...): the frame minus its noise-free render is a window of
  the bank (same i.i.d. N(0, std^2) per pixel), drawn per (scene, frame) deterministically;
  a bank smaller than the frame is refused."""
  cfg = synthetic.SyntheticConfig(noise_std=6.0)
  scene = synthetic.make_scene(3, 6, 48, 64, cfg)
  clean_scene = dataclasses.replace(scene, config=dataclasses.replace(cfg, noise_std=0.0))
  bank = synthetic.make_noise_bank(48, 64, cfg.noise_std, seed=1)
  assert bank.shape == (96, 128, 3) and bank.dtype == np.float32
  assert abs(bank.std() - 6.0) < 0.2 and abs(bank.mean()) < 0.2
  np.testing.assert_array_equal(bank, synthetic.make_noise_bank(48, 64, 6.0, seed=1))
  assert not np.array_equal(bank, synthetic.make_noise_bank(48, 64, 6.0, seed=2))
  clean = synthetic.render_frame(clean_scene, 2)[0].astype(np.float32)
  exact = synthetic.render_frame(scene, 2)[0].astype(np.float32)
  banked = synthetic.render_frame(scene, 2, noise_bank=bank)[0].astype(np.float32)
  np.testing.assert_array_equal(banked,
                                synthetic.render_frame(scene, 2, noise_bank=bank)[0])
  unclipped = (clean > 30) & (clean < 225)
  assert unclipped.mean() > 0.5
  for frame in (exact, banked):
    resid = (frame - clean)[unclipped]
    assert 5.0 < resid.std() < 7.0 and abs(resid.mean()) < 0.5
  assert not np.array_equal(exact, banked)
  # The residual is one window of the bank (up to the truncation to uint8 of both frames).
  resid = banked - clean
  fits = [np.abs(resid - bank[oy:oy + 48, ox:ox + 64])[unclipped].max()
          for oy in range(49) for ox in range(65)]
  assert min(fits) < 1.0 and sorted(fits)[1] > 10.
  other = synthetic.render_frame(scene, 3, noise_bank=bank)[0].astype(np.float32)
  clean3 = synthetic.render_frame(clean_scene, 3)[0].astype(np.float32)
  assert np.abs((other - clean3) - resid).mean() > 1.0   # another frame, another window
  with pytest.raises(ValueError, match="noise bank"):
    synthetic.render_frame(scene, 2, noise_bank=bank[:40])


def test_procedural_noise_bank_mode():
  """ProceduralVideos(noise='bank'): frames equal those of exact mode up to the sensor
  noise, deterministic, the bank not pickled; an unknown mode names the config key."""
  import pickle  # pylint: disable=g-import-not-at-top
  cfg = synthetic.SyntheticConfig(noise_std=2.0)
  exact = synthetic.ProceduralVideos(0, 4, 8, 48, 64, cfg, jpeg_quality=100)
  bank = synthetic.ProceduralVideos(0, 4, 8, 48, 64, cfg, jpeg_quality=100, noise="bank")
  rec = bank.record(2)
  a, b = exact.frame(rec, 4).astype(int), bank.frame(rec, 4).astype(int)
  assert not np.array_equal(a, b) and np.abs(a - b).mean() < 4.0
  np.testing.assert_array_equal(bank.frame(rec, 4), b)
  assert bank._bank is not None  # pylint: disable=protected-access
  clone = pickle.loads(pickle.dumps(bank))
  assert clone._bank is None  # pylint: disable=protected-access
  np.testing.assert_array_equal(clone.frame(clone.record(2), 4), b)
  with pytest.raises(ValueError, match="data.synthetic.noise='fast'"):
    synthetic.ProceduralVideos(0, 4, 8, 48, 64, cfg, noise="fast")


def test_seed_ranges_are_disjoint():
  a, b = synthetic.TRAIN_SEEDS, synthetic.EVAL_SEEDS
  assert a.step == b.step == 1 and (a.stop <= b.start or b.stop <= a.start)


def test_make_sequence_set_writes_otb_layout(tmp_path):
  seeds = [synthetic.EVAL_SEEDS.start, synthetic.EVAL_SEEDS.start + 5]
  names = synthetic.make_sequence_set(seeds, tmp_path, num_frames=4, height=32, width=40)
  assert names == [synthetic.sequence_name(s) for s in seeds]
  for s, name in zip(seeds, names):
    imgs = sorted(os.listdir(tmp_path / name / "img"))
    assert imgs == ["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"]
    img = frames.read_frame(str(tmp_path / name / "img" / "0001.jpg"))
    assert img.shape == (32, 40, 3)
    gt = base.read_box_file(tmp_path / name / "groundtruth_rect.txt", one_based=True)
    _, boxes = synthetic.make_video(s, 4, 32, 40)
    np.testing.assert_allclose(gt, boxes, atol=0.006)


def test_make_sequence_set_refuses_training_seeds(tmp_path):
  with pytest.raises(ValueError, match="disjoint"):
    synthetic.make_sequence_set([3], tmp_path, num_frames=2, height=16, width=16)


def test_config_from_dict_rejects_unknown_keys():
  assert synthetic.SyntheticConfig.from_dict({"speed": 0.1}).speed == 0.1
  with pytest.raises(KeyError, match="bogus"):
    synthetic.SyntheticConfig.from_dict({"bogus": 1})
