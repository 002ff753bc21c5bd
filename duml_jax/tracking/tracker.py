"""The DuML tracker as two pure jitted functions: `init` and `track`.

Per frame (paper Section 3.2-3.3 and Appendix A "Tracking Algorithm"):

1. Search crop of side ``s_x = s_z * search_size / 127`` around the last
   centre (`crops`), network features, offline heads against the first
   frame's template.
2. Localisation (Eq. 1): ``s = mu s_robust + (1 - mu) s_accurate`` broadcast
   over the anchors (`duml_jax.models.duml.fuse_scores`), with
   ``s_accurate = sigmoid(offline logits)`` and ``s_robust`` the online score
   map min-max normalised to [0, 1] (``online_norm='minmax'``, the rule of
   DROL, the authors' earlier OFC + online tracker, anchors.md 4; ``'clip'``,
   ``'peak'``, ``'none'`` and ``'affine'`` are the other calibrations of
   `normalise_online`). mu is scaled by ``mu_scale_uncertain`` /
   ``mu_scale_lost`` on frames the online flag (step 4) calls distractor /
   not found, and by ``mu_scale_disagree`` where the offline score at the
   online peak is below ``disagree_threshold`` and by ``mu_scale_offline_unsure``
   where the offline map's peak is below ``offline_unsure_threshold``
   (`fusion_weight`; 1 = the paper). Uni-modal forms use their one branch.
3. SiamRPN++ post-processing (`postprocess`): penalty, Hann window, argmax,
   box decoded with the anchors, score voting (Eq. 4-5, `voting`) or the
   arg-max box, size smoothing, clipping.
4. Online branch (DiMP semantics, anchors.md 3.4), on the *raw* online scores:
   peak < ``not_found_threshold`` -> flag not_found (the frame is discarded:
   no memory sample, no update); a second peak outside a window of
   ``distractor_window`` x target size around the first, above
   ``distractor_threshold`` x the first peak (and above the not-found
   threshold) -> flag distractor: the sample is stored with rate
   ``distractor_lr`` and ``distractor_iters`` SD-GN steps run at once;
   otherwise the sample is stored with rate ``update_lr`` and
   ``update_iters`` steps run on frames ``k * update_every`` after the first
   (the init frame is frame 0). The box still comes from the fused map when
   the target is judged lost (SiamRPN++ behaviour; DiMP would not move).
   DiMP's "uncertain" case (two strong peaks resolved by distance) is not
   used: the paper names only the distractor and lost cases.

At init the first frame's search crop and its augmentations (`crops.
init_augmentations`: identity, shifts, flip, blurs, rotations; the first
``num_init_samples``), plus ``init_dropout_samples`` channel-dropout copies of
the plain crop's online features (DiMP's, off by default), fill the fixed part
of the memory (`memory`) and the
filter ``initial_filter(template online features)`` is refined with
``init_iters`` SD-GN steps (Eq. 8) over them, with the learned labels of
`DuML.residual_maps` at each sample's target centre (ONC forms: the anchor
labels of `duml_jax.labels.onc_labels`, as in training).

Everything has static shapes and no Python branching on device values, so
`jax.vmap` runs many sequences at once (`adapter`); Python branches only on
the static form. Frames may be padded beyond their true size (the state's
``image_size``). Boxes are [x, y, w, h] in 0-based continuous pixels
(`duml_jax.boxes`).
"""
import dataclasses
import functools
from typing import Any, Optional, Tuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
from jax import lax

from duml_jax import anchors as anchors_lib
from duml_jax import boxes as boxes_lib
from duml_jax import config_lib
from duml_jax.models import duml as duml_lib
from duml_jax.models import online as online_lib
from duml_jax.tracking import crops
from duml_jax.tracking import memory as memory_lib
from duml_jax.tracking import postprocess
from duml_jax.tracking import voting
from duml_jax import labels as labels_lib

DuML = duml_lib.DuML

FLAG_NORMAL, FLAG_NOT_FOUND, FLAG_DISTRACTOR = 0, 1, 2
FLAG_NAMES = ("normal", "not_found", "distractor")
CENTRE_FROM = ("box", "score_peak")
ONLINE_NORMS = ("minmax", "clip", "peak", "none", "affine")   # `normalise_online`


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnlineSchedule:
  """Fusion, voting and online-branch schedule: the tracking parameters every
  DuML-style tracker shares (`TrackingParams` here, `duml_nano_tracker.NanoParams`),
  read by `localisation_flag`, `online_update` and the memory. Hashable (a static
  argument of the jitted steps)."""
  mu: float
  score_voting: bool
  voting_sigma: float
  voting_eps: float
  online_norm: str = "minmax"   # ONLINE_NORMS: calibration of the online map before Eq. 1
  online_scale: float = 1.0     # 'affine' calibration: clip(scale * raw + offset, 0, 1)
  online_offset: float = 0.0
  # Calibration of the offline branch before Eq. 1: its foreground probability is
  # sigmoid(logit / offline_temperature) (1: the trained classifier's own probability).
  offline_temperature: float = 1.0
  # Confidence of the online branch (DiMP's flags on the raw map, `localisation_flag`):
  # the fusion weight is mu x mu_scale_uncertain on distractor ("uncertain") frames and
  # mu x mu_scale_lost on not-found frames (1.0: mu on every frame, the paper).
  mu_scale_uncertain: float = 1.0
  mu_scale_lost: float = 1.0
  # A frame's sample enters the memory only if its fused score at the chosen box is at
  # least this (0: every frame that is not judged lost, the paper).
  update_min_score: float = 0.0
  # The offline branch's veto: where its score at the online map's peak cell is below
  # `disagree_threshold` (the online branch points somewhere the offline one rejects),
  # mu x mu_scale_disagree on that frame; and a sample enters the memory only if the
  # offline score at the chosen box is at least update_min_offline (0: no gate).
  mu_scale_disagree: float = 1.0
  disagree_threshold: float = 0.5
  update_min_offline: float = 0.0
  # Confidence of the offline branch: where its peak probability (the map Eq. 1 fuses) is
  # below `offline_unsure_threshold` (it is losing the target), mu x mu_scale_offline_unsure,
  # clipped to 1 (1.0: mu on every frame, the paper).
  mu_scale_offline_unsure: float = 1.0
  offline_unsure_threshold: float = 0.8
  memory_size: int
  num_init_samples: int
  init_iters: int
  update_every: int
  update_iters: int
  update_lr: float
  distractor_iters: int
  distractor_lr: float
  init_samples_min_weight: float
  not_found_threshold: float
  distractor_threshold: float
  distractor_window: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrackingParams(OnlineSchedule):
  """Hashable tracking hyper-parameters (`config.tracking` + model geometry)."""
  context_amount: float
  search_size: int
  penalty_k: float
  window_influence: float
  lr: float
  min_size: float
  exemplar_size: int
  stride: int
  box_anchor_shapes: Tuple[Tuple[float, float], ...]
  online_anchor_shapes: Tuple[Tuple[float, float], ...]
  onc_pos_iou: float = 0.8
  onc_neg_iou: float = 0.3
  centre_from: str = "box"      # box (paper) | score_peak
  init_dropout_samples: int = 0   # DiMP's feature-dropout copies of the first frame (2)
  init_dropout_prob: float = 0.2


def field_types(cls):
  """{field: int | bool | str} of a params dataclass's non-float scalar fields, from its
  annotations (the casts applied to config values); float fields are absent."""
  names = {"int": int, "bool": bool, "str": str}
  out = {}
  for f in dataclasses.fields(cls):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if t in names:
      out[f.name] = names[t]
  return out


_TYPES = field_types(TrackingParams)


def tracking_params(config, benchmark: Optional[str] = None, **overrides) -> TrackingParams:
  """`TrackingParams` of a full config, with `tracking.benchmarks[benchmark]` overrides.

  An unknown benchmark name gets the defaults (with a warning). Keyword
  `overrides` (field=value) are applied last.
  """
  t = dict(config.tracking)
  bench = t.pop("benchmarks", {}) or {}
  if benchmark is not None:
    if benchmark in bench:
      t.update(dict(bench[benchmark]))
    else:
      logging.warning("tracking.benchmarks has no entry %r (known: %s): default "
                      "tracking parameters", benchmark, sorted(bench))
  t.update(overrides)
  m = config.model
  stride = int(m.stride)
  box_ratios = config_lib.anchor_ratios(m)
  n = len(m.anchor_ratios)
  on_ratios = (tuple(m.anchor_ratios) if config_lib.num_anchors(m.online, n) > 1 else (1.0,))
  shapes = lambda r: tuple(tuple(float(v) for v in s) for s in
                           anchors_lib.anchor_shapes(r, m.anchor_scales, stride))
  t.update(exemplar_size=int(m.exemplar_size), stride=stride,
           box_anchor_shapes=shapes(box_ratios), online_anchor_shapes=shapes(on_ratios))
  if "loss" in config:
    t.setdefault("onc_pos_iou", float(config.loss.onc_pos_iou))
    t.setdefault("onc_neg_iou", float(config.loss.onc_neg_iou))
  kwargs = {}
  for f in dataclasses.fields(TrackingParams):
    if f.name in t:
      v = t.pop(f.name)
      kwargs[f.name] = _TYPES[f.name](v) if f.name in _TYPES else (
          float(v) if isinstance(v, (int, float)) else v)
    elif f.default is dataclasses.MISSING:
      raise ValueError(f"config.tracking.{f.name} is missing")
  if t:
    raise ValueError(f"config.tracking: unknown keys {sorted(t)}")
  check_schedule(kwargs, "tracking")
  if kwargs.get("centre_from", "box") not in CENTRE_FROM:
    raise ValueError(f"tracking.centre_from={kwargs['centre_from']!r}; allowed: "
                     f"{', '.join(CENTRE_FROM)}")
  n_drop, p_drop = kwargs.get("init_dropout_samples", 0), kwargs.get("init_dropout_prob", 0.2)
  if n_drop < 0 or not 0.0 <= p_drop < 1.0:
    raise ValueError(f"tracking.init_dropout_samples={n_drop} must be >= 0 and "
                     f"tracking.init_dropout_prob={p_drop} in [0, 1)")
  if kwargs["num_init_samples"] + n_drop > kwargs["memory_size"]:
    raise ValueError(f"tracking.num_init_samples + tracking.init_dropout_samples = "
                     f"{kwargs['num_init_samples'] + n_drop} first-frame samples exceed "
                     f"tracking.memory_size={kwargs['memory_size']}")
  if (kwargs["search_size"] - kwargs["exemplar_size"]) % stride:
    raise ValueError(f"tracking.search_size={kwargs['search_size']}: search - exemplar "
                     f"must be a multiple of the stride {stride}")
  return TrackingParams(**kwargs)


@flax.struct.dataclass
class TrackerState:
  centre: jnp.ndarray          # (2,) target centre (x, y), frame pixels
  size: jnp.ndarray            # (2,) target (w, h)
  image_size: jnp.ndarray      # (2,) true frame (W, H)
  mean: jnp.ndarray            # (3,) first frame's channel mean (crop padding)
  z_offline: Tuple[Any, ...]   # 3 x (t, t, C) template features
  filter: Optional[jnp.ndarray]               # (k, k, D, A_on) online filter
  memory: Optional[memory_lib.Memory]         # online sample memory
  frame: jnp.ndarray           # () int32, frames tracked since init
  num_updates: jnp.ndarray     # () int32, filter optimisations since init


def first_frame_samples(tcfg) -> int:
  """Size of the memory's fixed part: the augmentations plus the dropout copies (DuML-nano's
  params have no dropout copies)."""
  return tcfg.num_init_samples + getattr(tcfg, "init_dropout_samples", 0)


def dropout_copies(x_plain, num: int, prob: float, key):
  """DiMP's 'dropout' augmentation (anchors.md 3.4): `num` copies of the plain first frame's
  online features (G, G, D) with whole channels zeroed at rate `prob` and the rest scaled by
  1 / (1 - prob) (torch's dropout2d), (num, G, G, D)."""
  keep = jax.random.bernoulli(key, 1. - prob, (num, 1, 1, x_plain.shape[-1]))
  return jnp.where(keep, x_plain[None] / (1. - prob), 0.).astype(x_plain.dtype)


def _check(model: DuML, tcfg: TrackingParams):
  if len(tcfg.box_anchor_shapes) != model.a_box:
    raise ValueError(f"TrackingParams has {len(tcfg.box_anchor_shapes)} box anchors, the "
                     f"model's box head {model.a_box}: build both from the same config")
  if model.a_on and len(tcfg.online_anchor_shapes) != model.a_on:
    raise ValueError(f"TrackingParams has {len(tcfg.online_anchor_shapes)} online anchors, "
                     f"the model's online branch {model.a_on}")


def _online_targets(model, variables, tcfg, mem_boxes, grid: int):
  """Label, mask, spatial weight (M, G, G, 1|A), step length and regulariser of the samples."""
  offset = getattr(model, "feature_offset", 0)      # 7 for the dilated backbone
  cells = online_lib.box_centre_to_cell(mem_boxes[:, :2], tcfg.stride, offset)
  # Any model with DuML's `residual_maps` method (DuML, DuMLNano).
  maps, step, reg = model.apply(variables, cells, grid, method=type(model).residual_maps)
  label, weight = maps["label"], maps["weight"]
  if model.online.startswith("ONC"):
    c = tcfg.stride * (grid // 2) + 0.5 + offset   # online cell j: crop pixel 8 j + 0.5 + offset
    anchors = anchors_lib.anchor_grid(grid, tcfg.stride, tcfg.online_anchor_shapes, (c, c))
    xywh = boxes_lib.cxcywh_to_xywh(mem_boxes)
    lab = jax.vmap(lambda b: labels_lib.onc_labels(
        anchors, b, tcfg.onc_pos_iou, tcfg.onc_neg_iou))(xywh)
    label = (lab == 1).astype(label.dtype)
    weight = weight * (lab >= 0).astype(weight.dtype)
  return label, maps["mask"], weight, step, reg


def _optimise(model, variables, tcfg, filt, mem, num_iter, max_iter: Optional[int] = None):
  """SD-GN steps (Eq. 8) of the filter over the memory (static or masked count)."""
  grid = mem.feats.shape[1]
  label, mask, weight, step, reg = _online_targets(model, variables, tcfg, mem.boxes, grid)
  eps = model.online_spec.alpha_eps
  if max_iter is None:
    final, _, _ = online_lib.optimize_filter(filt, mem.feats, label, mask, weight,
                                             mem.weights, step, reg, num_iter, alpha_eps=eps)
    return final
  return online_lib.optimize_filter_masked(filt, mem.feats, label, mask, weight,
                                           mem.weights, step, reg, num_iter, max_iter,
                                           alpha_eps=eps)


@functools.partial(jax.jit, static_argnums=(0, 2))
def init(model: DuML, variables, tcfg: TrackingParams, frame, box, image_size) -> TrackerState:
  """Tracker state on the first frame.

  Args:
    model, tcfg: static.
    variables: the model's {'params', 'batch_stats'}.
    frame: (H, W, 3) uint8 RGB, possibly padded beyond `image_size`.
    box: (4,) [x, y, w, h] 0-based.
    image_size: (2,) true (W, H) of the frame.
  """
  _check(model, tcfg)
  box = jnp.asarray(box, jnp.float32)
  image_size = jnp.asarray(image_size, jnp.float32)
  centre, size = box[:2] + box[2:] / 2., box[2:]
  mean = crops.channel_mean(frame, image_size)
  s_z, s_x, scale_z = crops.crop_scales(size, tcfg.context_amount, tcfg.exemplar_size,
                                        tcfg.search_size)
  z = crops.crop(frame, mean, image_size, centre, s_z, tcfg.exemplar_size)
  zf = model.apply(variables, z[None], method=DuML.template)
  filt = mem = None
  if model.a_on:
    augs = crops.init_augmentations(tcfg.num_init_samples, tcfg.search_size)
    xs = jax.vmap(lambda a: crops.crop(frame, mean, image_size, centre, s_x,
                                       tcfg.search_size, a))(augs)
    x_online = model.apply(variables, xs, method=DuML.search)["online"]
    half = tcfg.search_size / 2.
    plain = jnp.concatenate([jnp.array([half, half]), size * scale_z])
    sample_boxes = jax.vmap(lambda a: crops.augment_box(plain, a, tcfg.search_size))(augs)
    if tcfg.init_dropout_samples:
      # A fixed key: tracking stays a deterministic function of the frames.
      drop = dropout_copies(x_online[0], tcfg.init_dropout_samples, tcfg.init_dropout_prob,
                            jax.random.PRNGKey(0))
      x_online = jnp.concatenate([x_online, drop])
      sample_boxes = jnp.concatenate(
          [sample_boxes, jnp.broadcast_to(plain, (tcfg.init_dropout_samples, 4))])
    filt0 = model.apply(variables, zf["online"], method=DuML.initial_filter)[0]
    # The init steps see only the first-frame samples (the empty slots weigh
    # 0): optimise over those alone, then lay out the full memory.
    first = memory_lib.create(x_online, sample_boxes, x_online.shape[0])
    filt = _optimise(model, variables, tcfg, filt0, first, tcfg.init_iters)
    mem = memory_lib.create(x_online, sample_boxes, tcfg.memory_size)
  return TrackerState(
      centre=centre, size=size, image_size=image_size, mean=mean,
      z_offline=tuple(f[0] for f in zf["offline"]), filter=filt, memory=mem,
      frame=jnp.zeros((), jnp.int32), num_updates=jnp.zeros((), jnp.int32))


def check_schedule(values, where: str):
  """Clear errors for the fusion / confidence fields of `OnlineSchedule` in `values`
  (a dict of config values; `where` names the config section in the message)."""
  norm = values.get("online_norm", "minmax")
  if norm not in ONLINE_NORMS:
    raise ValueError(f"{where}.online_norm={norm!r}; allowed: {', '.join(ONLINE_NORMS)}")
  if float(values.get("offline_temperature", 1.0)) <= 0.:
    raise ValueError(f"{where}.offline_temperature={values.get('offline_temperature')} "
                     "must be > 0")
  for key in ("mu_scale_uncertain", "mu_scale_lost", "mu_scale_disagree"):
    v = float(values.get(key, 1.0))
    if not 0. <= v <= 1.:
      raise ValueError(f"{where}.{key}={v} outside [0, 1] (a factor on mu)")
  v = float(values.get("mu_scale_offline_unsure", 1.0))
  if v < 0.:
    raise ValueError(f"{where}.mu_scale_offline_unsure={v} must be >= 0 (a factor on mu)")
  for key in ("disagree_threshold", "update_min_offline", "offline_unsure_threshold"):
    v = float(values.get(key, 0.0))
    if not 0. <= v <= 1.:
      raise ValueError(f"{where}.{key}={v} outside [0, 1] (an offline probability)")
  if norm == "affine" and float(values.get("online_scale", 1.0)) <= 0.:
    raise ValueError(f"{where}.online_scale={values.get('online_scale')} must be > 0 "
                     "(online_norm='affine' would invert or flatten the online map)")


def normalise_online(raw, how: str, scale: float = 1., offset: float = 0.):
  """Calibration of the online scores before Eq. 1 (`ONLINE_NORMS`).

  'minmax': (raw - min) / (max - min) over the map, DROL's rule: the peak is always 1,
  however weak. 'clip': raw clipped to [0, 1]. 'peak': max(raw, 0) / max(raw): the
  peak is 1 but the background keeps its level relative to it. 'none': raw as it is.
  'affine': clip(scale * raw + offset, 0, 1), a fixed (or fitted) map of the raw
  score onto the offline branch's probability scale.
  """
  if how == "clip":
    return jnp.clip(raw, 0., 1.)
  if how == "none":
    return raw
  if how == "affine":
    return jnp.clip(scale * raw + offset, 0., 1.)
  if how == "peak":
    return jnp.maximum(raw, 0.) / jnp.maximum(jnp.max(raw), 1e-6)
  if how != "minmax":
    raise ValueError(f"online_norm={how!r}; allowed: {', '.join(ONLINE_NORMS)}")
  lo, hi = jnp.min(raw), jnp.max(raw)
  return (raw - lo) / jnp.maximum(hi - lo, 1e-6)


def offline_probability(logit, temperature: float = 1.):
  """The offline branch's foreground probability sigmoid(logit / temperature): a
  temperature above 1 softens a saturated classifier (NanoTrack's scores sit at 0.9-1
  over the whole target) so that its own ranking inside that plateau survives Eq. 1."""
  return jax.nn.sigmoid(logit / temperature)


def calibrate_online(raw, tcfg):
  """`normalise_online` with the calibration fields of an `OnlineSchedule`."""
  return normalise_online(raw, tcfg.online_norm, tcfg.online_scale, tcfg.online_offset)


def fusion_weight(mu, flag, tcfg, offline_at_online_peak=None, offline_peak=None):
  """mu of Eq. 1 on this frame: scaled down where the online branch is unsure of
  itself (`localisation_flag` distractor -> mu_scale_uncertain, not found ->
  mu_scale_lost) and where the offline branch rejects the online peak
  (`offline_at_online_peak` < disagree_threshold -> mu_scale_disagree); scaled by
  mu_scale_offline_unsure (up, as a rule) where the offline branch is unsure of itself
  (`offline_peak`, its map's maximum, < offline_unsure_threshold); at most 1."""
  scale = jnp.where(flag == FLAG_NOT_FOUND, tcfg.mu_scale_lost,
                    jnp.where(flag == FLAG_DISTRACTOR, tcfg.mu_scale_uncertain, 1.))
  if offline_at_online_peak is not None:
    scale = scale * jnp.where(offline_at_online_peak < tcfg.disagree_threshold,
                              tcfg.mu_scale_disagree, 1.)
  if offline_peak is not None:
    scale = scale * jnp.where(offline_peak < tcfg.offline_unsure_threshold,
                              tcfg.mu_scale_offline_unsure, 1.)
  return jnp.minimum(mu * scale, 1.)


def offline_at_online_peak(s_accurate, raw):
  """The offline score (max over anchors) at the cell of the raw online map's peak:
  (S, S[, A]) and (S, S, A_on) on the same grid."""
  cell_on = jnp.max(raw, axis=-1).reshape(-1)
  acc = s_accurate if s_accurate.ndim == 2 else jnp.max(s_accurate, axis=-1)
  return acc.reshape(-1)[jnp.argmax(cell_on)]


def localisation_flag(raw, target_wh_crop, tcfg: TrackingParams):
  """normal / not_found / distractor from the raw online scores (S, S, A) (DiMP's rule)."""
  cell = jnp.max(raw, axis=-1)
  s = cell.shape[0]
  peak1 = jnp.max(cell)
  r1, c1 = jnp.unravel_index(jnp.argmax(cell), cell.shape)
  half = 0.5 * tcfg.distractor_window * target_wh_crop / tcfg.stride   # (x, y) cells
  rows, cols = jnp.arange(s)[:, None], jnp.arange(s)[None, :]
  near = (jnp.abs(cols - c1) <= half[0]) & (jnp.abs(rows - r1) <= half[1])
  peak2 = jnp.max(jnp.where(near, -jnp.inf, cell))
  not_found = peak1 < tcfg.not_found_threshold
  distractor = ((peak2 > tcfg.distractor_threshold * peak1) &
                (peak2 > tcfg.not_found_threshold))
  return jnp.where(not_found, FLAG_NOT_FOUND,
                   jnp.where(distractor, FLAG_DISTRACTOR, FLAG_NORMAL)).astype(jnp.int32)


def localise(model, tcfg, heads, raw_online, target_wh, with_maps: bool = False):
  """Fused map, decoded boxes, best index, box at crop scale, smoothing rate, score."""
  box_map = heads["box"][0]                                   # (S, S, A_box, 5)
  s, a_box = box_map.shape[0], box_map.shape[2]
  s_acc = (offline_probability(heads["score"][0], tcfg.offline_temperature)
           if model.a_off else None)
  s_rob = None if raw_online is None else calibrate_online(raw_online, tcfg)
  mu = tcfg.mu
  if s_rob is not None and s_acc is not None:
    mu = fusion_weight(mu, localisation_flag(raw_online, target_wh, tcfg), tcfg,
                       offline_at_online_peak(s_acc, raw_online), jnp.max(s_acc))
  fused = jnp.broadcast_to(duml_lib.fuse_scores(s_rob, s_acc, mu), (s, s, a_box))
  anchors = postprocess.anchor_offsets(s, tcfg.stride, tcfg.box_anchor_shapes)
  pred = postprocess.decode_boxes(box_map, anchors)
  window = postprocess.hann_window(s, a_box)
  best, penalty, pscore = postprocess.select(fused, pred, target_wh, window, tcfg.penalty_k,
                                             tcfg.window_influence)
  flat_pred, flat_score = pred.reshape(-1, 4), fused.reshape(-1)
  if tcfg.score_voting:
    iou_pred = jax.nn.sigmoid(box_map[..., 4]).reshape(-1)
    box_crop = voting.score_voting(flat_pred, flat_score, iou_pred, best,
                                   tcfg.voting_sigma, tcfg.voting_eps)
  else:
    box_crop = flat_pred[best]
  if tcfg.centre_from == "score_peak":
    # Centre from the penalised score map's sub-cell peak, size from the box head.
    row, col, a = jnp.unravel_index(best, pscore.shape)
    off = postprocess.peak_offset(jnp.max(pscore, axis=-1), row, col)
    box_crop = box_crop.at[:2].set(jnp.asarray(anchors)[row, col, a, :2] + tcfg.stride * off)
  lr = penalty.reshape(-1)[best] * flat_score[best] * tcfg.lr
  if with_maps:   # static: the maps this function fused, for `track_with_maps`
    w = (voting.vote_weights(flat_pred, flat_score, jax.nn.sigmoid(box_map[..., 4]).reshape(-1),
                             best, tcfg.voting_sigma, tcfg.voting_eps)
         if tcfg.score_voting else jax.nn.one_hot(best, flat_score.shape[0]))
    view = {"accurate": s_acc, "robust": s_rob, "online_raw": raw_online, "fused": fused,
            "candidates": flat_pred, "weights": w, "best": best}
    return box_crop, lr, flat_score[best], view
  return box_crop, lr, flat_score[best]


def online_record(tcfg, mem, x_online, raw, target_wh, sample_box, frame_idx, score=None,
                  offline_score=None):
  """Step 4 of the module docstring without the SD-GN steps: flag, memory update, steps due.

  Args:
    tcfg: static; needs the memory / schedule / flag fields of
      `TrackingParams` and `stride` (duck-typed: DuML-nano passes its own).
    mem: `memory_lib.Memory`.
    x_online: (G, G, D) online features of this frame's search crop.
    raw: (S, S, A) raw online scores; target_wh: (2,) target size in crop pixels.
    sample_box: (4,) (cx, cy, w, h) of the new target box in this crop's pixels.
    frame_idx: () int32 frames tracked since init, this one included.
    score: () fused score at the chosen box; below `update_min_score` the sample is
      not stored (None: no gate).
    offline_score: () the offline branch's score at the chosen box; below
      `update_min_offline` the sample is not stored (None: no gate).
  Returns:
    (memory, flag, iters): iters = SD-GN steps due on this frame (0: none).
  """
  flag = localisation_flag(raw, target_wh, tcfg)
  not_found, distractor = flag == FLAG_NOT_FOUND, flag == FLAG_DISTRACTOR
  rate = jnp.where(distractor, tcfg.distractor_lr, tcfg.update_lr)
  keep = ~not_found
  if score is not None and tcfg.update_min_score > 0.:
    keep = keep & (score >= tcfg.update_min_score)
  if offline_score is not None and tcfg.update_min_offline > 0.:
    keep = keep & (offline_score >= tcfg.update_min_offline)
  mem = memory_lib.add(mem, x_online, sample_box, rate, keep,
                       first_frame_samples(tcfg), tcfg.init_samples_min_weight)
  scheduled = (frame_idx % tcfg.update_every) == 0
  iters = jnp.where(not_found, 0, jnp.where(
      distractor, tcfg.distractor_iters,
      jnp.where(scheduled, tcfg.update_iters, 0))).astype(jnp.int32)
  return mem, flag, iters


def refine(model, variables, tcfg, filt, mem, iters):
  """The `iters` (traced, <= max(update_iters, distractor_iters)) SD-GN steps due."""
  max_iter = max(tcfg.update_iters, tcfg.distractor_iters)
  if max_iter == 0:
    return filt
  return lax.cond(iters > 0,
                  lambda f: _optimise(model, variables, tcfg, f, mem, iters, max_iter),
                  lambda f: f, filt)


def online_update(model, variables, tcfg, filt, mem, x_online, raw, target_wh, sample_box,
                  frame_idx, score=None, offline_score=None):
  """`online_record` then `refine`: returns (filter, memory, flag, iters)."""
  mem, flag, iters = online_record(tcfg, mem, x_online, raw, target_wh, sample_box, frame_idx,
                                   score, offline_score)
  return refine(model, variables, tcfg, filt, mem, iters), mem, flag, iters


def refine_state(model, variables, tcfg, state, iters):
  """The filter of `state` after the `iters` SD-GN steps due (no-op without an online branch)."""
  if not model.a_on:
    return state
  return state.replace(filter=refine(model, variables, tcfg, state.filter, state.memory, iters))


@functools.partial(jax.jit, static_argnums=(0, 2))
def refine_filter(model: DuML, variables, tcfg: TrackingParams, state: TrackerState, iters):
  """Runs the `iters` (traced, <= max of update/distractor iters) SD-GN steps due on the memory."""
  return refine_state(model, variables, tcfg, state, iters)


def measure(model: DuML, variables, tcfg: TrackingParams, state: TrackerState, frame,
            with_maps: bool = False):
  """Steps 1-3 of the module docstring on one frame, without moving the state.

  Returns {'box_crop': (4,) chosen (cx, cy, w, h) offset box at crop scale (before size
  smoothing), 'lr': its size-smoothing rate, 'score': its fused score, 'scale_z',
  'target_wh': the state's size at crop scale, 'features': the search features,
  'raw_online': raw online scores (S, S, A) or None}. `_track` is this plus the state
  update; `duml_jax.experiments.diagnose` calls it on states it sets (e.g. a wrong size)
  to read what the box head measures.
  """
  _check(model, tcfg)
  _, s_x, scale_z = crops.crop_scales(state.size, tcfg.context_amount, tcfg.exemplar_size,
                                      tcfg.search_size)
  x = crops.crop(frame, state.mean, state.image_size, state.centre, s_x, tcfg.search_size)
  xf = model.apply(variables, x[None], method=DuML.search)
  zf = {"offline": [f[None] for f in state.z_offline]}
  heads = model.apply(variables, zf, xf, method=DuML.offline_heads)
  raw = None
  if model.a_on:
    raw = online_lib.online_scores(state.filter[None], xf["online"],
                                   *model.online_window(xf["online"].shape[-2]))[0]
  target_wh = state.size * scale_z
  # Static: the memory gate on the offline score needs that score at the chosen box.
  gate = bool(tcfg.update_min_offline > 0. and model.a_off and model.a_on)
  if with_maps or gate:   # + 'view': `localise`'s maps around the state's centre
    box_crop, lr, score, view = localise(model, tcfg, heads, raw, target_wh, True)
    view.update(centre=state.centre, scale_z=scale_z, s_x=s_x)
  else:
    (box_crop, lr, score), view = localise(model, tcfg, heads, raw, target_wh), None
  out = {"box_crop": box_crop, "lr": lr, "score": score, "scale_z": scale_z,
         "target_wh": target_wh, "features": xf, "raw_online": raw}
  if gate:
    acc = jnp.broadcast_to(view["accurate"], view["fused"].shape)
    out["offline_score"] = acc.reshape(-1)[view["best"]]
  if with_maps:
    out["view"] = view
  return out


def _track(model: DuML, variables, tcfg: TrackingParams, state: TrackerState, frame,
           with_maps: bool = False):
  """One frame: (new state, {'box': (4,) xywh, 'score', 'flag', 'iters'}).

  ``iters`` is the number of SD-GN steps due on this frame (0 when none);
  the filter in the returned state is not yet refined (see `refine_filter`).
  """
  m = measure(model, variables, tcfg, state, frame, with_maps)
  xf, raw, scale_z, target_wh = m["features"], m["raw_online"], m["scale_z"], m["target_wh"]
  box_crop, lr, score = m["box_crop"], m["lr"], m["score"]
  centre, size = postprocess.update_target(state.centre, state.size, box_crop, scale_z, lr,
                                           state.image_size, tcfg.min_size)
  frame_idx = state.frame + 1
  flag = jnp.asarray(FLAG_NORMAL, jnp.int32)
  iters = jnp.asarray(0, jnp.int32)
  filt, mem = state.filter, state.memory
  if model.a_on:
    half = tcfg.search_size / 2.
    sample_box = jnp.concatenate([half + (centre - state.centre) * scale_z, size * scale_z])
    mem, flag, iters = online_record(tcfg, mem, xf["online"][0], raw, target_wh, sample_box,
                                     frame_idx, score, m.get("offline_score"))
  new_state = state.replace(centre=centre, size=size, filter=filt, memory=mem,
                            frame=frame_idx,
                            num_updates=state.num_updates + (iters > 0).astype(jnp.int32))
  out = {"box": jnp.concatenate([centre - size / 2., size]), "score": score,
         "flag": flag, "iters": iters}
  if with_maps:
    out["view"] = m["view"]
  return new_state, out


track = functools.partial(jax.jit, static_argnums=(0, 2))(_track)
track.__doc__ = """Localises the target in one frame and adds the sample to the memory.

Returns (state, out) with out = {'box': (4,) xywh, 'score', 'flag', 'iters'};
``iters`` SD-GN steps are due on the filter: run them with `refine_filter`
(or use `step`, which does both). Splitting the two lets the batch adapter
skip the filter optimisation on the ~19 of 20 frames where no lane needs it
(under `jax.vmap` a `lax.cond` runs both branches).
"""


@functools.partial(jax.jit, static_argnums=(0, 2))
def track_with_maps(model: DuML, variables, tcfg: TrackingParams, state: TrackerState, frame):
  """`track` (same state and outputs) plus ``out['view']``, what the visualiser draws
  (`duml_jax.evaluation.visualize`), all from `localise`'s own computation:
  'accurate' (S, S, A) sigmoid of the offline scores, 'robust' (S, S, A_on) online
  scores as fused, 'online_raw' before normalisation (None for the uni-modal form
  without them), 'fused' (S, S, A) Eq. 1, 'candidates' (N, 4) decoded (cx, cy, w, h)
  offsets from the crop centre at crop scale, 'weights' (N,) their Eq. 4-5 voting
  weights (one-hot at the arg-max without voting), 'best', 'centre' (the crop's
  centre), 'scale_z', 's_x' (crop side, frame pixels)."""
  return _track(model, variables, tcfg, state, frame, with_maps=True)


@functools.partial(jax.jit, static_argnums=(0, 2))
def step(model: DuML, variables, tcfg: TrackingParams, state: TrackerState, frame):
  """`track` then `refine_filter` in one pure function (e.g. to `jax.vmap`/`jax.grad` over)."""
  state, out = _track(model, variables, tcfg, state, frame)
  return refine_state(model, variables, tcfg, state, out["iters"]), out
