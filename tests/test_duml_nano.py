"""DuML-nano: module shapes and init, mu = 0 == NanoTrack, meta-training through the
inner loop with NanoTrack frozen, the tracker on real frames.

Tests with real weights / frames skip (via `shared_dir` / `otb_sample`) when
../shared is absent.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax.convert import nanotrack as nano_convert
from duml_jax.data import benchmarks
from duml_jax.data import frames as frames_lib
from duml_jax.models import duml_nano as dn
from duml_jax.models import nanotrack as nt
from duml_jax.models import online as online_lib
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import nanotrack_tracker as ntt
from duml_jax.training import meta_nano

B, S, Q, T = 1, 3, 2, 2


@pytest.fixture(scope="module")
def model():
  return dn.build("v2", train_iters=T)


@pytest.fixture(scope="module")
def random_params(model):
  """Random NanoTrack backbone params + initial online params (no weights needed).

  Meta-training never calls the head, so it is left out (cheaper init).
  """
  shapes = jax.eval_shape(nt.NanoBackbone().init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 32, 32, 3)))["params"]
  rng = np.random.default_rng(0)   # scaled normal weights without compiling the init
  bb = jax.tree.map(lambda a: jnp.asarray(rng.normal(0., 1., a.shape) / np.sqrt(
      np.prod(a.shape[:-1]) if len(a.shape) > 1 else 10.), jnp.float32), shapes)
  return {"backbone": bb, **dn.init_online_params(model, jax.random.PRNGKey(1))}


def _square_batch(seed=0):
  """A fixed sequence batch: a textured square on noise, known boxes (crop pixels).

  Small crops, templates and searches of one size (95: 6x6 feature grids,
  one backbone compilation) keep the test fast; every function is
  shape-generic.
  """
  rng = np.random.default_rng(seed)
  tex = rng.integers(0, 256, (24, 24, 3))

  def img(size, cx, cy):
    im = rng.integers(90, 140, (size, size, 3))
    x0, y0 = int(cx) - 12, int(cy) - 12
    im[y0:y0 + 24, x0:x0 + 24] = tex
    return im.astype(np.uint8), np.array([x0, y0, 24, 24], np.float32)
  z = [img(95, 47, 47) for _ in range(S)]
  xs = [img(95, 47 + dx, 47 + dy) for dx, dy in ((0, 0), (15, -10), (-12, 8))]
  qs = [img(95, 47 + dx, 47 + dy) for dx, dy in ((20, 5), (-5, -17))]
  stack = lambda items, k: np.stack([it[k] for it in items])[None]
  return {"support_template": stack(z, 0), "support_template_box": stack(z, 1),
          "support_search": stack(xs, 0), "support_box": stack(xs, 1),
          "query_search": stack(qs, 0), "query_box": stack(qs, 1)}


# ------------------------------------------------------------------ module ----


def test_shapes_and_parameter_groups(model):
  v = jax.eval_shape(lambda k: dn.init_variables(model, k), jax.random.PRNGKey(0))
  assert set(v["params"]) == set(dn.OFFLINE + dn.ONLINE)
  out = jax.eval_shape(model.apply, v, jnp.zeros((2, 127, 127, 3)), jnp.zeros((2, 255, 255, 3)))
  assert out["cls"].shape == (2, 16, 16, 2)
  assert out["loc"].shape == (2, 16, 16, 4)
  assert out["online"].shape == (2, 16, 16, 1)        # the same grid as NanoTrack's
  seq = jax.eval_shape(
      lambda p: model.apply(p, jnp.zeros((B, S, 8, 8, 48)), jnp.zeros((B, S, 16, 16, 48)),
                            jnp.zeros((B, S, 2)), jnp.zeros((B, Q, 16, 16, 48)),
                            method=dn.DuMLNano.online_sequence), v)
  assert seq.shape == (B, T + 1, Q, 16, 16, 1)
  online = jax.eval_shape(lambda k: dn.init_online_params(model, k), jax.random.PRNGKey(0))
  assert (jax.tree.map(lambda a: a.shape, online)
          == jax.tree.map(lambda a: a.shape, {k: v["params"][k] for k in dn.ONLINE}))
  assert online["filter_init"]["conv"]["kernel"].shape == (3, 3, 48, 48)


def test_identity_start_of_the_online_pieces(model, random_params):
  """Online features = L2-normalised NanoTrack features; phi^(0) = pooled target cells."""
  variables = {"params": random_params}
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 16, 16, 48))
  got = model.apply(variables, x, method=dn.DuMLNano.online_feats)
  want = online_lib.instance_l2_norm(x, np.sqrt(1. / (48 * 25)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  z = jax.random.normal(jax.random.PRNGKey(2), (1, 8, 8, 48))
  f = model.apply(variables, z, method=dn.DuMLNano.initial_filter)
  assert f.shape == (1, 5, 5, 48, 1)
  # Pooling the centred 4x4 cells to 5x5: corner filter tap = corner cell (2, 2).
  np.testing.assert_allclose(f[0, 0, 0, :, 0], z[0, 2, 2], rtol=1e-5)
  np.testing.assert_allclose(f[0, 4, 4, :, 0], z[0, 5, 5], rtol=1e-5)


@pytest.mark.parametrize("layer", ["block3", "output+block3"])
def test_online_layers_read_block3_on_nanotracks_grid(layer, random_params):
  """Block 3 (stride 8) pooled 3x3 / 2 around cell 2j: feature cell j, computed by hand."""
  m = dn.build("v2", online_layer=layer)
  assert m.online_spec.feature_dim == dn.ONLINE_LAYERS[layer]
  with pytest.raises(ValueError, match="online_layer='block9'"):
    dn.build("v2", online_layer="block9")
  shapes = jax.eval_shape(lambda k: dn.init_variables(m, k), jax.random.PRNGKey(0))
  out = jax.eval_shape(m.apply, shapes, jnp.zeros((1, 127, 127, 3)), jnp.zeros((1, 255, 255, 3)))
  assert out["online"].shape == (1, 16, 16, 1)
  c = dn.ONLINE_LAYERS[layer]
  online = dn.init_online_params(m, jax.random.PRNGKey(1))
  assert online["online_features"]["proj"]["kernel"].shape == (3, 3, c, c)
  variables = {"params": {"backbone": random_params["backbone"], **online}}
  img = jax.random.uniform(jax.random.PRNGKey(2), (1, 63, 63, 3), maxval=255.)
  feats, got = m.apply(variables, img, method=dn.DuMLNano.features_and_online_input)
  final, (tap,) = nt.NanoBackbone().apply({"params": random_params["backbone"]}, img, taps=(3,))
  np.testing.assert_array_equal(feats, final)
  assert tap.shape == (1, 8, 8, 24) and feats.shape == (1, 4, 4, 48) and got.shape == (1, 4, 4, c)
  tp = np.pad(np.asarray(tap[0]), ((1, 1), (1, 1), (0, 0)))     # zero padding, divided by 9
  want = np.stack([np.stack([tp[2 * i:2 * i + 3, 2 * j:2 * j + 3].sum((0, 1)) / 9.
                             for j in range(4)]) for i in range(4)])
  if layer == "block3":
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)
  else:   # each part at unit RMS, NanoTrack's features first
    rms = lambda a: a / np.sqrt(np.mean(np.square(a)))
    np.testing.assert_allclose(got[0, ..., :48], rms(np.asarray(final[0])), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0, ..., 48:], rms(want), rtol=1e-4, atol=1e-5)
  # Meta-training reads the same inputs (frozen) and steps the online pieces of this width.
  c_meta = _config()
  features, step, tx = meta_nano.make_train_step(dn.build("v2", online_layer=layer,
                                                          train_iters=T), c_meta)
  batch = _square_batch()
  feats3 = features({"backbone": random_params["backbone"]}, batch)
  assert [f.shape[-1] for f in feats3] == [c] * 3 and feats3[1].shape[-3:-1] == (6, 6)
  _, _, metrics = step(online, tx.init(online), {"backbone": random_params["backbone"]}, feats3,
                       batch["support_box"], batch["query_box"])
  assert np.isfinite(float(metrics["loss"]))


def test_tracker_config_errors_name_the_key():
  with pytest.raises(KeyError, match="bogus"):
    dnt.params(dnt.default_config(), bogus=1)
  with pytest.raises(ValueError, match="mu"):
    dnt.params(dnt.default_config(), mu=1.5)
  p = dnt.params(dnt.default_config(), mu=0.8, score_voting=False)
  assert (p.mu, p.score_voting, p.stride, p.nano.score_size) == (0.8, False, 16, 16)
  hash(p)
  # Config values are cast to the field types of the shared online schedule.
  p = dnt.params(dnt.default_config(), update_every=10.0, update_lr=1, score_voting=0)
  assert type(p.update_every) is int and type(p.update_lr) is float
  assert p.score_voting is False


def test_duml_and_duml_nano_share_one_online_schedule():
  # The fields `tracker.online_update` / `localisation_flag` read are declared once.
  from duml_jax.tracking import tracker  # pylint: disable=g-import-not-at-top
  shared = {f.name for f in dataclasses.fields(tracker.OnlineSchedule)}
  assert issubclass(dnt.NanoParams, tracker.OnlineSchedule)
  assert issubclass(tracker.TrackingParams, tracker.OnlineSchedule)
  assert {"mu", "update_every", "distractor_window", "online_norm"} <= shared
  own = {f.name for f in dataclasses.fields(dnt.NanoParams)} - shared
  # DuML-nano's own: NanoTrack's config and grid, and the re-detection rule on its window.
  assert own == {"nano", "stride", "reacquire_window_scale", "reacquire_max_gap",
                 "reacquire_min_offset", "reacquire_online_normal", "reacquire_min_online",
                 "reacquire_offline_margin", "reacquire_online_margin"}


def test_duml_nano_schedule_values_are_the_paper_configs():
  # The library cannot import configs/, so dnt.default_config() states the paper's
  # fusion / voting / schedule values again: this pins them to configs/duml.py's, except
  # the fusion weight and NanoTrack's temperature, chosen for NanoTrack's saturated score.
  from configs import duml as duml_configs  # pylint: disable=g-import-not-at-top
  from duml_jax.tracking import tracker  # pylint: disable=g-import-not-at-top
  paper = duml_configs.get_config("paper").tracking
  nano = dnt.default_config()
  for f in dataclasses.fields(tracker.OnlineSchedule):
    want = {"mu": 0.5, "offline_temperature": 3.0}.get(f.name, paper.get(f.name, f.default))
    assert nano[f.name] == want, f.name
  assert (paper.mu, paper.offline_temperature) == (0.8, 1.0)


# ------------------------------------------------------------ meta-training ----


def _config():
  c = meta_nano.get_config()
  c.inner_iters, c.batch_size, c.learning_rate = T, B, 3e-3
  return c


@pytest.fixture(scope="module")
def meta_setup(model, random_params):
  """(config, jitted fns, nano params, online params, batch, frozen features)."""
  c = _config()
  features, step, tx = meta_nano.make_train_step(model, c)
  nano = {"backbone": random_params["backbone"]}
  online = {k: random_params[k] for k in dn.ONLINE}
  batch = _square_batch()
  return c, (features, step, tx), nano, online, batch, features(nano, batch)


def test_features_are_frozen(meta_setup, model):
  """No gradient reaches NanoTrack through its features (tiny crops: cheap)."""
  c, _, nano, _, _, _ = meta_setup
  tiny = {k: np.zeros((1, 1, 16, 16, 3), np.uint8) for k in
          ("support_template", "support_search", "query_search")}
  g = jax.grad(lambda p: sum(jnp.sum(f) for f in meta_nano.frozen_features(
      model, p, tiny, c.network_channels)))(nano)
  assert all(float(jnp.max(jnp.abs(x))) == 0. for x in jax.tree.leaves(g))


def test_grads_through_the_inner_loop(meta_setup, model):
  c, _, nano, online, batch, feats = meta_setup
  grads = jax.jit(jax.grad(lambda o: meta_nano.meta_loss(
      model, o, nano, feats, batch["support_box"], batch["query_box"], T,
      c.hinge_threshold)[0]))(online)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  # The residual functions are reached only through the inner SD-GN steps.
  for name in ("label_weights", "mask_weights", "spatial_weights", "log_step_length",
               "filter_reg"):
    assert float(jnp.max(jnp.abs(grads["residual_fns"][name]))) > 0., name
  assert float(jnp.max(jnp.abs(grads["online_features"]["proj"]["kernel"]))) > 0.
  assert float(jnp.max(jnp.abs(grads["filter_init"]["conv"]["kernel"]))) > 0.


def test_one_meta_training_step_lowers_the_loss_on_a_fixed_batch(meta_setup):
  _, (_, step, tx), nano, online, batch, feats = meta_setup
  opt_state = tx.init(online)
  # Only the online params are optimised: NanoTrack's are no part of the state.
  assert not any(k in str(jax.tree_util.tree_structure(opt_state)) for k in dn.OFFLINE)
  boxes = batch["support_box"], batch["query_box"]
  new, opt_state, m = step(online, opt_state, nano, feats, *boxes)
  _, _, m2 = step(new, opt_state, nano, feats, *boxes)    # m2["loss"]: the loss at `new`
  before, after = float(m["loss"]), float(m2["loss"])
  assert np.isfinite(before) and after < before, (before, after)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), online, new)
  assert all(jax.tree.leaves(changed["residual_fns"]))


def test_online_params_roundtrip_and_otb_sample_guard(tmp_path, model):
  online = dn.init_online_params(model, jax.random.PRNGKey(3))
  meta_nano.save_online_params(tmp_path, online)
  back = meta_nano.load_online_params(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, online, back)
  with pytest.raises(FileNotFoundError, match="online_params"):
    meta_nano.load_online_params(tmp_path / "nothing")
  c = meta_nano.get_config()
  c.real_train = "../shared/data/otb_sample"
  with pytest.raises(ValueError, match="evaluation"):
    meta_nano._data_config(c, tmp_path)  # pylint: disable=protected-access


# ------------------------------------------------------------ real frames ----


@pytest.fixture(scope="module")
def crossing(shared_dir, otb_sample):
  w = shared_dir / "weights" / "nanotrack"
  if not (w / "nanotrackv2.pth").is_file():
    pytest.skip(f"{w}: NanoTrack weights not found")
  seq = benchmarks.load_benchmark("otb", otb_sample, sequences=["Crossing"])[0]
  frames = [frames_lib.read_frame(f) for f in seq.frames[:8]]
  return nano_convert.load_nanotrack(w, "v2"), frames, np.asarray(seq.boxes[:8], np.float32)


def _run(tracker, frames, box):
  tracker.init(frames[0], box)
  return np.array([tracker.update(f)[0] for f in frames[1:]])


def test_mu0_reproduces_the_nanotrack_tracker(crossing, model):
  nano, frames, gt = crossing
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(0)))
  ref = _run(ntt.NanoTracker(nano), frames, gt[0])
  p = dnt.params(dnt.default_config(), mu=0., score_voting=False, offline_temperature=1.)
  ours = dnt.DuMLNanoTracker(model, variables, p)
  np.testing.assert_array_equal(_run(ours, frames, gt[0]), ref)
  assert int(ours.state.memory.count) == p.num_init_samples + len(frames) - 1


def test_mu0_is_nanotrack_on_its_tempered_score(crossing, model):
  # The online branch's ablation: at mu 0 the map selected on is sigmoid(logit / T), not
  # NanoTrack's raw softmax (docs/duml_nano.md: the temperature alone carries the gain).
  nano, frames, gt = crossing
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(0)))
  p = dnt.params(dnt.default_config(), mu=0., score_voting=False)
  assert p.offline_temperature == 3.
  state = dnt.init(model, variables, p, frames[0], gt[0])
  _, out = dnt.track_with_maps(model, variables, p, state, frames[1])
  v = out["view"]
  want = 1. / (1. + np.exp(-np.asarray(v["offline_logit"]) / 3.))
  np.testing.assert_allclose(v["fused"], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(out["score"]), want.reshape(-1)[int(v["best"])], rtol=1e-5)
  assert float(np.max(want)) < 0.999   # the saturated plateau is graded


def test_block3_online_layer_tracks_real_frames(crossing):
  # The template's block-3 features are read from the first frame (NanoTrack keeps only its
  # output features), the search's from the same backbone pass as the head's.
  nano, frames, gt = crossing
  m = dn.build("v2", online_layer="block3")
  variables = dn.from_nanotrack(nano, dn.init_online_params(m, jax.random.PRNGKey(0)))
  p = dnt.params(dnt.default_config(), mu=1.)
  t = dnt.DuMLNanoTracker(m, variables, p)
  boxes = _run(t, frames, gt[0])
  assert t.state.filter.shape == (5, 5, 24, 1) and t.state.memory.feats.shape[-1] == 24
  c, g = boxes[:, :2] + boxes[:, 2:] / 2, gt[1:, :2] + gt[1:, 2:] / 2
  assert np.max(np.linalg.norm(c - g, axis=1)) < 0.5 * np.min(gt[0, 2:]), (c, g)
  # The online map is not the output layer's.
  out = dn.build("v2")
  ref = dnt.DuMLNanoTracker(out, dn.from_nanotrack(
      nano, dn.init_online_params(out, jax.random.PRNGKey(0))), p)
  assert np.abs(_run(ref, frames, gt[0]) - boxes).max() > 0


def test_duml_nano_tracks_real_frames(crossing, model):
  nano, frames, gt = crossing
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(0)))
  p = dataclasses.replace(dnt.params(dnt.default_config(), mu=0.8), update_every=3)
  t = dnt.DuMLNanoTracker(model, variables, p)
  t.init(frames[0], gt[0])
  boxes, flags, iters = [], [], []
  for f in frames[1:]:
    boxes.append(t.update(f)[0])
    flags.append(int(t.last_output["flag"]))
    iters.append(int(t.last_output["iters"]))
  boxes = np.array(boxes)
  assert np.all(np.isfinite(boxes))
  c, g = boxes[:, :2] + boxes[:, 2:] / 2, gt[1:, :2] + gt[1:, 2:] / 2
  assert np.max(np.linalg.norm(c - g, axis=1)) < 0.5 * np.min(gt[0, 2:]), (c, g)
  # The paper's schedule: update_iters steps on frames k * update_every (normal
  # flag), distractor_iters at once on distractors, none when the target is lost.
  want = [0 if fl == dnt.tracker_lib.FLAG_NOT_FOUND else
          p.distractor_iters if fl == dnt.tracker_lib.FLAG_DISTRACTOR else
          p.update_iters if k % 3 == 0 else 0 for k, fl in enumerate(flags, start=1)]
  assert iters == want, (flags, iters)
  assert int(t.state.num_updates) == sum(i > 0 for i in iters)
  assert int(t.state.memory.count) == p.num_init_samples + sum(
      fl != dnt.tracker_lib.FLAG_NOT_FOUND for fl in flags)


def test_reacquisition_rule_frees_the_box_from_the_cosine_window(crossing, model):
  # The rule made to hold on every frame (any gap, offset or margin), window scaled to 0:
  # the chosen cell is the arg-max of the penalised fused map alone.
  nano, frames, gt = crossing
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(0)))
  p = dnt.params(dnt.default_config(), reacquire_window_scale=0., reacquire_max_gap=16.,
                 reacquire_min_offset=0., reacquire_online_normal=False,
                 reacquire_offline_margin=0., reacquire_online_margin=0.)
  # Frame 2 moved 40 px right, so its peak is off the window's centre.
  state = dnt.init(model, variables, p, frames[0], gt[0])
  moved = np.roll(frames[1], 40, axis=1)
  _, out = dnt.track_with_maps(model, variables, p, state, moved)
  v = out["view"]
  assert bool(out["reacquired"])
  free = np.asarray(v["penalty"]) * np.asarray(v["fused"]).reshape(-1)
  assert int(v["best"]) == int(np.argmax(free))
  cfg = p.nano
  held = free * (1 - cfg.window_influence) + np.asarray(
      ntt.hanning_window(cfg)).reshape(-1) * cfg.window_influence
  assert int(np.argmax(held)) != int(v["best"])   # the window would have chosen another cell
  # The margins compare both peaks with the window's pick: the rule holds just below
  # this frame's margins and not just above them.
  pick = int(np.argmax(held))
  margin = lambda m: float(np.max(m) - np.asarray(m).reshape(-1)[pick])
  m_off, m_on = margin(v["accurate"]), margin(v["online_raw"])
  for d, holds in ((-0.01, True), (0.01, False)):
    for key, m in (("reacquire_offline_margin", m_off), ("reacquire_online_margin", m_on)):
      q = dataclasses.replace(p, **{key: m + d})
      assert bool(dnt.track(model, variables, q, state, moved)[1]["reacquired"]) == holds, key
  _, off = dnt.track(model, variables, dataclasses.replace(p, reacquire_window_scale=1.),
                     state, moved)
  assert not bool(off["reacquired"])          # window scale 1: off, never reported
  _, offline = dnt.track(model, variables, dataclasses.replace(p, mu=0.), state, moved)
  assert not bool(offline["reacquired"])      # mu 0: the offline branch alone, no rule
