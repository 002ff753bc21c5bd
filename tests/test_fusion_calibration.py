"""Fusion (paper Eq. 1) and the calibration of the online map, on maps built by hand.

The fused map and the tracked box must move with mu and respond to the
calibration choice (`tracking.online_norm`), for DuML-nano (NanoTrack's grid
and post-processing) and DuML's own tracker (`tracker.localise`).
"""
import types

import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import memory as memory_lib
from duml_jax.tracking import nanotrack_tracker as ntt
from duml_jax.tracking import tracker

S = 16
OFF, ON = (8, 7), (8, 10)      # offline and online peaks (row, col), 3 cells apart


def _maps():
  """NanoTrack-like saturated softmax (a plateau over the target) and a weak online map."""
  s_acc = np.full((S, S), 0.02, np.float32)
  s_acc[8, 6:12] = 0.9
  s_acc[OFF] = 0.97
  raw = np.full((S, S, 1), 0.05, np.float32)
  raw[8, 6:12, 0] = 0.2
  raw[ON + (0,)] = 0.3
  return jnp.asarray(s_acc), jnp.asarray(raw)


def test_calibrations_by_hand():
  raw = jnp.asarray([[-0.2], [0.1], [0.3], [1.4]])
  n = lambda how, **kw: np.asarray(tracker.normalise_online(raw, how, **kw))[:, 0]
  np.testing.assert_allclose(n("minmax"), [0., 0.3 / 1.6, 0.5 / 1.6, 1.], rtol=1e-6)
  np.testing.assert_allclose(n("clip"), [0., 0.1, 0.3, 1.], rtol=1e-6)
  np.testing.assert_allclose(n("peak"), [0., 0.1 / 1.4, 0.3 / 1.4, 1.], rtol=1e-6)
  np.testing.assert_allclose(n("none"), [-0.2, 0.1, 0.3, 1.4], rtol=1e-6)
  np.testing.assert_allclose(n("affine", scale=2., offset=-0.1), [0., 0.1, 0.5, 1.],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="online_norm='bogus'"):
    tracker.normalise_online(raw, "bogus")


def test_unknown_calibration_names_the_key():
  with pytest.raises(ValueError, match="tracking.online_norm='softmax'"):
    dnt.params(dnt.default_config(), online_norm="softmax")
  with pytest.raises(ValueError, match="tracking.mu_scale_lost"):
    dnt.params(dnt.default_config(), mu_scale_lost=2.)
  with pytest.raises(ValueError, match="online_scale"):
    dnt.params(dnt.default_config(), online_norm="affine", online_scale=0.)
  with pytest.raises(ValueError, match="tracking.update_min_offline"):
    dnt.params(dnt.default_config(), update_min_offline=1.5)
  with pytest.raises(ValueError, match="tracking.mu_scale_disagree"):
    dnt.params(dnt.default_config(), mu_scale_disagree=-1.)
  with pytest.raises(ValueError, match="tracking.mu_scale_offline_unsure"):
    dnt.params(dnt.default_config(), mu_scale_offline_unsure=-0.5)
  with pytest.raises(ValueError, match="tracking.offline_unsure_threshold"):
    dnt.params(dnt.default_config(), offline_unsure_threshold=2.)
  c = duml_config.get_config("paper")
  with pytest.raises(ValueError, match="tracking.online_norm='minmx'"):
    tracker.tracking_params(c, online_norm="minmx")
  # Every calibration key is a config key of both trackers (--config.tracking.KEY=...).
  for key in ("online_norm", "online_scale", "online_offset", "mu_scale_uncertain",
              "mu_scale_lost", "update_min_score", "mu_scale_disagree", "disagree_threshold",
              "update_min_offline", "mu_scale_offline_unsure", "offline_unsure_threshold"):
    assert key in c.tracking and key in dnt.default_config(), key


def _argmax(m):
  return tuple(int(i) for i in np.unravel_index(int(jnp.argmax(m)), m.shape[:2]))


def _switch_mu(how):
  """Smallest mu (grid of 0.01) at which the online peak wins the fused arg-max."""
  s_acc, raw = _maps()
  p = dnt.params(dnt.default_config(), online_norm=how)
  for mu in np.arange(0.01, 1.001, 0.01):
    if _argmax(dnt.fused_scores(p, s_acc, raw, jnp.float32(mu))) == ON:
      return float(mu)
  return None


def test_fused_map_moves_with_mu_and_the_calibration():
  s_acc, raw = _maps()
  p = dnt.params(dnt.default_config(), mu=0.5)
  fused = {mu: np.asarray(dnt.fused_scores(p, s_acc, raw, jnp.float32(mu)))
           for mu in (0.1, 0.5, 0.9)}
  # Eq. 1 cell by cell with the min-max online map.
  rob = (np.asarray(raw)[..., 0] - 0.05) / 0.25
  for mu, f in fused.items():
    np.testing.assert_allclose(f, mu * rob + (1 - mu) * np.asarray(s_acc), atol=1e-6)
  assert _argmax(dnt.fused_scores(p, s_acc, raw, jnp.float32(0.01))) == OFF
  assert _argmax(fused[0.9]) == ON
  # Min-max lifts a weak online peak to 1: the online branch decides the arg-max
  # from a small mu on (the "switch"); unscaled raw scores need a larger mu.
  switch = {how: _switch_mu(how) for how in ("minmax", "peak", "clip", "none")}
  # By hand: the online peak wins once mu r_on + (1 - mu) 0.9 > mu r_off + (1 - mu) 0.97,
  # i.e. mu > 0.07 / (0.07 + r_on - r_off) with (r_on, r_off) the calibrated online scores
  # at the two peaks: min-max (1, 0.6), peak (1, 2/3), clip and none (0.3, 0.2).
  want = {"minmax": 0.07 / 0.47, "peak": 0.07 / (0.07 + 1 / 3), "clip": 0.07 / 0.17,
          "none": 0.07 / 0.17}
  for how, w in want.items():
    assert switch[how] == pytest.approx(np.ceil(w * 100) / 100, abs=1e-6), (how, switch)
  assert switch["minmax"] < switch["peak"] < switch["clip"]


def _select_inputs():
  """(loc, state) for `ntt.select`: every cell decodes to a 32x32 box at its own point, the
  target 32x32 (no scale / ratio penalty)."""
  loc = jnp.full((S, S, 4), 16., jnp.float32)
  state = ntt.NanoState(z_feat=jnp.zeros((1, 8, 8, 48)), center=jnp.asarray([300., 200.]),
                        size=jnp.asarray([32., 32.]), mean=jnp.zeros(3))
  return loc, state


def test_tracked_box_moves_with_mu():
  # NanoTrack's post-processing on the fused map: every cell decodes to a 32x32 box at
  # its own point, the target 32x32 at the centre (no scale / ratio penalty), no cosine
  # window (it would favour the offline peak, nearer the centre). Online map x 2: min-max
  # is unchanged (switch at mu 0.15), clip gives (0.6, 0.4) at the peaks: switch at 0.26.
  s_acc, raw = _maps()
  raw = 2. * raw
  nano_cfg = ntt.default_config()
  nano_cfg.window_influence = 0.
  cfg = ntt.freeze(nano_cfg)
  loc, state = _select_inputs()
  xs = []
  for how in ("minmax", "clip"):
    p = dnt.params(dnt.default_config(), online_norm=how)
    row = []
    for mu in (0., 0.2, 0.5, 1.):
      score = dnt.fused_scores(p, s_acc, raw, jnp.float32(mu))
      best, _, boxes = ntt.select(cfg, score, loc, state, jnp.float32(1.))
      row.append(float(boxes[best, 0]))
    xs.append(row)
  minmax, clip = xs
  step = cfg.total_stride
  off, on = (OFF[1] - S // 2) * step, (ON[1] - S // 2) * step
  assert minmax == [off, on, on, on]     # min-max: the online peak from mu 0.2 on
  assert clip == [off, off, on, on]      # clip: NanoTrack's peak still at mu 0.2


def test_confidence_scales_mu():
  p = dnt.params(dnt.default_config(), mu_scale_uncertain=0.5, mu_scale_lost=0.)
  flags = jnp.asarray([tracker.FLAG_NORMAL, tracker.FLAG_DISTRACTOR, tracker.FLAG_NOT_FOUND])
  np.testing.assert_allclose(tracker.fusion_weight(0.8, flags, p), [0.8, 0.4, 0.], atol=1e-7)


def _duml_maps():
  """DuML's 25x25 grid, 5 anchors: offline logits 3.5 at the centre cell, 2.5 on its row
  (cells 11-14), the online peak 0.3 two cells right on a 0.2 ridge; every box decodes to
  its anchor."""
  s = 25
  logits = np.full((s, s, 5), -4., np.float32)
  logits[12, 11:15] = 2.5
  logits[12, 12] = 3.5
  raw = np.full((s, s, 1), 0.05, np.float32)
  raw[12, 11:15, 0] = 0.2
  raw[12, 14, 0] = 0.3
  heads = {"score": jnp.asarray(logits)[None], "box": jnp.zeros((1, s, s, 5, 5))}
  return types.SimpleNamespace(a_off=1), heads, raw


def test_duml_localise_moves_with_mu_and_calibration():
  # DuML's tracker: 25x25 grid (stride 8), 5 anchors; offline peak and online peak
  # on the centre row, the box head decoding every anchor to itself, no cosine window.
  # The online peak wins above mu 0.105 with min-max, 0.318 with clip (by hand, as above).
  c = duml_config.get_config("paper")
  model, heads, raw = _duml_maps()
  target = jnp.asarray([64., 64.])

  def centre_x(mu, how):
    p = tracker.tracking_params(c, mu=mu, online_norm=how, score_voting=False,
                                window_influence=0.)
    box, _, _ = tracker.localise(model, p, heads, jnp.asarray(raw), target)
    return float(box[0])
  assert centre_x(0., "minmax") == 0.          # offline peak at the centre cell
  assert centre_x(1., "minmax") == centre_x(1., "clip") == 16.   # online peak, 2 cells right
  assert centre_x(0.2, "minmax") == 16.        # min-max: the online peak already wins
  assert centre_x(0.2, "clip") == 0.
  # Lowering mu where the online map has a distractor: a second online peak far away.
  raw[3, 3, 0] = 0.29
  p = tracker.tracking_params(c, mu=0.2, online_norm="minmax", score_voting=False,
                              window_influence=0., mu_scale_uncertain=0.)
  box, _, _ = tracker.localise(model, p, heads, jnp.asarray(raw), target)
  assert float(box[0]) == 0.


def test_offline_veto_scales_mu_where_the_offline_branch_rejects_the_online_peak():
  s_acc, raw = _maps()
  # The online peak sits on NanoTrack's plateau (0.9): no veto, the online peak wins at mu 0.8.
  assert float(tracker.offline_at_online_peak(s_acc, raw)) == pytest.approx(0.9)
  p = dnt.params(dnt.default_config(), mu_scale_disagree=0.)
  normal = jnp.asarray(tracker.FLAG_NORMAL)
  mu = tracker.fusion_weight(0.8, normal, p, tracker.offline_at_online_peak(s_acc, raw))
  assert float(mu) == pytest.approx(0.8) and _argmax(dnt.fused_scores(p, s_acc, raw, mu)) == ON
  # Moved off the plateau (offline 0.02 there < disagree_threshold 0.5): mu 0, NanoTrack's peak.
  far = np.asarray(raw).copy()
  far[ON + (0,)], far[2, 2, 0] = 0.2, 0.3
  far = jnp.asarray(far)
  assert float(tracker.offline_at_online_peak(s_acc, far)) == pytest.approx(0.02)
  mu = tracker.fusion_weight(0.8, normal, p, tracker.offline_at_online_peak(s_acc, far))
  assert float(mu) == 0. and _argmax(dnt.fused_scores(p, s_acc, far, mu)) == OFF
  # Without the veto (the default, 1) the far online peak wins.
  q = dnt.params(dnt.default_config())
  mu = tracker.fusion_weight(0.8, normal, q, tracker.offline_at_online_peak(s_acc, far))
  assert float(mu) == pytest.approx(0.8) and _argmax(dnt.fused_scores(q, s_acc, far, mu)) == (2, 2)
  # DuML's (S, S, A) offline map: the best anchor at the online peak's cell.
  acc3 = jnp.stack([s_acc, 0.5 * s_acc], axis=-1)
  assert float(tracker.offline_at_online_peak(acc3, far)) == pytest.approx(0.02)


def test_offline_uncertainty_raises_mu():
  s_acc, raw = _maps()
  p = dnt.params(dnt.default_config(), online_norm="clip", mu_scale_offline_unsure=4.,
                 offline_unsure_threshold=0.8)
  normal = jnp.asarray(tracker.FLAG_NORMAL)
  # NanoTrack sure (peak 0.97 >= 0.8): mu stays 0.2 and, clipped, its own peak wins.
  mu = tracker.fusion_weight(0.2, normal, p, None, jnp.max(s_acc))
  assert float(mu) == pytest.approx(0.2) and _argmax(dnt.fused_scores(p, s_acc, raw, mu)) == OFF
  # NanoTrack unsure (its map x 0.7: peak 0.68): mu 0.8, the online peak wins.
  mu = tracker.fusion_weight(0.2, normal, p, None, jnp.max(0.7 * s_acc))
  assert float(mu) == pytest.approx(0.8)
  assert _argmax(dnt.fused_scores(p, 0.7 * s_acc, raw, mu)) == ON
  # The weight is capped at 1; the default (1) leaves mu alone on every frame.
  assert float(tracker.fusion_weight(0.5, normal, p, None, jnp.float32(0.1))) == 1.
  q = dnt.params(dnt.default_config())
  assert float(tracker.fusion_weight(0.2, normal, q, None, jnp.float32(0.1))) == pytest.approx(0.2)
  # DuML's tracker: offline logits 3 lower (peak sigmoid(0.5) = 0.62), clip; the online peak
  # wins above mu 0.709 (by hand), so at mu 0.2 only where the unsure weight applies.
  c = duml_config.get_config("paper")
  model, heads, raw = _duml_maps()
  heads = dict(heads, score=heads["score"] - 3.)
  target = jnp.asarray([64., 64.])

  def centre_x(**kw):
    t = tracker.tracking_params(c, mu=0.2, online_norm="clip", score_voting=False,
                                window_influence=0., **kw)
    return float(tracker.localise(model, t, heads, jnp.asarray(raw), target)[0][0])
  assert centre_x() == 0.
  assert centre_x(mu_scale_offline_unsure=4., offline_unsure_threshold=0.8) == 16.
  assert centre_x(mu_scale_offline_unsure=4., offline_unsure_threshold=0.5) == 0.


def test_memory_gate_on_the_offline_score():
  p = dnt.params(dnt.default_config(), update_min_offline=0.5)
  mem = memory_lib.create(jnp.zeros((10, 3, 3, 2)), jnp.ones((10, 4)), 50)
  raw = jnp.zeros((S, S, 1)).at[5, 5, 0].set(1.)          # a clear online peak: flag normal
  args = (mem, jnp.ones((3, 3, 2)), raw, jnp.asarray([32., 32.]), jnp.asarray([1., 2., 3., 4.]),
          jnp.asarray(1, jnp.int32), jnp.float32(0.9))
  kept, flag, _ = tracker.online_record(p, *args, jnp.float32(0.6))
  dropped, _, _ = tracker.online_record(p, *args, jnp.float32(0.4))
  assert int(flag) == tracker.FLAG_NORMAL
  assert int(kept.count) == 11 and int(dropped.count) == 10
  np.testing.assert_array_equal(dropped.weights, mem.weights)
  # 0 (the default) keeps every frame that is not judged lost.
  free, _, _ = tracker.online_record(dnt.params(dnt.default_config()), *args, jnp.float32(0.))
  assert int(free.count) == 11


def test_offline_temperature_grades_the_saturated_plateau():
  # NanoTrack: softmax(cls / T)[..., 1] = sigmoid((l1 - l0) / T); T 1 is its own score.
  s_acc, raw = _maps()
  logit = np.log(np.asarray(s_acc) / (1. - np.asarray(s_acc)))
  cls = jnp.asarray(np.stack([np.zeros_like(logit), logit], axis=-1))
  p1 = dnt.params(dnt.default_config(), offline_temperature=1.)
  p3 = dnt.params(dnt.default_config(), offline_temperature=3.)   # the default
  np.testing.assert_array_equal(dnt.accurate_scores(p1, cls), ntt.foreground(cls))
  np.testing.assert_allclose(dnt.accurate_scores(p3, cls), 1. / (1. + np.exp(-logit / 3.)),
                             rtol=1e-5)
  # The plateau 0.9 / 0.97 becomes 0.675 / 0.761 at T 3: by hand the online peak (min-max
  # 1 vs 0.6) wins the fused arg-max from mu 0.0858 / 0.4858 = 0.177 on (0.07 / 0.47 =
  # 0.149 at T 1), so at mu 0.16 NanoTrack's peak holds only with the temperature.
  at = lambda p, mu: _argmax(dnt.fused_scores(p, dnt.accurate_scores(p, cls), raw,
                                              jnp.float32(mu)))
  assert at(p1, 0.16) == ON and at(p3, 0.16) == OFF and at(p3, 0.18) == ON
  with pytest.raises(ValueError, match="tracking.offline_temperature"):
    dnt.params(dnt.default_config(), offline_temperature=0.)


def test_duml_offline_temperature():
  # DuML's sigmoid score head, logits 3.5 (offline peak) / 2.5 (online peak's cell): the
  # online peak wins above mu 0.0466 / 0.4466 = 0.104 at T 1 and 0.0544 / 0.4544 = 0.120
  # at T 4 (sigmoid(0.875) - sigmoid(0.625)), by hand.
  c = duml_config.get_config("paper")
  model, heads, raw = _duml_maps()

  def centre_x(mu, temperature):
    p = tracker.tracking_params(c, mu=mu, score_voting=False, window_influence=0.,
                                offline_temperature=temperature)
    box, _, _ = tracker.localise(model, p, heads, jnp.asarray(raw), jnp.asarray([64., 64.]))
    return float(box[0])
  assert centre_x(0.11, 1.) == 16. and centre_x(0.11, 4.) == 0. and centre_x(0.13, 4.) == 16.
  assert "offline_temperature" in c.tracking and "offline_temperature" in dnt.default_config()


def test_reacquisition_relaxes_the_window_where_both_branches_agree_off_centre():
  # Both maps peak 4 cells below the crop centre (a target found again after a loss):
  # the cosine window holds the box at the centre unless the rule relaxes it.
  s_acc = np.full((S, S), 0.02, np.float32)
  s_acc[S // 2, S // 2] = 0.6     # a weaker response where the box is
  s_acc[12, 8] = 0.8
  raw = np.full((S, S, 1), 0.05, np.float32)
  raw[12, 9, 0] = 0.4             # one cell beside the offline peak: they agree
  s_acc, raw = jnp.asarray(s_acc), jnp.asarray(raw)
  def with_(**kw):    # the rule on, no margins unless given
    return dnt.params(dnt.default_config(), **{
        "reacquire_window_scale": 0., "reacquire_offline_margin": 0.,
        "reacquire_online_margin": 0., **kw})
  on = with_()
  normal, lost = tracker.FLAG_NORMAL, tracker.FLAG_NOT_FOUND
  held = S // 2 * S + S // 2      # the cell the window picks: the centre
  again = lambda p, flag, online=raw: bool(dnt.reacquired(p, s_acc, online, flag, held))
  assert again(on, normal)
  assert not again(on, lost)                                        # online branch unsure
  assert not again(on, tracker.FLAG_DISTRACTOR)
  assert again(with_(reacquire_online_normal=False), lost)
  assert not again(with_(reacquire_min_offset=5.), normal)          # not far enough out
  assert not again(with_(reacquire_max_gap=0.), normal)             # one cell apart
  assert not again(with_(reacquire_min_online=0.5), normal)         # online peak 0.4
  far = raw.at[3, 3, 0].set(0.9)                                    # online peak elsewhere
  assert not again(on, normal, far)
  # Margins over the held cell: offline 0.8 - 0.6 = 0.2, online 0.4 - 0.05 = 0.35.
  assert again(with_(reacquire_offline_margin=0.15, reacquire_online_margin=0.3), normal)
  assert not again(with_(reacquire_offline_margin=0.25), normal)
  assert not again(with_(reacquire_online_margin=0.4), normal)
  # A twin: the held cell scores as high as the agreed one on both maps.
  twin_acc, twin_raw = s_acc.at[S // 2, S // 2].set(0.79), raw.at[S // 2, S // 2, 0].set(0.39)
  assert bool(dnt.reacquired(on, twin_acc, twin_raw, normal, held))
  default = dnt.params(dnt.default_config())    # margins 0.1 / 0.2
  assert not bool(dnt.reacquired(default, twin_acc, twin_raw, normal, held))
  assert bool(dnt.reacquired(default, s_acc, raw, normal, held))
  # select: NanoTrack's window keeps the centre cell; with the window scaled to 0 the
  # box goes to the agreed cell (16 px per cell, 4 cells down).
  cfg = ntt.freeze(ntt.default_config())
  loc, state = _select_inputs()
  held, _, boxes = ntt.select(cfg, s_acc, loc, state, jnp.float32(1.))
  freed, _, _ = ntt.select(cfg, s_acc, loc, state, jnp.float32(1.), jnp.float32(0.))
  assert np.asarray(boxes[held, :2]).tolist() == [0., 0.]
  assert np.asarray(boxes[freed, :2]).tolist() == [0., 4. * cfg.total_stride]
