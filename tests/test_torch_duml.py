"""The PyTorch re-implementation (benchmarks/torch_duml.py) equals the Flax DuML on random weights."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import torch_duml  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.convert import torch_resnet  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402

TOL = 1e-4


def _randomised(variables, seed=0):
  """Every leaf perturbed so that BN statistics, scales and fusion weights all matter."""
  rng = np.random.default_rng(seed)

  def perturb(path, x):
    x = np.asarray(x, np.float32)
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    if name.endswith("['mean']"):
      return (0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    if name.endswith("['scale']"):
      return rng.uniform(0.8, 1.2, x.shape).astype(np.float32)
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(perturb, variables)


def _close(ours, ref, what):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
  scale = max(1.0, float(np.max(np.abs(ref))))
  err = float(np.max(np.abs(ours - ref)))
  assert err <= TOL * scale, f"{what}: max abs error {err:.3g} > {TOL} x {scale:.3g}"


@pytest.fixture(scope="module", params=["tiny", "tiny,norm=group"])
def nets(request):
  cfg = duml_configs.get_config(request.param)
  model = duml_lib.build_model(cfg.model)
  variables = _randomised(duml_lib.init_variables(
      model, jax.random.PRNGKey(0), cfg.model.exemplar_size, cfg.model.search_size))
  tmodel = torch_duml.load_flax(torch_duml.from_model_config(cfg.model), variables).eval()
  rng = np.random.default_rng(1)
  zs, xs = cfg.model.exemplar_size, cfg.model.search_size
  z = rng.uniform(0, 255, (2, zs, zs, 3)).astype(np.float32)
  x = rng.uniform(0, 255, (2, xs, xs, 3)).astype(np.float32)
  return model, variables, tmodel, z, x


def test_pairwise_forward_matches_flax(nets):
  model, variables, tmodel, z, x = nets
  ref = model.apply(variables, jnp.asarray(z), jnp.asarray(x), train=False)
  with torch.no_grad():
    out = tmodel(torch_duml.nhwc_to_nchw(z), torch_duml.nhwc_to_nchw(x))
  to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()
  _close(to_nhwc(out["score"]), ref["score"], "offline score")
  box = to_nhwc(out["box"])
  _close(box.reshape(box.shape[:-1] + (model.a_box, 5)), ref["box"], "box map")
  _close(to_nhwc(out["online"]), ref["online"], "online scores")


def test_tracking_pieces_match_flax(nets):
  model, variables, tmodel, z, x = nets
  zf = model.apply(variables, jnp.asarray(z), method=duml_lib.DuML.template)
  xf = model.apply(variables, jnp.asarray(x), method=duml_lib.DuML.search)
  filt = model.apply(variables, zf["online"], method=duml_lib.DuML.initial_filter)
  with torch.no_grad():
    tz = tmodel.template(torch_duml.nhwc_to_nchw(z))
    tx = tmodel.search(torch_duml.nhwc_to_nchw(x))
    tfilt = tmodel.initial_filter(tz["online"])
  for i in range(3):
    _close(tz["offline"][i].permute(0, 2, 3, 1).numpy(), zf["offline"][i], f"template level {i}")
    _close(tx["offline"][i].permute(0, 2, 3, 1).numpy(), xf["offline"][i], f"search level {i}")
  _close(tx["online"].permute(0, 2, 3, 1).numpy(), xf["online"], "online features")
  # torch filters (B, A, D, k, k) vs flax (B, k, k, D, A).
  _close(tfilt.permute(0, 3, 4, 2, 1).numpy(), filt, "initial filter")


def test_backbone_state_dict_round_trips_through_project_converter(nets):
  """The torch backbone uses torchvision keys: the project's converter maps it back exactly."""
  model, variables, tmodel, _, _ = nets
  if model.norm == "group":
    pytest.skip("the converter maps torchvision BatchNorm weights; model.norm='group' "
                "refuses model.pretrained")
  sd = {k[len("backbone."):]: v.numpy() for k, v in tmodel.state_dict().items()
        if k.startswith("backbone.")}
  back = torch_resnet.convert_state_dict(sd, arch="tiny")
  flat_back = jax.tree_util.tree_leaves_with_path(back)
  assert flat_back
  for path, leaf in flat_back:
    coll, rest = path[0].key, path[1:]
    ref = variables[coll]["backbone"]
    for p in rest:
      ref = ref[p.key]
    np.testing.assert_array_equal(leaf, np.asarray(ref), err_msg=jax.tree_util.keystr(path))


def test_unknown_flax_variable_is_refused():
  with pytest.raises(ValueError, match="no torch counterpart"):
    torch_duml.state_dict_from_flax({"params": {"neck": {"adjust0": {"weird": np.zeros(3)}}}})
