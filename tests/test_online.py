"""The SD-GN inner loop (paper Eq. 7-8): step length, descent, gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from duml_jax.models import online

jax.config.update("jax_enable_x64", False)


def _problem(key, m=3, g=6, c=4, k=3, a=1, linear=False):
  ks = jax.random.split(key, 5)
  feats = jax.random.normal(ks[0], (m, g, g, c))
  filt = 0.1 * jax.random.normal(ks[1], (k, k, c, a))
  label = jax.random.uniform(ks[2], (m, g, g, a))
  mask = jnp.ones((m, g, g, 1)) if linear else jax.random.uniform(ks[3], (m, g, g, 1))
  weight = 0.5 + jax.random.uniform(ks[4], (m, g, g, 1))
  beta = jnp.full((m,), 1. / m)
  return filt, feats, label, mask, weight, beta


def test_step_length_is_closed_form_on_a_quadratic_by_hand():
  # One sample, 1x1 grid, 1x1 filter, 1 channel, mask 1 (linear residual):
  # r = v sqrt(b) (x f - y), L = 1/2 r^2 + lam/2 f^2.
  x, f, y, v, b, lam = 2.0, 0.5, 3.0, 1.5, 1.0, 0.1
  # g = v^2 b x (x f - y) + lam f = 2.25 * 2 * (1 - 3) + 0.05 = -8.95
  g = v * v * b * x * (x * f - y) + lam * f
  assert np.isclose(g, -8.95)
  # alpha = g^2 / ((v sqrt(b) x g)^2 + lam g^2) = 1 / (v^2 b x^2 + lam) = 1 / 9.1
  alpha_hand = 1. / (v * v * b * x * x + lam)
  args = (jnp.full((1, 1, 1, 1), f), jnp.full((1, 1, 1, 1), x), jnp.full((1, 1, 1, 1), y),
          jnp.ones((1, 1, 1, 1)), jnp.full((1, 1, 1, 1), v), jnp.full((1,), b))
  new, alpha, loss = online.sd_gn_step(*args, 1.0, lam)
  np.testing.assert_allclose(alpha, alpha_hand, rtol=1e-6)
  # On a 1-D quadratic the GN step with step length 1 lands on the minimiser.
  f_star = v * v * b * x * y / (v * v * b * x * x + lam)
  np.testing.assert_allclose(new[0, 0, 0, 0], f_star, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.5 * (v * (x * f - y)) ** 2 + 0.5 * lam * f * f, rtol=1e-6)


def test_damped_step_is_closed_form_on_a_quadratic_by_hand():
  # Eq. 8 with the paper's epsilon (DiMP's alpha_eps): alpha = g^2 / (g^T Q g + eps g^2).
  # Same 1-D problem as above: g = -8.95, Q = v^2 b x^2 + lam = 9.1, so
  # alpha = 1 / (9.1 + 0.01) = 1 / 9.11 and f' = 0.5 + 8.95 / 9.11 = 1.482436...
  x, f, y, v, b, lam, eps = 2.0, 0.5, 3.0, 1.5, 1.0, 0.1, 0.01
  args = (jnp.full((1, 1, 1, 1), f), jnp.full((1, 1, 1, 1), x), jnp.full((1, 1, 1, 1), y),
          jnp.ones((1, 1, 1, 1)), jnp.full((1, 1, 1, 1), v), jnp.full((1,), b))
  new, alpha, _ = online.sd_gn_step(*args, 1.0, lam, alpha_eps=eps)
  np.testing.assert_allclose(alpha, 1. / 9.11, rtol=1e-6)
  np.testing.assert_allclose(new[0, 0, 0, 0], 0.5 + 8.95 / 9.11, rtol=1e-6)
  # The damped step falls short of the minimiser f* = 9 / 9.1 (what eps = 0 reaches).
  assert 0.5 + 8.95 / 9.11 < 0.5 + 8.95 / 9.1
  undamped, alpha0, _ = online.sd_gn_step(*args, 1.0, lam)
  np.testing.assert_allclose(alpha0, 1. / 9.1, rtol=1e-6)


def test_damping_reaches_the_scan_and_the_masked_loop():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(4), linear=True)
  eps = 0.5
  want = filt
  for _ in range(3):
    want, _, _ = online.sd_gn_step(want, feats, label, mask, weight, beta, 1.0, 0.05, eps)
  final, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, 1.0, 0.05, 3,
                                       alpha_eps=eps)
  masked = online.optimize_filter_masked(filt, feats, label, mask, weight, beta, 1.0, 0.05,
                                         3, 5, alpha_eps=eps)
  np.testing.assert_allclose(final, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(masked, want, rtol=1e-5, atol=1e-7)
  plain, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, 1.0, 0.05, 3)
  assert np.abs(np.asarray(plain) - np.asarray(want)).max() > 1e-4


def test_alpha_is_the_exact_line_minimiser_on_a_random_quadratic():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(0), linear=True)
  reg = 0.05
  new, alpha, _ = online.sd_gn_step(filt, feats, label, mask, weight, beta, 1.0, reg)
  grad = jax.grad(online.inner_objective)(filt, feats, label, mask, weight, beta, reg)
  np.testing.assert_allclose(filt - alpha * grad, new, rtol=1e-5, atol=1e-6)
  phi = lambda t: online.inner_objective(filt - t * grad, feats, label, mask, weight, beta, reg)
  # phi is quadratic in t: its minimiser from three samples must equal alpha.
  t = np.array([0., 1., 2.]) * float(alpha)
  vals = np.array([float(phi(ti)) for ti in t])
  coef = np.polyfit(t, vals, 2)
  np.testing.assert_allclose(-coef[1] / (2 * coef[0]), alpha, rtol=1e-3)


def test_gradient_used_by_the_step_is_the_true_gradient():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(1))
  reg = 0.1
  new, alpha, _ = online.sd_gn_step(filt, feats, label, mask, weight, beta, 1.0, reg)
  grad = jax.grad(online.inner_objective)(filt, feats, label, mask, weight, beta, reg)
  np.testing.assert_allclose((filt - new) / alpha, grad, rtol=1e-4, atol=1e-6)


def test_each_inner_step_lowers_the_objective():
  for seed in range(3):
    filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(seed), a=2)
    _, iterates, losses = online.optimize_filter(
        filt, feats, label, mask, weight, beta, 1.0, 0.05, num_iter=6)
    final = online.inner_objective(iterates[-1], feats, label, mask, weight, beta, 0.05)
    seq = np.append(np.asarray(losses), float(final))
    assert np.all(np.diff(seq) < 0), seq


@pytest.mark.parametrize("kh,kw", [(5, 5), (3, 5)])
def test_tap_spread_is_the_transpose_of_tap_sum(kh, kw):
  y = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 7, kh, kw, 3))
  g = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 7, 3))
  lhs = jnp.sum(online.tap_sum(y, kh, kw) * g)
  rhs = jnp.sum(y * online.tap_spread(g, kh, kw))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
  # each is the other's VJP, and agrees with autodiff of the plain formulation
  for fn, plain, x in ((online.tap_sum, online._tap_sum, y), (online.tap_spread, online._tap_spread, g)):
    out = fn(x, kh, kw)
    ct = jax.random.normal(jax.random.PRNGKey(2), out.shape)
    got = jax.vjp(lambda a: fn(a, kh, kw), x)[1](ct)[0]
    want = jax.vjp(lambda a: plain(a, kh, kw), x)[1](ct)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_second_order_gradient_of_a_step_equals_that_of_a_convolution(monkeypatch):
  """The outer loss differentiates J^T r (a VJP of `apply_filter`): second order."""
  from jax import lax
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(7), m=2, g=6, c=3, k=5)
  query = jax.random.normal(jax.random.PRNGKey(8), (2, 6, 6, 3))

  def outer(feats, filt):
    final, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, 0.9, 0.1,
                                         num_iter=2)
    return jnp.sum(online.apply_filter(query, final) ** 2)
  got = jax.grad(outer, argnums=(0, 1))(feats, filt)
  conv = lambda x, f: lax.conv_general_dilated(x, f, (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  monkeypatch.setattr(online, "apply_filter", conv)
  want = jax.grad(outer, argnums=(0, 1))(feats, filt)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_grad_through_inner_loop_matches_finite_differences():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(3), m=2, g=4, c=2, k=3)
  query = jax.random.normal(jax.random.PRNGKey(9), (1, 4, 4, 2))

  def outer(feats, label, step, reg):
    final, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, step, reg,
                                         num_iter=3)
    return jnp.sum(online.apply_filter(query, final) ** 2)

  check_grads(outer, (feats, label, 0.8, 0.1), order=1, modes=["rev"], atol=2e-2, rtol=2e-2,
              eps=1e-3)


def test_checkpointed_steps_give_the_same_result_and_gradient():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(4))

  def outer(feats, ckpt):
    final, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, 1.0, 0.1,
                                         num_iter=4, checkpoint=ckpt)
    return jnp.sum(final ** 2)
  np.testing.assert_allclose(outer(feats, True), outer(feats, False), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(outer)(feats, True), jax.grad(outer)(feats, False),
                             rtol=1e-4, atol=1e-7)


def test_masked_iterations_equal_static_iterations():
  filt, feats, label, mask, weight, beta = _problem(jax.random.PRNGKey(5))
  two, _, _ = online.optimize_filter(filt, feats, label, mask, weight, beta, 1.0, 0.1, 2)
  masked = jax.jit(lambda n: online.optimize_filter_masked(
      filt, feats, label, mask, weight, beta, 1.0, 0.1, n, max_iter=5))(2)
  np.testing.assert_allclose(masked, two, rtol=1e-5, atol=1e-7)
  zero = jax.jit(lambda n: online.optimize_filter_masked(
      filt, feats, label, mask, weight, beta, 1.0, 0.1, n, max_iter=5))(0)
  np.testing.assert_array_equal(zero, filt)


def test_triangular_basis_by_hand():
  rho = online.triangular_basis(jnp.array([0., 0.25, 1.0, 10.0]), num_bins=4, delta=0.5)
  np.testing.assert_allclose(rho[0], [1, 0, 0, 0])
  np.testing.assert_allclose(rho[1], [0.5, 0.5, 0, 0])
  np.testing.assert_allclose(rho[2], [0, 0, 1, 0])
  np.testing.assert_allclose(rho[3], [0, 0, 0, 1])     # last bin: ramp beyond
  # partition of unity inside the covered range
  d = jnp.linspace(0, 1.5, 31)
  np.testing.assert_allclose(online.triangular_basis(d, 4, 0.5).sum(-1), 1., atol=1e-6)


def test_distance_map_and_centre_cells():
  d = online.distance_map(5, jnp.array([2., 1.]))
  assert d[1, 2] == 0.
  np.testing.assert_allclose(d[1, 4], 2.)
  np.testing.assert_allclose(d[4, 2], 3.)
  # crop pixel index 8 j (continuous 8 j + 0.5) is cell j
  np.testing.assert_allclose(online.box_centre_to_cell(jnp.array(127.5 + 0.), 8), 15.875)
  np.testing.assert_allclose(online.box_centre_to_cell(jnp.array(16.5), 8), 2.0)


def test_adaptive_pool_matches_torch_bins_by_hand():
  x = jnp.arange(8.)[None, :, None] * jnp.ones((8, 8, 1))   # value = column index
  p = online.adaptive_avg_pool(x, 5)
  # torch bins for 8 -> 5: [0,2) [1,4) [3,5) [4,7) [6,8)
  np.testing.assert_allclose(p[0, :, 0], [0.5, 2.0, 3.5, 5.0, 6.5])


def test_residual_functions_initialisation():
  import flax.linen as nn  # noqa: F401
  fn = online.ResidualFunctions(num_bins=50, bin_displacement=0.2, label_sigma=2.0)
  dist = jnp.array([[0., 2., 4., 20.]])
  params = fn.init(jax.random.PRNGKey(0), dist)
  (maps, step, reg) = fn.apply(params, dist)
  # label ~ Gaussian of the distance, peak at the centre, ~0 far away
  g = np.exp(-0.5 * (np.array([0, 2, 4]) / 2.) ** 2) - np.exp(-0.5 * (49 * 0.2 / 2.) ** 2)
  np.testing.assert_allclose(maps["label"][0, :3], g, atol=1e-5)
  assert maps["label"][0, 3] < 1e-3
  # mask ~1 near the centre, ~0 far; spatial weight 1; step 1; reg 0.1^2
  sig = lambda t: 1. / (1. + np.exp(-t))
  np.testing.assert_allclose(maps["mask"][0, :3], sig(3. * np.tanh((4. - np.array([0., 2., 4.])) / 2.)),
                             rtol=1e-5)
  assert maps["mask"][0, 0] > 0.9 and maps["mask"][0, 3] < 0.05
  np.testing.assert_allclose(maps["weight"], 1., atol=1e-6)
  np.testing.assert_allclose(step, 1.0, rtol=1e-6)
  np.testing.assert_allclose(reg, 0.01, rtol=1e-6)


def test_apply_filter_equals_same_padded_correlation():
  from jax import lax
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 11, 4))
  f = jax.random.normal(jax.random.PRNGKey(1), (5, 5, 4, 2))
  ref = lax.conv_general_dilated(x, f, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(online.apply_filter(x, f), ref, rtol=1e-5, atol=5e-5)
  # batched filters under vmap (the inner loop's case)
  fb = jnp.stack([f, 2 * f])
  out = jax.vmap(online.apply_filter)(jnp.stack([x, x]), fb)
  np.testing.assert_allclose(out[1], 2 * ref, rtol=1e-5, atol=1e-4)
