"""Crops/augmentation, frame sampling and the batch pipeline."""
import os

import numpy as np
import pytest

from duml_jax.data import augment
from duml_jax.data import pipeline
from duml_jax.data import sampling
from duml_jax.data import synthetic

NO_AUG = dict(shift=0.0, scale=0.0, blur=0.0, flip=0.0, color=0.0, color_std=0.1, gray=0.0,
              brightness=0.0)


# ----------------------------------------------------------------------------- crops


def _frame_with_rect(h, w, box, value=255, background=0):
  frame = np.full((h, w, 3), background, np.uint8)
  x, y, bw, bh = box
  frame[y:y + bh, x:x + bw] = value
  return frame


@pytest.mark.parametrize("out_size,kind,flip,shift", [(127, "template", 0.0, 4.0),
                                                      (255, "search", 0.0, 64.0),
                                                      (63, "search", 1.0, 16.0)])
def test_box_in_crop_bounds_the_drawn_rectangle(out_size, kind, flip, shift):
  rng = np.random.default_rng(0)
  aug = dict(augment.search_aug_defaults() if kind == "search" else
             augment.template_aug_defaults(), flip=flip, shift=shift, blur=0.0, color=0.0,
             gray=0.0)
  for _ in range(10):
    w, h = (int(v) for v in rng.integers(12, 60, 2))
    x, y = int(rng.integers(0, 200 - w)), int(rng.integers(0, 150 - h))
    frame = _frame_with_rect(150, 200, (x, y, w, h))
    s_z = augment.context_size((x, y, w, h))
    region = s_z if kind == "template" else s_z * 255 / 127
    crop, box, _ = augment.crop_and_augment(rng, frame, (x, y, w, h), out_size, region, aug,
                                            pad_value=(0, 0, 0))
    ys, xs = np.nonzero(crop[..., 0] > 127)
    bx, by, bw, bh = box
    # Only the part of the rectangle inside the crop is drawn.
    lo = np.clip([bx, by], 0, out_size)
    hi = np.clip([bx + bw, by + bh], 0, out_size)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                               [lo[0], lo[1], hi[0], hi[1]], atol=1.0)


def test_target_centre_is_crop_centre_plus_shift():
  rng = np.random.default_rng(1)
  frame = np.zeros((120, 160, 3), np.uint8)
  for _ in range(20):
    box = (rng.uniform(0, 100), rng.uniform(0, 80), rng.uniform(5, 50), rng.uniform(5, 40))
    aug = dict(NO_AUG, shift=64.0, scale=0.18)
    _, out_box, params = augment.crop_and_augment(rng, frame, box, 255,
                                                  augment.context_size(box) * 255 / 127, aug)
    centre = out_box[:2] + out_box[2:] / 2
    np.testing.assert_allclose(centre, np.array([127.5, 127.5]) + params.shift, atol=1e-3)
    assert max(abs(v) for v in params.shift) <= 64.0
    assert all(0.82 - 1e-9 <= s <= 1.18 + 1e-9 for s in params.scale)


def test_zoom_scales_both_axes_by_one_log_uniform_factor():
  """search_aug.zoom: the window's two scales share one factor exp(U(-zoom, zoom)); zoom 0
  draws nothing extra (the pysot stream), and the crop box follows the drawn window."""
  aug = dict(NO_AUG, scale=0.0, zoom=0.4)
  logs = []
  for k in range(400):
    p = augment.sample_crop_params(np.random.default_rng(k), aug)
    assert p.scale[0] == p.scale[1]
    logs.append(np.log(p.scale[0]))
  logs = np.array(logs)
  assert logs.min() >= -0.4 - 1e-9 and logs.max() <= 0.4 + 1e-9
  assert abs(logs.mean()) < 0.04 and abs(logs.std() - 0.4 / np.sqrt(3.)) < 0.03
  # With both jitters the per-axis ratio keeps pysot's range and the zoom multiplies both.
  both = augment.sample_crop_params(np.random.default_rng(3), dict(NO_AUG, scale=0.18, zoom=0.4))
  rng = np.random.default_rng(3)
  rng.uniform(-1.0, 1.0, 2)
  u = rng.uniform(-1.0, 1.0, 2)
  np.testing.assert_allclose(both.scale, (1 + 0.18 * u) * np.exp(rng.uniform(-0.4, 0.4)))
  # zoom 0 (and configs saved without the key) leave the random stream unchanged.
  plain = dict(NO_AUG, scale=0.18, zoom=0.0)
  no_key = {k: v for k, v in plain.items() if k != "zoom"}
  a = augment.sample_crop_params(np.random.default_rng(5), plain)
  b = augment.sample_crop_params(np.random.default_rng(5), no_key)
  assert a == b
  box = (40.0, 30.0, 20.0, 30.0)
  frame = np.zeros((120, 160, 3), np.uint8)
  _, out_box, params = augment.crop_and_augment(np.random.default_rng(9), frame, box, 127,
                                                60.0, dict(NO_AUG, zoom=0.4))
  np.testing.assert_allclose(out_box[2:], np.array(box[2:]) * 127 / (60.0 * params.scale[0]),
                             rtol=1e-5)


def test_unaugmented_crops_follow_siamrpn_scale():
  """No augmentation: the target keeps its size times 127 / s_z in both crops."""
  box = (40.0, 30.0, 30.0, 20.0)
  s_z = augment.context_size(box)
  assert s_z == pytest.approx(np.sqrt((30 + 25) * (20 + 25)))  # p = (w + h) / 2
  frame = np.zeros((100, 120, 3), np.uint8)
  rng = np.random.default_rng(0)
  _, z_box, _ = augment.crop_and_augment(rng, frame, box, 127, s_z, NO_AUG)
  _, x_box, _ = augment.crop_and_augment(rng, frame, box, 255, s_z * 255 / 127, NO_AUG)
  k = 127 / s_z
  np.testing.assert_allclose(z_box, [63.5 - 15 * k, 63.5 - 10 * k, 30 * k, 20 * k], rtol=1e-5)
  np.testing.assert_allclose(x_box, [127.5 - 15 * k, 127.5 - 10 * k, 30 * k, 20 * k],
                             rtol=1e-5)


def test_padding_uses_the_frame_mean():
  frame = np.zeros((40, 40, 3), np.uint8)
  frame[..., 0] = 200
  frame[:20, :, 1] = 100  # channel means: 200, 50, 0
  crop, _, _ = augment.crop_and_augment(np.random.default_rng(0), frame, (0, 0, 4, 4), 31,
                                        200.0, NO_AUG)
  np.testing.assert_array_equal(crop[0, 0], [200, 50, 0])  # far outside the frame


def test_photometric_options():
  rng = np.random.default_rng(0)
  img = (np.random.default_rng(1).uniform(0, 255, (31, 31, 3))).astype(np.uint8)
  gray = augment.photometric(rng, img, dict(NO_AUG, gray=1.0))
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  same = augment.photometric(rng, img, NO_AUG)
  np.testing.assert_array_equal(same, img)
  colour = augment.photometric(rng, img, dict(NO_AUG, color=1.0)).astype(int) - img
  inner = colour[(img > 30).all(-1) & (img < 225).all(-1)]
  assert (inner == inner[0]).all(axis=0).all() and np.abs(inner[0]).max() > 0  # one offset
  blurred = augment.photometric(rng, img, dict(NO_AUG, blur=1.0))
  assert blurred.std() < img.std()
  with pytest.raises(KeyError, match="gray"):
    augment.crop_and_augment(rng, img, (1, 1, 5, 5), 15, 10.0,
                             {k: v for k, v in NO_AUG.items() if k != "gray"})


# ----------------------------------------------------------------------------- sampling


def test_sample_pair_stays_valid_and_in_range():
  rng = np.random.default_rng(0)
  valid = np.ones(50, bool)
  valid[::3] = False
  for _ in range(200):
    t, s = sampling.sample_pair(rng, valid, frame_range=4)
    assert valid[t] and valid[s] and abs(t - s) <= 4
  assert sampling.sample_pair(rng, np.zeros(5, bool), 4) is None
  assert sampling.sample_pair(rng, np.array([False, True]), 100) == (1, 1)


def test_sample_sequence_is_causal_within_max_gap():
  rng = np.random.default_rng(0)
  valid = np.ones(100, bool)
  valid[40:45] = False
  causal = 0
  for _ in range(200):
    sup, qry = sampling.sample_sequence(rng, valid, 3, 2, max_gap=10)
    assert sup.shape == (3,) and qry.shape == (2,)
    assert valid[sup].all() and valid[qry].all()
    assert (np.diff(sup) >= 0).all()
    assert qry.max() - sup.min() <= 20  # both within max_gap of the base frame
    causal += qry.min() > sup.max()
  assert causal > 190  # only a base frame at the very end has nothing after it
  # One-frame "video" (COCO): everything repeats the frame.
  sup, qry = sampling.sample_sequence(rng, np.array([True]), 3, 2, 30)
  assert sup.tolist() == [0, 0, 0] and qry.tolist() == [0, 0]


def test_mixture_weights():
  probs = sampling.mixture_probs([("a", 1.0), ("b", 3.0)])
  np.testing.assert_allclose(probs, [0.25, 0.75])
  rng = np.random.default_rng(0)
  draws = [sampling.choose_source(rng, probs) for _ in range(4000)]
  assert abs(np.mean(draws) - 0.75) < 0.03
  with pytest.raises(ValueError):
    sampling.mixture_probs([("a", 0.0)])


# ----------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  c = pipeline.default_data_config()
  c.tfds_dir = str(d / "tfds")
  c.datasets = [pipeline.synthetic_dataset(str(d / "frames"), frame_range=5)]
  c.synthetic.update(num_videos=3, num_frames=8, height=48, width=64)
  c.template_size, c.search_size = 31, 63
  c.template_aug = dict(c.template_aug, shift=2.0)
  c.search_aug = dict(c.search_aug, shift=8.0)
  c.num_workers = 0
  c.num_threads = 1
  return c, pipeline.load_sources(c)  # built once for the module


def _iterator(config, sources, **kw):
  args = dict(process_index=0, process_count=1, global_batch_size=4, seed=3)
  args.update(kw)
  return pipeline.make_train_iterator(config, sources=sources, **args)


def test_pair_batch_format(tiny_config):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  b = next(_iterator(c, sources))
  assert b["template"].shape == (4, 31, 31, 3) and b["template"].dtype == np.uint8
  assert b["search"].shape == (4, 63, 63, 3) and b["search"].dtype == np.uint8
  assert b["template_box"].shape == b["search_box"].shape == (4, 4)
  assert b["search_box"].dtype == np.float32 and b["negative"].dtype == bool
  assert set(b) == {"template", "search", "template_box", "search_box", "negative"}
  # Target centres sit within the configured shift of the crop centres.
  zc = b["template_box"][:, :2] + b["template_box"][:, 2:] / 2
  xc = b["search_box"][:, :2] + b["search_box"][:, 2:] / 2
  assert np.abs(zc - 15.5).max() <= 2.0 + 1e-3 and np.abs(xc - 31.5).max() <= 8.0 + 1e-3


def test_full_size_pair_batch(tiny_config):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  c.template_size, c.search_size = 127, 255
  b = next(_iterator(c, sources, global_batch_size=2))
  assert b["template"].shape == (2, 127, 127, 3) and b["search"].shape == (2, 255, 255, 3)


def test_negative_probability(tiny_config):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  c.neg_prob = 1.0
  assert next(_iterator(c, sources))["negative"].all()
  c.neg_prob = 0.0
  assert not next(_iterator(c, sources))["negative"].any()


def test_sequence_batch_format(tiny_config):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  c.mode = "sequence"
  c.num_support, c.num_query = 3, 2
  b = next(_iterator(c, sources, global_batch_size=2))
  assert b["support_template"].shape == (2, 3, 31, 31, 3)
  assert b["support_search"].shape == (2, 3, 63, 63, 3)
  assert b["support_box"].shape == b["support_template_box"].shape == (2, 3, 4)
  assert b["query_search"].shape == (2, 2, 63, 63, 3) and b["query_box"].shape == (2, 2, 4)
  assert not b["negative"].any() and b["negative"].shape == (2,)
  # Template and search crops of a support frame share the frame, hence the
  # scale: equal target sizes up to the two crops' scale jitter.
  ratio = b["support_box"][..., 2:] / b["support_template_box"][..., 2:]
  assert ((ratio > 1 / 1.25 / 1.06) & (ratio < 1.25 * 1.06)).all()


def test_deterministic_resume_and_process_sharding(tiny_config):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  it = _iterator(c, sources)
  batches = [next(it) for _ in range(3)]
  assert it.get_state() == {"step": 3}
  resumed = next(_iterator(c, sources, start_step=2))
  for k in resumed:
    np.testing.assert_array_equal(resumed[k], batches[2][k])
  it.set_state({"step": 1})
  again = next(it)
  np.testing.assert_array_equal(again["search"], batches[1]["search"])
  # Two processes' local batches are the two halves of the global batch.
  halves = [next(_iterator(c, sources, process_index=p, process_count=2, start_step=1)) for p in (0, 1)]
  for k in batches[1]:
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batches[1][k])
  other_seed = next(_iterator(c, sources, seed=4))
  assert not np.array_equal(other_seed["search"], batches[0]["search"])
  with pytest.raises(ValueError, match="divisible"):
    _iterator(c, sources, process_count=3)


def test_unreadable_frames_are_skipped_and_counted(tiny_config, tmp_path):
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  entry, root, src = sources[0]
  # A second copy of the dataset's root where every frame of one video is gone.
  broken = tmp_path / "broken"
  os.symlink(root, tmp_path / "orig")
  first = src[0]["frames"][0].decode().split("/img/")[0]
  for rec_dir in {f.decode().split("/img/")[0] for i in range(len(src))
                  for f in src[i]["frames"]}:
    os.makedirs(broken / rec_dir, exist_ok=True)
    if rec_dir != first:
      os.symlink(os.path.join(root, rec_dir, "img"), broken / rec_dir / "img")
  it = _iterator(c, [(entry, str(broken), src)], global_batch_size=8)
  b = next(it)
  assert b["search"].shape[0] == 8
  assert it.metrics["frame_error"] > 0 and it.metrics["examples"] == 8


def test_default_config_keys():
  c = pipeline.default_data_config()
  assert [d.name for d in c.datasets] == ["imagenet_vid", "youtube_bb", "coco", "lasot",
                                          "got10k"]
  assert c.neg_prob == 0.2 and c.num_support == 3 and c.num_query == 2
  assert c.template_size == 127 and c.search_size == 255 and c.context == 0.5
  assert c.template_aug.shift == 4 and c.search_aug.shift == 64
  assert c.search_aug.scale == 0.18 and c.search_aug.blur == 0.2 and c.search_aug.gray == 0.05
  assert set(c.template_aug) == set(augment.AUG_KEYS)


def test_grain_worker_processes_give_the_same_batches(tiny_config):
  """Samples are a pure function of (seed, index), so worker processes change
  nothing (the sample function and TFDS sources pickle into the workers)."""
  from absl import flags
  flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
  c, sources = tiny_config[0].copy_and_resolve_references(), tiny_config[1]
  expected = next(_iterator(c, sources, start_step=5))
  c.num_workers = 1
  it = _iterator(c, sources, start_step=5)
  try:
    got = next(it)
  finally:
    it.close()
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k])


def test_procedural_synthetic_source(tiny_config):
  """Rendered-on-demand videos: same frames and boxes as the written set,
  deterministic batches, and training seeds only."""
  c = tiny_config[0].copy_and_resolve_references()
  c.synthetic.procedural = True
  c.synthetic.jpeg_quality = 100
  sources = pipeline.load_sources(c)
  (_, _, src), = sources
  assert isinstance(src, synthetic.ProceduralVideos) and len(src) == 3
  rec = src.record(1)
  v = synthetic.render_video(1, 8, 48, 64)
  np.testing.assert_array_equal(src.frame(rec, 5), v.frames[5])
  np.testing.assert_allclose(rec["boxes"], v.boxes)
  assert rec["valid"].all()
  b1 = next(_iterator(c, sources))
  b2 = next(_iterator(c, pipeline.load_sources(c)))
  for k in b1:
    np.testing.assert_array_equal(b1[k], b2[k])
  c.synthetic.first_seed = synthetic.EVAL_SEEDS.start
  with pytest.raises(ValueError, match="synthetic.*seeds"):
    pipeline.load_sources(c)
  c.synthetic.first_seed = 0
  c.synthetic.noise = "bank"
  (_, _, src), = pipeline.load_sources(c)
  assert src.noise == "bank"
  assert not np.array_equal(src.frame(src.record(1), 5), v.frames[5])
  c.synthetic.procedural = False
  with pytest.raises(ValueError, match="data.synthetic.noise='bank' needs"):
    pipeline.load_sources(c)
