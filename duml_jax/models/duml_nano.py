"""DuML-nano: NanoTrack as DuML's offline branch, DuML's ONR online branch on its features.

The offline (accurate) branch is NanoTrack v1/v2 (`duml_jax.models.nanotrack`):
anchor-free, a 2-way score and 4 box distances on a 16x16 grid for a 255
search and a 127 template. The online (robust) branch is DuML's ONR
(paper Eq. 3, 7, 8; `duml_jax.models.online`), built from the same pieces as
`duml_jax.models.duml.DuML` and run on NanoTrack's single feature level:

  template features   (B, 8, 8, 48)     NanoBackbone on 127x127
  search features     (B, 16, 16, 48)   NanoBackbone on 255x255 (stride 16)
  online features     (B, 16, 16, D)    `OnlineFeatures` (1 level, 3x3 conv, L2 norm)
  filter phi          (B, 5, 5, D, 1)   `FilterInitializer` on the template's
                                        centred 4x4 cells, pooled to 5x5
  online scores       (B, 16, 16, 1)    phi * search online features ('SAME')

Grid alignment. The stride-2 convolutions (kernel k, padding k // 2) put
feature cell j of a 255 crop at crop pixel index 16 j, i.e. continuous crop
coordinate ``16 j + 0.5`` (`online.box_centre_to_cell` with stride 16). The
online map is the full 16x16 'SAME' correlation of those features, so online
cell (i, j) is feature cell (i, j). NanoTrack's score/box map is also the
feature grid (its head correlates pixel-wise, no cropping) but its tracker
places point j at ``(j - 8) * 16`` pixels from the crop centre 127.5, i.e. at
``16 j - 0.5``: the two maps are the same 16x16 grid, 1 crop pixel apart
(1/16 cell), and are fused cell by cell with no crop or resampling (unlike
DuML's 32x32 -> [4:29] online window for the 25x25 offline grid).

What the online branch reads (``online_layer``): NanoTrack's output features
above (default, what its head reads too), or block 3's stride-8, 24-channel
features averaged over 3x3 cells at stride 2 onto the same 16x16 grid
(``block3``), or both, each at unit RMS (``output+block3``): lower-level
features than the head's, for an online map that is not the head's echo.

Initialisation ("without meta-training"). The ONR's residual functions start
from their closed form (Gaussian label, tanh mask, unit spatial weight, step
length 1, regulariser 0.1; DiMP's); the online projection and the filter
initializer's conv start as the identity (`online.identity_conv_init`), so the
online features are NanoTrack's features L2-normalised and phi^(0) is the
template's target region pooled to 5x5. `duml_jax.training.meta_nano`
meta-trains these pieces with NanoTrack frozen.

Variables: ``{'params': {'backbone', 'head', 'online_features',
'filter_init', 'residual_fns'}}``; `from_nanotrack` builds them from the
converter's NanoTrack variables (`duml_jax.convert.nanotrack`).
"""
import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from duml_jax.models import nanotrack as nt
from duml_jax.models import online as online_lib
from duml_jax.models.duml import OnlineSpec

STRIDE = 16
TEMPLATE_TARGET_CELLS = 4      # target span in the 8x8 template grid (context 0.5)
FIRST_CELL_CENTRE = 0.5        # online / feature cell j at crop coordinate 16 j + 0.5

# ONR defaults rescaled to stride 16 (DuML's are in stride-8 cells): label sigma
# 1 cell (16 px), mask radius 2 cells, bins every 0.1 cell up to 10 cells.
NANO_ONLINE_SPEC = OnlineSpec(feature_dim=48, filter_size=5, train_iters=5, num_dist_bins=100,
                              bin_displacement=0.1, label_sigma=1.0, mask_init_factor=3.0,
                              mask_init_radius=2.0, init_step_length=1.0, init_filter_reg=0.1,
                              min_filter_reg=1e-3, checkpoint_steps=False)
OFFLINE = ("backbone", "head")
ONLINE = ("online_features", "filter_init", "residual_fns")
# What the online branch reads (`DuMLNano.online_layer`) and its channels: NanoTrack's
# output features (what its head reads), block 3's stride-8 features (lower level, 24
# channels) pooled onto the stride-16 grid, or both concatenated.
ONLINE_LAYERS = {"output": 48, "block3": 24, "output+block3": 72}
_TAP = 3


class DuMLNano(nn.Module):
  """NanoTrack offline branch + ONR online branch (see the module docstring).

  Attributes:
    version: NanoTrack version ('v1' or 'v2').
    online_spec: the ONR hyper-parameters (`OnlineSpec`, in stride-16 cells).
    identity_init: identity start of the online projection and filter conv
      (False: flax's default random init).
    online_layer: the backbone features the online branch reads (`ONLINE_LAYERS`).
  """
  version: str = "v2"
  online_spec: OnlineSpec = NANO_ONLINE_SPEC
  identity_init: bool = True
  online_layer: str = "output"     # a key of ONLINE_LAYERS
  online: str = "ONR"          # read by the DuML tracker's shared online code
  stride: int = STRIDE
  a_on: int = 1

  def setup(self):
    if self.online_layer not in ONLINE_LAYERS:
      raise ValueError(f"DuMLNano.online_layer={self.online_layer!r}; allowed: "
                       f"{sorted(ONLINE_LAYERS)}")
    backbone, head = nt.build(self.version)
    self.backbone = backbone
    self.head = head
    s = self.online_spec
    kinit = (online_lib.identity_conv_init if self.identity_init
             else nn.linear.default_kernel_init)
    self.online_features = online_lib.OnlineFeatures(s.feature_dim, s.filter_size, num_levels=1,
                                                     kernel_init=kinit)
    self.filter_init = online_lib.FilterInitializer(s.filter_size, self.a_on,
                                                    TEMPLATE_TARGET_CELLS, kernel_init=kinit)
    self.residual_fns = online_lib.residual_functions(s)

  # -- pieces ------------------------------------------------------------------
  def features(self, img):
    """Images (B, H, W, 3) float 0..255 (network channel order) -> NanoTrack features."""
    return self.backbone(img)

  def features_and_online_input(self, img):
    """Images -> (NanoTrack features, the online branch's input on the same grid).

    For ``online_layer='output'`` both are NanoTrack's features. Block 3's
    stride-8 cell j sits at crop pixel 8 j; a 3x3 average with stride 2 centred on
    cell 2 j puts it at 16 j, NanoTrack's feature cell j (no shift between the maps).
    """
    if self.online_layer == "output":
      feats = self.backbone(img)
      return feats, feats
    feats, (tap,) = self.backbone(img, taps=(_TAP,))
    pooled = nn.avg_pool(tap, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    if self.online_layer == "block3":
      return feats, pooled
    # Each part scaled to unit RMS so that neither dominates the L2-normalised output.
    rms = lambda a: a / jnp.sqrt(jnp.mean(a * a, axis=(-3, -2, -1), keepdims=True) + 1e-12)
    return feats, jnp.concatenate([rms(feats), rms(pooled)], axis=-1)

  def online_input(self, img):
    """Images -> the online branch's input features (B, G, G, ONLINE_LAYERS[online_layer])."""
    return self.features_and_online_input(img)[1]

  def online_feats(self, feats):
    """Online input (B, G, G, C) (`online_input`) -> online features (B, G, G, D)."""
    return self.online_features([feats])

  def offline_heads(self, z_feat, x_feat):
    """NanoTrack head: ``cls`` (B, 16, 16, 2) logits and ``loc`` (B, 16, 16, 4)."""
    return self.head(z_feat, x_feat)

  def initial_filter(self, z_online):
    """phi^(0) (B, 5, 5, D, 1) from template online features (B, 8, 8, D)."""
    return self.filter_init(z_online)

  def residual_maps(self, centres, grid_size: int):
    """Learned (label, mask, weight) maps (..., G, G, 1), step length, regulariser.

    Same contract as `DuML.residual_maps` (the DuML tracker's online code
    calls it): `centres` (..., 2) in feature cells.
    """
    dist = online_lib.distance_map(grid_size, centres)
    maps, step, reg = self.residual_fns(dist)
    return {k: v[..., None] for k, v in maps.items()}, step, reg

  # -- forwards -----------------------------------------------------------------
  def __call__(self, z, x):
    """Template (B, 127, 127, 3), search (B, 255, 255, 3) -> {'cls', 'loc', 'online'}.

    ``online`` are the scores of phi^(0) (no inner step); creates every parameter.
    """
    (zf, z_in), (xf, x_in) = self.features_and_online_input(z), self.features_and_online_input(x)
    cls, loc = self.offline_heads(zf, xf)
    x_on = self.online_feats(x_in)
    filt = self.initial_filter(self.online_feats(z_in))
    grid = x_on.shape[-2]
    self.residual_maps(jnp.full(x.shape[:1] + (2,), (grid - 1) / 2., jnp.float32), grid)
    return {"cls": cls, "loc": loc, "online": online_lib.online_scores(filt, x_on, None)}

  def online_sequence(self, support_z_feat, support_x_feat, support_centres, query_x_feat,
                      num_iter: Optional[int] = None):
    """Sequence-wise online forward through the inner loop, from NanoTrack features.

    The backbone is not called: meta-training computes (frozen) online inputs
    (`online_input`) once and differentiates only the online pieces.

    Args:
      support_z_feat: (B, S, 8, 8, C) template online inputs of the support frames
        (the filter starts from their mean, paper footnote 1).
      support_x_feat: (B, S, 16, 16, C) search online inputs of the support frames.
      support_centres: (B, S, 2) target centres in the support crops (pixels).
      query_x_feat: (B, Q, 16, 16, C) query search online inputs.
      num_iter: inner SD-GN steps (default: `online_spec.train_iters`).
    Returns:
      (B, T+1, Q, 16, 16, 1) online scores of phi^(0..T) on the queries.
    """
    spec = self.online_spec
    num_iter = spec.train_iters if num_iter is None else num_iter
    b, s = support_z_feat.shape[:2]
    q = query_x_feat.shape[1]
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    unflat = lambda a, n: a.reshape((b, n) + a.shape[1:])
    z_on = unflat(self.online_feats(flat(support_z_feat)), s).mean(axis=1)
    filt0 = self.initial_filter(z_on)                                    # (B,k,k,D,1)
    sf = unflat(self.online_feats(flat(support_x_feat)), s)              # (B,S,G,G,D)
    qf = unflat(self.online_feats(flat(query_x_feat)), q)                # (B,Q,G,G,D)
    grid = sf.shape[-2]
    cells = online_lib.box_centre_to_cell(support_centres, self.stride)
    maps, step, reg = self.residual_maps(cells, grid)                    # (B,S,G,G,1)
    beta = jnp.full((b, s), 1. / s, jnp.float32)
    filters = jax.vmap(lambda f0, x, y, m, v, bt: online_lib.filter_iterates(
        f0, x, y, m, v, bt, step, reg, num_iter, spec.checkpoint_steps))(
            filt0, sf, maps["label"], maps["mask"], maps["weight"], beta)  # (B,T+1,...)

    def scores(fs, xq):   # (T+1, k, k, D, 1), (Q, G, G, D) -> (T+1, Q, G, G, 1)
      return jax.vmap(lambda f: online_lib.online_scores(
          jnp.broadcast_to(f, (q,) + f.shape), xq, None))(fs)
    return jax.vmap(scores)(filters, qf)


def init_variables(model: DuMLNano, rng, template_size=127, search_size=255):
  """Random variables {'params': ...} of `model` (every piece)."""
  z = jnp.zeros((1, template_size, template_size, 3), jnp.float32)
  x = jnp.zeros((1, search_size, search_size, 3), jnp.float32)
  return model.init(rng, z, x)


def init_online_params(model: DuMLNano, rng):
  """Initial online params {'online_features', 'filter_init', 'residual_fns'}.

  Only the online pieces are created (no backbone is run), from zero
  online inputs of the model's width (`ONLINE_LAYERS`).
  """
  c = ONLINE_LAYERS[model.online_layer]

  def fn(m, zf, xf):
    x_on = m.online_feats(xf)
    m.initial_filter(m.online_feats(zf))
    m.residual_maps(jnp.zeros((1, 2), jnp.float32), x_on.shape[-2])
    return x_on
  v = nn.init(fn, model)(rng, jnp.zeros((1, 8, 8, c)), jnp.zeros((1, 16, 16, c)))
  return dict(v["params"])


def from_nanotrack(nano_variables, online_params):
  """Full DuML-nano variables from the converter's NanoTrack variables
  ({'backbone': {'params'}, 'head': {'params'}}) and online params."""
  params = {"backbone": nano_variables["backbone"]["params"],
            "head": nano_variables["head"]["params"]}
  missing = [k for k in ONLINE if k not in online_params]
  if missing:
    raise KeyError(f"DuML-nano online params: missing {missing}")
  params.update({k: online_params[k] for k in ONLINE})
  return {"params": params}


def nanotrack_variables(variables):
  """The NanoTrack part of DuML-nano variables, in the converter's layout."""
  p = variables["params"]
  return {"backbone": {"params": p["backbone"]}, "head": {"params": p["head"]}}


def online_params(variables):
  """The online part {'online_features', 'filter_init', 'residual_fns'} of the variables."""
  return {k: variables["params"][k] for k in ONLINE}


def build(version: str = "v2", identity_init: bool = True, online_layer: str = "output",
          **online_overrides) -> DuMLNano:
  """A `DuMLNano` with `NANO_ONLINE_SPEC` fields overridden by keyword; the online
  feature width follows `online_layer` (the identity start keeps every channel)."""
  if online_layer not in ONLINE_LAYERS:
    raise ValueError(f"online_layer={online_layer!r}; allowed: {sorted(ONLINE_LAYERS)}")
  online_overrides.setdefault("feature_dim", ONLINE_LAYERS[online_layer])
  return DuMLNano(version=version, identity_init=identity_init, online_layer=online_layer,
                  online_spec=dataclasses.replace(NANO_ONLINE_SPEC, **online_overrides))
