"""The DuML network: backbone, neck, offline heads, online branch (paper Fig. 3).

Every localization form of the paper is one `DuML` with `offline` in
{none, OFR, OFC-1s, OFC-5s} and `online` in {none, ONR, ONC-1s, ONC-5s}.

Shapes for a 127 template and a 255 search (stride 8, see `neck.py`):

  template features   3 x (B, 16, 16, C)   cropped to 3 x (B, 8, 8, C)
  search features     3 x (B, 32, 32, C)
  offline scores      (B, 25, 25, A_off)   logits (sigmoid -> probability)
  box map             (B, 25, 25, A_box, 5) (dx, dy, dw, dh, iou logit)
  online features     (B, 32, 32, D)
  filter phi          (B, k, k, D, A_on)
  online scores       (B, 25, 25, A_on)    window [4:29] of the 32x32 map

Offline cell ``u`` sits at displacement ``8 u - 96`` pixels from the search
centre, the online cell ``j`` of the 32x32 map at ``8 j + 0.5`` (continuous
coordinates), so the [4:29] window is at ``8 u - 95``: the two grids agree to
within one pixel. A_box = max(A_off, A_on): the branch with fewer anchors is
broadcast over the anchor axis (paper Section 4).

The module exposes the pieces tracking needs separately (`template`,
`search`, `offline_heads`, `initial_filter`, `residual_maps`) and, for training,
`__call__` (pair-wise, offline branches) and `forward_sequence`
(sequence-wise, both branches, through the inner loop).

Mixed precision (`dtype`, config `model.dtype`): the backbone, the neck, the
offline heads and the online feature / filter-initialiser convolutions
compute in `dtype` (e.g. bfloat16); parameters and BatchNorm statistics stay
float32. The 'offline' features of `template` / `search` are in `dtype`;
every output that feeds a loss or the tracker is float32: the offline
'score' and 'box' maps (fused in float32), the 'online' features, the
filter and so the whole online branch (SD-GN inner loop, step length
alpha of Eq. 8, online scores).
"""
import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from duml_jax import config_lib
from duml_jax.models import backbone as backbone_lib
from duml_jax.models import heads
from duml_jax.models import neck as neck_lib
from duml_jax.models import online as online_lib

TEMPLATE_CELLS = 8       # template crop (cells) fed to the offline heads (paper geometry)


# The online branch's hyper-parameters (re-exported for users of this module).
OnlineSpec = online_lib.OnlineSpec


class DuML(nn.Module):
  backbone_name: str = "resnet50"
  neck_channels: int = 256
  offline: str = "OFC-5s"
  online: str = "ONR"
  num_ratios: int = 5
  online_spec: OnlineSpec = OnlineSpec()
  frozen_bn: bool = False
  stride: int = 8
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32   # compute dtype (config `model.dtype`); params stay float32
  # Template cells fed to the offline heads (config `model.template_cells`): 8 of the 16
  # cells of a 127 template, the target's extent with context 0.5 (paper geometry).
  template_cells: int = TEMPLATE_CELLS
  norm: str = "batch"        # config `model.norm`: batch (paper) | group

  # -- derived -------------------------------------------------------------
  @property
  def a_off(self):
    return config_lib.num_anchors(self.offline, self.num_ratios)

  @property
  def a_on(self):
    return config_lib.num_anchors(self.online, self.num_ratios)

  @property
  def a_box(self):
    return max(self.a_off, self.a_on)

  @property
  def online_crop(self):
    """First cell of the online window that lines up with the offline score grid."""
    return self.template_cells // 2

  @property
  def feature_offset(self):
    """Crop pixel of feature cell 0's centre (7 for the dilated backbone, else 0)."""
    return backbone_lib.FEATURE_OFFSET[self.backbone_name]

  def online_window(self, grid: int):
    """(first cell, cells) of the online map window on the offline score grid: the score
    map has grid - template_cells + 1 cells ([4:29] of 32, [3:28] of the dilated 31)."""
    return self.online_crop, grid - self.template_cells + 1

  def setup(self):
    self.backbone = backbone_lib.build_backbone(
        self.backbone_name, frozen_bn=self.frozen_bn, axis_name=self.axis_name,
        dtype=self.dtype, norm=self.norm)
    self.neck = neck_lib.Neck(self.neck_channels, axis_name=self.axis_name, dtype=self.dtype,
                              norm=self.norm)
    if self.a_off:
      self.cls_head = heads.MultiLevelXCorr(self.neck_channels, self.a_off,
                                            axis_name=self.axis_name, dtype=self.dtype,
                                            norm=self.norm)
    self.box_head = heads.MultiLevelXCorr(self.neck_channels, 5 * self.a_box,
                                          axis_name=self.axis_name, dtype=self.dtype,
                                          norm=self.norm)
    if self.a_on:
      s = self.online_spec
      self.online_features = online_lib.OnlineFeatures(s.feature_dim, s.filter_size,
                                                       dtype=self.dtype)
      self.filter_init = online_lib.FilterInitializer(s.filter_size, self.a_on,
                                                      dtype=self.dtype)
      self.residual_fns = online_lib.residual_functions(s)

  # -- pieces ----------------------------------------------------------------
  def _features(self, img, train, backbone_train=None):
    bb_train = train if backbone_train is None else backbone_train
    return self.neck(self.backbone(img, train=bb_train), train)

  def template(self, z, train: bool = False, backbone_train: Optional[bool] = None):
    """Template image(s) (B, 127, 127, 3) -> {'offline': [3 x (B,8,8,C)], 'online': (B,16,16,D)|None}.

    `backbone_train` (default: `train`) puts the backbone's BatchNorm in
    training mode separately, for the frozen-backbone epochs.
    """
    f = self._features(z, train, backbone_train)
    out = {"offline": neck_lib.crop_template(f, self.template_cells), "online": None}
    if self.a_on:
      out["online"] = self.online_features(f)
    return out

  def search(self, x, train: bool = False, backbone_train: Optional[bool] = None):
    """Search image(s) (B, 255, 255, 3) -> {'offline': [3 x (B,32,32,C)], 'online': (B,32,32,D)|None}."""
    f = self._features(x, train, backbone_train)
    out = {"offline": f, "online": None}
    if self.a_on:
      out["online"] = self.online_features(f)
    return out

  def offline_heads(self, zf, xf, train: bool = False):
    """Offline heads -> {'score': (B,25,25,A_off) logits | None, 'box': (B,25,25,A_box,5)}."""
    box = self.box_head(zf["offline"], xf["offline"], train)
    box = box.reshape(box.shape[:-1] + (self.a_box, 5))
    score = self.cls_head(zf["offline"], xf["offline"], train) if self.a_off else None
    return {"score": score, "box": box}

  def initial_filter(self, z_online):
    """phi^(0) (B, k, k, D, A_on) from template online features (B, 16, 16, D)."""
    return self.filter_init(z_online)

  def residual_maps(self, centres, grid_size: int):
    """Learned (label, mask, weight) maps (..., H, W, 1), step length and regulariser.

    Args:
      centres: (..., 2) target centres (x, y) in feature cells.
      grid_size: size of the online feature grid (32 for a 255 search).
    """
    dist = online_lib.distance_map(grid_size, centres)
    maps, step, reg = self.residual_fns(dist)
    return {k: v[..., None] for k, v in maps.items()}, step, reg

  # -- training forwards -------------------------------------------------------
  def __call__(self, z, x, train: bool = False, backbone_train: Optional[bool] = None):
    """Pair-wise forward (offline branches; also creates every parameter).

    Returns {'score', 'box'} of `offline` and, when the model has an online
    branch, 'online' scores of the initial filter (no inner steps).
    """
    zf, xf = self.template(z, train, backbone_train), self.search(x, train, backbone_train)
    out = self.offline_heads(zf, xf, train)
    if self.a_on:
      filt = self.initial_filter(zf["online"])
      grid = xf["online"].shape[-2]
      centre = jnp.full(x.shape[:1] + (2,), (grid - 1) / 2., jnp.float32)
      self.residual_maps(centre, grid)   # creates the residual parameters
      out["online"] = online_lib.online_scores(filt, xf["online"], *self.online_window(grid))
    return out

  def forward_sequence(self, support_z, support_x, support_centres, query_x,
                       train: bool = False, support_labels=None,
                       num_iter: Optional[int] = None, backbone_train: Optional[bool] = None,
                       support_offline: bool = False, template_from: str = "mean"):
    """Sequence-wise forward through the inner loop (paper Section 4, footnote 1).

    Args:
      support_z: (B, S, 127, 127, 3) template crops of the support frames.
      support_x: (B, S, 255, 255, 3) search crops of the support frames.
      support_centres: (B, S, 2) target centres in support search crops (pixels).
      query_x: (B, Q, 255, 255, 3) query search crops.
      support_labels: ONC only: (B, S, G, G, A_on) anchor labels on the online
        grid, 1 / 0 / -1 (ignored).
      num_iter: inner steps (default: the spec's train_iters).
      support_offline: also run the offline heads on the support search crops (their
        features are computed for the online branch anyway).
      template_from: "mean" (paper footnote 1: the support set's averaged template
        feature) or "first" (the first support frame's, as the tracker has it); it feeds
        both the offline heads and the online initial filter.
    Returns:
      {'score': (B,Q,25,25,A_off)|None, 'box': (B,Q,25,25,A_box,5),
       'online': (B,T+1,Q,25,25,A_on)|None scores of phi^(0..T)}; with
      `support_offline` also 'support_score' (B,S,25,25,A_off)|None and
      'support_box' (B,S,25,25,A_box,5).
    """
    b, s = support_z.shape[:2]
    q = query_x.shape[1]
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    zf = self.template(flat(support_z), train, backbone_train)
    # The template is the support set's averaged feature (paper footnote 1), or the first.
    if template_from not in config_lib.JOINT_TEMPLATES:
      raise ValueError(f"template_from={template_from!r}; allowed: {config_lib.JOINT_TEMPLATES}")
    by_seq = lambda a: a.reshape((b, s) + a.shape[1:])
    template_of = ((lambda a: by_seq(a).mean(axis=1)) if template_from == "mean"
              else (lambda a: by_seq(a)[:, 0]))
    z_off = [template_of(f) for f in zf["offline"]]
    qf = self.search(flat(query_x), train, backbone_train)
    rep_q = lambda a: jnp.repeat(a, q, axis=0)
    out = self.offline_heads({"offline": [rep_q(f) for f in z_off]}, qf, train)
    unflat_q = lambda a: None if a is None else a.reshape((b, q) + a.shape[1:])
    out = {"score": unflat_q(out["score"]), "box": unflat_q(out["box"]), "online": None}
    if not (self.a_on or support_offline):
      return out
    sx = self.search(flat(support_x), train, backbone_train)
    if support_offline:
      so = self.offline_heads({"offline": [jnp.repeat(f, s, axis=0) for f in z_off]}, sx, train)
      unflat_s = lambda a: None if a is None else a.reshape((b, s) + a.shape[1:])
      out["support_score"], out["support_box"] = unflat_s(so["score"]), unflat_s(so["box"])
    if not self.a_on:
      return out
    spec = self.online_spec
    num_iter = spec.train_iters if num_iter is None else num_iter
    filt0 = self.initial_filter(template_of(zf["online"]))                  # (B,k,k,D,A)
    sf = sx["online"]
    sf = sf.reshape((b, s) + sf.shape[1:])                               # (B,S,G,G,D)
    grid = sf.shape[-2]
    cells = online_lib.box_centre_to_cell(support_centres, self.stride, self.feature_offset)
    maps, step, reg = self.residual_maps(cells, grid)                    # (B,S,G,G,1)
    label, weight = maps["label"], maps["weight"]
    if support_labels is not None:
      label = (support_labels == 1).astype(label.dtype)
      weight = weight * (support_labels >= 0).astype(weight.dtype)
    beta = jnp.full((b, s), 1. / s, jnp.float32)

    def solve(f0, feats, y, m, v, bt):
      _, iterates, _ = online_lib.optimize_filter(
          f0, feats, y, m, v, bt, step, reg, num_iter, spec.checkpoint_steps,
          alpha_eps=spec.alpha_eps)
      return jnp.concatenate([f0[None], iterates], axis=0)               # (T+1,k,k,D,A)
    filters = jax.vmap(solve)(filt0, sf, label, maps["mask"], weight, beta)
    qo = qf["online"].reshape((b, q) + qf["online"].shape[1:])           # (B,Q,G,G,D)

    def scores(fs, xq):   # (T+1,...), (Q,G,G,D) -> (T+1,Q,25,25,A)
      return jax.vmap(lambda f: online_lib.online_scores(
          jnp.broadcast_to(f, (q,) + f.shape), xq, *self.online_window(grid)))(fs)
    out["online"] = jax.vmap(scores)(filters, qo)
    return out


def fuse_scores(s_robust, s_accurate, mu):
  """Eq. 1: mu * s_robust + (1 - mu) * s_accurate, broadcast over the anchor axis.

  Either input may be None (uni-modal forms): the other is returned.
  """
  if s_robust is None:
    return s_accurate
  if s_accurate is None:
    return s_robust
  a = max(s_robust.shape[-1], s_accurate.shape[-1])
  shape = s_robust.shape[:-1] + (a,)
  return mu * jnp.broadcast_to(s_robust, shape) + (1. - mu) * jnp.broadcast_to(s_accurate, shape)


def build_model(model_config, axis_name: Optional[str] = None) -> DuML:
  """The `DuML` module of a config's `model` section."""
  oc = model_config.online_cfg
  # Keys missing from configs saved before they existed keep the spec's default.
  spec = OnlineSpec(**{f.name: oc[f.name] for f in dataclasses.fields(OnlineSpec) if f.name in oc})
  return DuML(backbone_name=model_config.backbone, neck_channels=model_config.neck_channels,
              offline=model_config.offline, online=model_config.online,
              num_ratios=len(model_config.anchor_ratios), online_spec=spec,
              frozen_bn=model_config.frozen_bn, stride=model_config.stride,
              axis_name=axis_name,
              dtype=jnp.dtype(config_lib.compute_dtype_name(model_config)),
              template_cells=config_lib.template_cells(model_config),
              norm=config_lib.norm_name(model_config))


def init_variables(model: DuML, rng, exemplar_size=127, search_size=255):
  """Initial variables ({'params', 'batch_stats'}) of `model`."""
  z = jnp.zeros((1, exemplar_size, exemplar_size, 3), jnp.float32)
  x = jnp.zeros((1, search_size, search_size, 3), jnp.float32)
  return model.init(rng, z, x, train=False)
