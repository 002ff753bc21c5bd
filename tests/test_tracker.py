"""The DuML tracker: parameters, memory, localisation flags, init/track of every
form class, the online update schedule, and the batched adapter.

Random (untrained) tiny models: these tests check mechanics, not accuracy.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import adapter
from duml_jax.tracking import memory as memory_lib
from duml_jax.tracking import postprocess
from duml_jax.tracking import tracker

SMALL = dict(memory_size=8, num_init_samples=3, init_iters=2)
FORMS = {"duml": "tiny", "ofc5s": "tiny-ofc5s", "onr": "tiny-onr"}


@pytest.fixture(scope="module")
def models():
  out = {}
  for key, arg in FORMS.items():
    c = duml_config.get_config(arg)
    model = duml_lib.build_model(c.model)
    if key == "ofc5s":
      # The DuML variables without the online branch (same offline heads):
      # saves one model initialisation.
      full = out["duml"][2]
      online = ("online_features", "filter_init", "residual_fns")
      variables = {"params": {k: v for k, v in full["params"].items() if k not in online},
                   **({"batch_stats": full["batch_stats"]} if "batch_stats" in full else {})}
    else:
      variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
    out[key] = (c, model, variables)
  return out


def _frame(t, h=120, w=160, lane=0):
  """Noisy background with a bright square moving right by 3 px per frame."""
  rng = np.random.default_rng(100 * lane + t)
  img = rng.integers(40, 90, (h, w, 3)).astype(np.uint8)
  x, y = 40 + 3 * t + 5 * lane, 40 + 2 * lane
  img[y:y + 24, x:x + 30] = (220, 200, 60)
  return img


BOX0 = np.array([40., 40., 30., 24.], np.float32)


# -- parameters, memory, flags -------------------------------------------------


def test_tracking_params_overrides_and_geometry():
  c = duml_config.get_config("paper")
  p = tracker.tracking_params(c)
  assert (p.penalty_k, p.search_size, p.memory_size) == (0.05, 255, 50)
  assert len(p.box_anchor_shapes) == 5 and p.online_anchor_shapes == ((64., 64.),)
  assert tracker.tracking_params(c, "otb2015").penalty_k == 0.24
  assert tracker.tracking_params(c, "lasot").search_size == 319
  assert tracker.tracking_params(c, "no-such-benchmark").lr == c.tracking.lr
  assert tracker.tracking_params(c, online_norm="clip").online_norm == "clip"
  with pytest.raises(ValueError, match="unknown keys"):
    tracker.tracking_params(c, penalty=1.0)
  with pytest.raises(ValueError, match="search_size"):
    tracker.tracking_params(c, search_size=250)
  hash(p)   # static jit argument


def test_memory_weights_by_hand():
  # Full memory, 2 init slots, lr 0.5, min init weight 0.25:
  #   slot = lowest non-init = 2; (0.075, 0.075, 0.15, 0.2) -> slot 2 = 0.5 -> / 0.85
  #   = (0.0882, 0.0882, 0.5882, 0.2353); init total 0.1765 < 0.25:
  #   init -> 0.125 each, others x 0.75 / 0.8235 -> (0.5357, 0.2143).
  slot, w = memory_lib.new_weights(jnp.array([0.15, 0.15, 0.3, 0.4]), jnp.asarray(4), 0.5, 2, 0.25)
  assert int(slot) == 2
  np.testing.assert_allclose(w, [0.125, 0.125, 0.75 * 0.5 / 0.7, 0.75 * 0.2 / 0.7], atol=1e-6)
  # Not full: the first empty slot, the others scaled by 1 - lr.
  slot, w = memory_lib.new_weights(jnp.array([0.5, 0.5, 0., 0.]), jnp.asarray(2), 0.1, 2, 0.25)
  assert int(slot) == 2
  np.testing.assert_allclose(w, [0.45, 0.45, 0.1, 0.], atol=1e-6)


def test_memory_add_respects_keep():
  mem = memory_lib.create(jnp.ones((2, 3, 3, 4)), jnp.tile(jnp.array([[5., 5., 2., 2.]]), (2, 1)), 4)
  np.testing.assert_allclose(mem.weights, [0.5, 0.5, 0., 0.])
  feat, box = jnp.full((3, 3, 4), 7.), jnp.array([1., 2., 3., 4.])
  same = memory_lib.add(mem, feat, box, 0.1, jnp.asarray(False), 2, 0.25)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(mem)):
    np.testing.assert_array_equal(a, b)
  new = memory_lib.add(mem, feat, box, 0.1, jnp.asarray(True), 2, 0.25)
  assert int(new.count) == 3
  np.testing.assert_array_equal(new.feats[2], feat)
  np.testing.assert_array_equal(new.boxes[2], box)


def test_localisation_flags_on_synthetic_maps():
  p = tracker.tracking_params(duml_config.get_config("tiny"))
  target = jnp.array([32., 32.])      # 4 cells: window 2.2 x 4 = 8.8 cells wide
  base = np.zeros((25, 25, 1), np.float32)
  flag = lambda m: int(tracker.localisation_flag(jnp.asarray(m), target, p))
  one = base.copy(); one[12, 12] = 1.0
  assert flag(one) == tracker.FLAG_NORMAL
  lost = base.copy(); lost[12, 12] = 0.2                       # < 0.25
  assert flag(lost) == tracker.FLAG_NOT_FOUND
  two = one.copy(); two[12, 20] = 0.6                          # 8 cells away, > 0.5 x 1.0
  assert flag(two) == tracker.FLAG_DISTRACTOR
  near = one.copy(); near[12, 16] = 0.9                        # inside the 4.4-cell half window
  assert flag(near) == tracker.FLAG_NORMAL
  weak = one.copy(); weak[12, 20] = 0.4                        # < 0.5 x peak
  assert flag(weak) == tracker.FLAG_NORMAL


def test_localise_fusion_and_voting_switch(models):
  c, model, _ = models["duml"]
  rng = np.random.default_rng(0)
  heads = {"score": jnp.asarray(rng.normal(size=(1, 25, 25, 5)), jnp.float32),
           "box": jnp.asarray(0.1 * rng.normal(size=(1, 25, 25, 5, 5)), jnp.float32)}
  raw = jnp.asarray(rng.uniform(-0.2, 0.6, (25, 25, 1)), jnp.float32)
  target = jnp.array([64., 48.])
  p_off = tracker.tracking_params(c, score_voting=False, lr=1.0)
  box, lr, score = tracker.localise(model, p_off, heads, raw, target)
  # Eq. 1 by hand, then the same post-processing as `postprocess.select`.
  s_rob = (raw - raw.min()) / (raw.max() - raw.min())
  fused = 0.8 * s_rob + 0.2 * jax.nn.sigmoid(heads["score"][0])
  anchors = postprocess.anchor_offsets(25, 8, p_off.box_anchor_shapes)
  pred = postprocess.decode_boxes(heads["box"][0], anchors)
  best, penalty, _ = postprocess.select(fused, pred, target, postprocess.hann_window(25, 5),
                                        p_off.penalty_k, p_off.window_influence)
  np.testing.assert_allclose(box, pred.reshape(-1, 4)[best], rtol=1e-5)   # voting off
  np.testing.assert_allclose(score, fused.reshape(-1)[best], rtol=1e-5)
  np.testing.assert_allclose(lr, penalty.reshape(-1)[best] * fused.reshape(-1)[best], rtol=1e-5)
  voted, _, _ = tracker.localise(model, tracker.tracking_params(c, voting_sigma=1.0), heads,
                                 raw, target)
  assert np.abs(np.asarray(voted) - np.asarray(box)).max() > 1e-3    # neighbours vote
  # centre_from=score_peak: the centre is the best cell's anchor plus the parabola vertex of
  # the penalised map (max over anchors) in stride units; the size stays the box head's.
  p_peak = tracker.tracking_params(c, score_voting=False, lr=1.0, centre_from="score_peak")
  peak, _, _ = tracker.localise(model, p_peak, heads, raw, target)
  _, _, pscore = postprocess.select(fused, pred, target, postprocess.hann_window(25, 5),
                                    p_off.penalty_k, p_off.window_influence)
  r, col, a = np.unravel_index(int(best), (25, 25, 5))
  off = postprocess.peak_offset(jnp.max(pscore, -1), r, col)
  np.testing.assert_allclose(peak[:2], anchors[r, col, a, :2] + 8. * np.asarray(off), atol=1e-4)
  np.testing.assert_allclose(peak[2:], box[2:], rtol=1e-6)
  assert np.abs(np.asarray(peak[:2]) - np.asarray(box[:2])).max() > 1e-3
  with pytest.raises(ValueError, match="centre_from"):
    tracker.tracking_params(c, centre_from="peak")


# -- init / track --------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
def test_init_and_track_every_form(models, form):
  c, model, variables = models[form]
  p = tracker.tracking_params(c, **SMALL)
  size = jnp.array([160., 120.])
  state = tracker.init(model, variables, p, _frame(0), BOX0, size)
  assert (state.filter is None) == (form == "ofc5s")
  for t in range(1, 4):
    state, out = tracker.step(model, variables, p, state, _frame(t))
    box = np.asarray(out["box"])
    assert np.all(np.isfinite(box)) and np.isfinite(float(out["score"]))
    centre = box[:2] + box[2:] / 2
    assert np.all(centre >= 0) and np.all(centre <= [160, 120])
    assert np.all(box[2:] >= p.min_size) and np.all(box[2:] <= [160, 120])
    assert int(out["flag"]) in (0, 1, 2)
  assert int(state.frame) == 3


def _run(models, n, **overrides):
  c, model, variables = models["duml"]
  # Init with the SMALL parameters (compiled once for the whole module); the
  # overrides only change tracking.
  state = tracker.init(model, variables, tracker.tracking_params(c, **SMALL), _frame(0), BOX0,
                       jnp.array([160., 120.]))
  p = tracker.tracking_params(c, **SMALL, **overrides)
  first = state
  outs = []
  for t in range(1, n + 1):
    state, out = tracker.step(model, variables, p, state, _frame(t % 20))
    outs.append(jax.device_get(out))
  return p, first, state, outs


def test_update_schedule_fires_every_update_every_frames(models):
  # Every frame "normal": samples are stored each frame, 2 SD-GN steps at 20, 40.
  p, first, state, outs = _run(models, 41, not_found_threshold=-1e9, distractor_threshold=1e9)
  iters = np.array([o["iters"] for o in outs])
  assert list(np.flatnonzero(iters) + 1) == [20, 40]
  assert set(iters[iters > 0]) == {p.update_iters}
  assert int(state.num_updates) == 2 and int(state.memory.count) == p.memory_size
  assert not np.allclose(state.filter, first.filter)
  w = np.asarray(state.memory.weights)
  np.testing.assert_allclose(w.sum(), 1., rtol=1e-5)
  assert w[:p.num_init_samples].sum() >= p.init_samples_min_weight - 1e-6


def test_distractor_updates_at_once(models):
  # A tiny exclusion window: with the target ~5 cells wide on an 11x11 map, DiMP's 2.2x
  # window covers the whole map and no second peak is left to be a distractor.
  p, first, state, outs = _run(models, 2, not_found_threshold=-1e9, distractor_threshold=-1e9,
                               distractor_window=0.01)
  assert [int(o["flag"]) for o in outs] == [tracker.FLAG_DISTRACTOR] * 2
  assert [int(o["iters"]) for o in outs] == [p.distractor_iters] * 2
  # First distractor sample: weight distractor_lr, the 3 init samples share 0.8.
  _, w = memory_lib.new_weights(first.memory.weights, first.memory.count, p.distractor_lr,
                                p.num_init_samples, p.init_samples_min_weight)
  np.testing.assert_allclose(w[:4], [0.8 / 3] * 3 + [0.2], rtol=1e-5)
  assert int(state.memory.count) == p.num_init_samples + 2


def test_lost_frames_are_not_added(models):
  p, first, state, outs = _run(models, 3, not_found_threshold=1e9)
  assert [int(o["flag"]) for o in outs] == [tracker.FLAG_NOT_FOUND] * 3
  assert all(int(o["iters"]) == 0 for o in outs)
  for a, b in zip(jax.tree.leaves(state.memory), jax.tree.leaves(first.memory)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(state.filter, first.filter)


# -- batched adapter -----------------------------------------------------------

SIZES = ((120, 160), (100, 130), (150, 200))


def test_batched_lanes_equal_single_sequences(models):
  """3 lanes of different frame sizes, a masked re-init and an idle lane."""
  c, model, variables = models["duml"]
  p = tracker.tracking_params(c, **SMALL)
  frame = lambda lane, t: _frame(t, *SIZES[lane], lane=lane)
  # One 256x256 padded shape for every call (fewer compiles in the test).
  batch = adapter.DuMLBatchTracker(model, variables, p, 3, name="duml", pad_multiple=256)
  batch.init([frame(l, 0) for l in range(3)], np.stack([BOX0] * 3), np.ones(3, bool))
  # Schedule of (update mask, re-init mask) per step; lane 1 re-initialised at
  # step 2 on frame 2 with a new box, lane 2 idle at steps 3-4.
  box_b = np.array([50., 45., 28., 20.], np.float32)
  steps = [([1, 1, 1], None), ([1, 1, 1], None), ([1, 0, 1], [0, 1, 0]),
           ([1, 1, 0], None), ([1, 1, 0], None), ([1, 1, 1], None)]
  got = {l: [] for l in range(3)}
  lane_t = [0, 0, 0]
  for upd, reinit in steps:
    if reinit is not None:
      frames = [frame(l, lane_t[l]) if reinit[l] else None for l in range(3)]
      batch.init(frames, np.stack([box_b] * 3), np.asarray(reinit, bool))
      got[1].append("reinit")
    mask = np.asarray(upd, bool)
    for l in range(3):
      lane_t[l] += int(mask[l])
    boxes, scores = batch.update([frame(l, lane_t[l]) if mask[l] else None for l in range(3)],
                                 mask)
    assert np.all(np.isnan(boxes[~mask]))
    for l in np.flatnonzero(mask):
      got[l].append((boxes[l], scores[l]))
  # One lane at a time with the single-sequence tracker.
  for lane in range(3):
    single = adapter.DuMLTracker(model, variables, p, pad_multiple=256)
    single.init(frame(lane, 0), BOX0)
    t = 0
    for item in got[lane]:
      if isinstance(item, str):
        single.init(frame(lane, t), box_b)
        continue
      t += 1
      box, score = single.update(frame(lane, t))
      # float32: 3 lanes and 1 lane go through matrix products of different
      # shapes, which round differently (~1e-5 relative per step). With random
      # weights lane 0's box inflates and leaves the image, and each frame's crop
      # then magnifies the difference ~5-10x (1e-5, 1e-4, 3e-4, 4e-3, 0.03, 1 px
      # over frames 1-6; lanes 1-2 stay at 1e-5). Strict for the first 3 frames,
      # then a few pixels: a lane mix-up moves boxes by tens of pixels. The score
      # follows the box (lane 0, frame 6: 0.1 px and 2.4e-3 with the tiny config's
      # window influence 0.1; < 1e-5 on every other lane and frame).
      tol = dict(rtol=1e-4, atol=1e-3) if t <= 3 else dict(rtol=0.02, atol=3.0)
      np.testing.assert_allclose(box, item[0], **tol, err_msg=f"lane {lane}, frame {t}")
      np.testing.assert_allclose(score, item[1], atol=1e-3 if t <= 3 else 2e-2,
                                 err_msg=f"lane {lane}, frame {t}")


def test_update_of_a_lane_never_initialised_fails(models):
  c, model, variables = models["duml"]
  batch = adapter.DuMLBatchTracker(model, variables, tracker.tracking_params(c, **SMALL), 2)
  with pytest.raises(RuntimeError, match=r"lanes \[1\]"):
    batch.update([None, _frame(0)], np.array([False, True]))


def test_pad_frames_buckets():
  stacked, sizes = adapter.pad_frames([np.zeros((100, 130, 3), np.uint8), None,
                                       np.ones((65, 200, 3), np.uint8)])
  assert stacked.shape == (3, 128, 256, 3)
  np.testing.assert_array_equal(sizes[[0, 2]], [[130, 100], [200, 65]])
  assert stacked[2, :65, :200].min() == 1 and stacked[2, 65:].max() == 0


def test_track_defers_the_filter_steps_to_refine_filter(models):
  """`track` records the sample and reports the steps due; `refine_filter` runs them."""
  c, model, variables = models["duml"]
  p = tracker.tracking_params(c, **SMALL, not_found_threshold=-1e9, distractor_threshold=1e9)
  state = tracker.init(model, variables, tracker.tracking_params(c, **SMALL), _frame(0), BOX0,
                       jnp.array([160., 120.]))
  state = state.replace(frame=jnp.asarray(p.update_every - 1, jnp.int32))
  tracked, out = tracker.track(model, variables, p, state, _frame(1))
  assert int(out["iters"]) == p.update_iters
  np.testing.assert_array_equal(tracked.filter, state.filter)
  refined = tracker.refine_filter(model, variables, p, tracked, out["iters"])
  stepped, _ = tracker.step(model, variables, p, state, _frame(1))
  assert not np.allclose(refined.filter, state.filter)
  np.testing.assert_allclose(refined.filter, stepped.filter, rtol=1e-5, atol=1e-7)


def test_dropout_copies_by_hand():
  x = jnp.arange(1., 1. + 2 * 2 * 64).reshape(2, 2, 64)
  d = np.asarray(tracker.dropout_copies(x, 3, 0.25, jax.random.PRNGKey(1)))
  assert d.shape == (3, 2, 2, 64)
  for copy in d:
    kept = np.all(copy != 0, axis=(0, 1))                # whole channels, never part of one
    assert np.all(kept | np.all(copy == 0, axis=(0, 1)))
    np.testing.assert_allclose(copy[..., kept], np.asarray(x)[..., kept] / 0.75, rtol=1e-6)
    assert 0 < (~kept).sum() < 64
  assert not np.array_equal(d[0], d[1])                   # each copy its own channels


def test_init_dropout_samples_join_the_fixed_memory(models):
  c, model, variables = models["duml"]
  size = jnp.array([160., 120.])
  plain = tracker.init(model, variables, tracker.tracking_params(c, **SMALL), _frame(0), BOX0,
                       size)
  p = tracker.tracking_params(c, **SMALL, init_dropout_samples=2)
  assert tracker.first_frame_samples(p) == SMALL["num_init_samples"] + 2
  state = tracker.init(model, variables, p, _frame(0), BOX0, size)
  n = SMALL["num_init_samples"]
  assert int(state.memory.count) == n + 2
  np.testing.assert_allclose(state.memory.weights[:n + 2], 1. / (n + 2), rtol=1e-6)
  feats = np.asarray(state.memory.feats)
  np.testing.assert_array_equal(feats[:n], np.asarray(plain.memory.feats)[:n])
  np.testing.assert_array_equal(state.memory.boxes[n], state.memory.boxes[0])
  zeroed = np.all(feats[n:n + 2] == 0, axis=(1, 2))      # (2, D) dropped channels
  assert zeroed.any() and not zeroed.all()
  assert not np.allclose(state.filter, plain.filter)      # the init steps saw the copies
  with pytest.raises(ValueError, match="tracking.init_dropout_samples"):
    tracker.tracking_params(c, **SMALL, init_dropout_samples=6)   # 3 + 6 > memory 8
  with pytest.raises(ValueError, match="tracking.init_dropout_prob"):
    tracker.tracking_params(c, **SMALL, init_dropout_samples=1, init_dropout_prob=1.0)
