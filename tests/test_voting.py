"""Score voting (Eq. 4-5) on a hand-computed example."""
import jax.numpy as jnp
import numpy as np

from duml_jax.tracking import voting

# (cx, cy, w, h); box 0 is the arg-max box.
BOXES = jnp.array([[0., 0., 10., 10.],     # reference: IoU 1
                   [1., 0., 10., 10.],     # IoU 90 / 110 = 9 / 11
                   [0., 0., 12., 10.],     # IoU 100 / 120 = 5 / 6
                   [9.9, 0., 10., 10.]])   # IoU 1 / 199 < eps: no vote
SCORES = jnp.array([0.9, 0.5, 0.4, 1.0])
IOUS = jnp.array([0.8, 0.6, 0.5, 1.0])


def test_hand_computed_vote():
  # sigma 0.1:
  #   w0 = 0.9 * 0.8                          = 0.72
  #   w1 = 0.5 * 0.6 * exp(-(2/11)^2 / 0.1)   = 0.3 * 0.7185079 = 0.2155524
  #   w2 = 0.4 * 0.5 * exp(-(1/6)^2 / 0.1)    = 0.2 * 0.7574651 = 0.1514930
  #   sum = 1.0870454
  #   cx = 0.2155524 / 1.0870454              = 0.1982920
  #   w  = (7.2 + 2.155524 + 1.817916) / sum  = 10.2787244
  got = voting.score_voting(BOXES, SCORES, IOUS, 0, sigma=0.1, eps=0.01)
  np.testing.assert_allclose(got, [0.1982920, 0., 10.2787244, 10.], rtol=1e-5, atol=1e-6)


def test_small_sigma_keeps_the_reference_and_eps_matters():
  got = voting.score_voting(BOXES, SCORES, IOUS, 0, sigma=0.0025, eps=0.01)
  # exp(-(2/11)^2 / 0.0025) = exp(-13.22) ~ 1.8e-6: the vote stays at box 0.
  np.testing.assert_allclose(got, BOXES[0], atol=2e-4)
  # With eps = 0 box 3 (IoU 0.005, weight ~ 1.0 * exp(-0.99^2 / 0.1) = 5.5e-5) votes too.
  loose = voting.score_voting(BOXES, SCORES, IOUS, 0, sigma=0.1, eps=0.0)
  tight = voting.score_voting(BOXES, SCORES, IOUS, 0, sigma=0.1, eps=0.01)
  assert float(loose[0]) > float(tight[0])


def test_zero_weights_fall_back_to_the_reference():
  got = voting.score_voting(BOXES, jnp.zeros(4), IOUS, 2, sigma=0.1, eps=0.01)
  np.testing.assert_allclose(got, BOXES[2])
