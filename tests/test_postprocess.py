"""SiamRPN++ post-processing on hand-made 5x5 score maps (stride 8, one 64x64 anchor)."""
import math

import jax.numpy as jnp
import numpy as np

from duml_jax.tracking import postprocess

S = 5
SHAPES = ((64., 64.),)


def _maps(peaks, deltas=None):
  score = np.zeros((S, S, 1), np.float32)
  for (i, j), v in peaks.items():
    score[i, j, 0] = v
  box_map = np.zeros((S, S, 1, 5), np.float32)
  for (i, j), d in (deltas or {}).items():
    box_map[i, j, 0, :4] = d
  anchors = postprocess.anchor_offsets(S, 8, SHAPES)
  return jnp.asarray(score), postprocess.decode_boxes(jnp.asarray(box_map), anchors)


def test_hann_window_and_anchor_offsets():
  w = postprocess.hann_window(5, 3)
  assert w.shape == (5, 5, 3)
  np.testing.assert_allclose(w[..., 2], np.outer(np.hanning(5), np.hanning(5)), atol=1e-7)
  a = postprocess.anchor_offsets(25, 8, SHAPES)
  assert a[0, 0, 0, 0] == -96 and a[24, 24, 0, 1] == 96 and a[12, 12, 0, 0] == 0


def test_peak_found_and_decoded():
  score, pred = _maps({(1, 3): 1.0}, {(1, 3): (0.25, -0.5, 0., 0.)})
  best, penalty, _ = postprocess.select(score, pred, jnp.array([64., 64.]),
                                        postprocess.hann_window(S, 1), 0.05, 0.0)
  assert int(best) == 1 * S + 3
  # cx = 0.25 * 64 + 8, cy = -0.5 * 64 - 8 (cell (1, 3): offsets (+8, -8)).
  np.testing.assert_allclose(pred.reshape(-1, 4)[best], [24., -40., 64., 64.], atol=1e-5)
  np.testing.assert_allclose(penalty, 1.0, atol=1e-6)   # sizes equal the target


def test_window_prefers_the_centre():
  score, pred = _maps({(0, 0): 0.8, (2, 2): 0.8})
  win = postprocess.hann_window(S, 1)
  no_window, _, _ = postprocess.select(score, pred, jnp.array([64., 64.]), win, 0.05, 0.0)
  with_window, _, pscore = postprocess.select(score, pred, jnp.array([64., 64.]), win, 0.05, 0.3)
  assert int(no_window) == 0                 # tie: the first maximum
  assert int(with_window) == 2 * S + 2
  np.testing.assert_allclose(pscore[2, 2, 0], 0.7 * 0.8 + 0.3 * 1.0, atol=1e-6)
  np.testing.assert_allclose(pscore[0, 0, 0], 0.7 * 0.8, atol=1e-6)


def test_scale_and_ratio_penalty():
  ln2 = math.log(2.)
  score, pred = _maps({(2, 1): 0.9, (2, 3): 0.9},
                      {(2, 1): (0., 0., ln2, ln2),            # 128 x 128: s_c = 2, r_c = 1
                       (0, 0): (0., 0., ln2, -ln2)})          # 128 x 32
  best, penalty, _ = postprocess.select(score, pred, jnp.array([64., 64.]),
                                        postprocess.hann_window(S, 1), 0.2, 0.42)
  assert int(best) == 2 * S + 3
  np.testing.assert_allclose(penalty[2, 1, 0], math.exp(-0.2), rtol=1e-5)
  # 128 x 32 against 64 x 64: r_c = 4; s_c = sqrt(208 * 112) / 128.
  s_c = math.sqrt(208. * 112.) / 128.
  np.testing.assert_allclose(penalty[0, 0, 0], math.exp(-(4. * s_c - 1.) * 0.2), rtol=1e-5)


def test_update_target_smoothing_and_clipping():
  size = jnp.array([160., 120.])
  c, s = postprocess.update_target(jnp.array([100., 80.]), jnp.array([40., 20.]),
                                   jnp.array([10., -6., 60., 30.]), 2.0, 0.5, size, 10.)
  np.testing.assert_allclose(c, [105., 77.], atol=1e-5)       # moves by box / scale_z
  np.testing.assert_allclose(s, [35., 17.5], atol=1e-5)       # 0.5 * (40, 20) + 0.5 * (30, 15)
  c, s = postprocess.update_target(jnp.array([155., 5.]), jnp.array([40., 20.]),
                                   jnp.array([20., -20., 1000., 1.]), 1.0, 1.0, size, 10.)
  np.testing.assert_allclose(c, [160., 0.], atol=1e-5)
  np.testing.assert_allclose(s, [160., 10.], atol=1e-5)


def test_peak_offset_recovers_a_sampled_parabola_vertex():
  # Samples of a concave quadratic with its vertex at (col 4.3, row 2.8): exact recovery.
  rows, cols = np.mgrid[0:7, 0:7]
  m = -((cols - 4.3) ** 2) - 2.0 * (rows - 2.8) ** 2
  np.testing.assert_allclose(postprocess.peak_offset(jnp.asarray(m), 3, 4), [0.3, -0.2],
                             atol=1e-5)
  # At the border, or where the three samples are not concave, the offset is 0.
  np.testing.assert_allclose(postprocess.peak_offset(jnp.asarray(m), 0, 6), [0., 0.])
  flat = np.zeros((5, 5))
  np.testing.assert_allclose(postprocess.peak_offset(jnp.asarray(flat), 2, 2), [0., 0.])
  # A vertex beyond half a cell is clipped to +-0.5.
  lin = np.tile(np.array([0., 1., 1.9, 2.0, 2.05]), (5, 1))
  assert float(postprocess.peak_offset(jnp.asarray(lin), 2, 2)[0]) == 0.5
