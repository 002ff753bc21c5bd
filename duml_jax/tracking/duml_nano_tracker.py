"""The DuML-nano tracker: NanoTrack's tracking loop with DuML's online branch and fusion.

Per frame (pure jitted functions; `init` / `track`):

1. NanoTrack's search crop, backbone and head (`nanotrack_tracker`:
   `search_crop`, its config and OpenCV-compatible crop included):
   ``s_accurate = softmax(cls / T)[..., 1]`` on the 16x16 grid, T =
   ``offline_temperature`` (NanoTrack's own score at T = 1; at mu = 0 the tracker is
   NanoTrack on this tempered score, the offline branch alone).
2. Online scores ``raw = phi * x_online`` (16x16, the same grid: see
   `duml_jax.models.duml_nano`), ``s_robust`` = raw calibrated by
   ``online_norm`` (`tracker.normalise_online`; default min-max to [0, 1],
   DROL's rule as in the DuML tracker, chosen on real_val: docs/duml_nano.md).
3. Fusion, paper Eq. 1: ``s = mu s_robust + (1 - mu) s_accurate``
   (`duml.fuse_scores`), mu scaled by ``mu_scale_uncertain`` /
   ``mu_scale_lost`` on frames the online flags call distractor / not found,
   by ``mu_scale_disagree`` where NanoTrack's score at the online peak is
   below ``disagree_threshold`` and by ``mu_scale_offline_unsure`` where the
   peak of NanoTrack's tempered score is below ``offline_unsure_threshold``
   (`tracker.fusion_weight`; 1 by default).
4. NanoTrack's post-processing on ``s`` (`nanotrack_tracker.select`: scale /
   ratio penalty, cosine window, arg-max) over its decoded boxes; with
   ``score_voting`` the box is the score-voted box of paper Eq. 4-5
   (`voting.score_voting`) over all 256 decoded boxes, weights
   ``s(y) exp(-(1 - IoU)^2 / sigma)`` -- the predicted-IoU factor o(y) is
   dropped (set to 1): NanoTrack has no IoU head and none is trained here.
   The size smoothing rate is ``penalty * s * lr`` at the arg-max
   (`nanotrack_tracker.move`).
5. Online memory and update schedule of the paper (`tracker.online_update`,
   the DuML tracker's code: DiMP's not-found / distractor flags on the raw
   online map, lost frames discarded, a sample stored every frame, SD-GN steps
   every ``update_every`` frames or at once on distractors).

With ``mu = 0`` and voting off the box is NanoTrack's (the online branch still
runs but does not touch the box): `track` then equals
`nanotrack_tracker.track` (tested).

At init, the fixed part of the memory holds the first frame's search crop and
its augmentations (`crops.init_augmentations`, resampled with `crops.crop`,
the continuous bilinear crop), and the filter ``phi^(0) = initial_filter(
template online features)`` is refined with ``init_iters`` SD-GN steps.

Frames are uint8 RGB (H, W, 3); boxes [x, y, w, h] 0-based continuous
pixels. One sequence per call (the runner adapter drives lanes one by one).
"""
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from duml_jax.models import duml as duml_lib
from duml_jax.models import duml_nano as dn
from duml_jax.models import online as online_lib
from duml_jax.tracking import crops
from duml_jax.tracking import memory as memory_lib
from duml_jax.tracking import nanotrack_tracker as ntt
from duml_jax.tracking import tracker as tracker_lib
from duml_jax.tracking import voting


def default_config():
  """NanoTrack's cv2 post-processing (`nanotrack_tracker.default_config`) +
  DuML's fusion, voting and online schedule (`configs/duml.py` tracking values)."""
  c = ml_collections.ConfigDict()
  c.nanotrack = ntt.default_config()
  # NanoTrack's saturated softmax, tempered (T 3) so its ranking on the target survives
  # Eq. 1, and mu 0.5: the one mu at or above 0.2 on real_val as it is, at a third of its
  # frame rate and with a look-alike pasted in, four starts each (docs/duml_nano.md).
  c.mu = 0.5
  c.score_voting = True
  c.voting_sigma = 0.0025
  c.voting_eps = 0.01
  c.online_norm = "minmax"          # tracker.ONLINE_NORMS (docs/duml_nano.md: measured)
  c.online_scale = 1.0              # online_norm='affine': clip(scale * raw + offset, 0, 1)
  c.online_offset = 0.0
  c.offline_temperature = 3.0       # NanoTrack's probability sigmoid(logit / T) before Eq. 1
  c.mu_scale_uncertain = 1.0        # mu x this on online-distractor frames
  c.mu_scale_lost = 1.0             # mu x this on online-not-found frames
  c.update_min_score = 0.0          # memory sample only if the fused score >= this
  c.mu_scale_disagree = 1.0         # mu x this where NanoTrack's score at the online peak
  c.disagree_threshold = 0.5        # is below this (the offline branch's veto)
  c.update_min_offline = 0.0        # memory sample only if NanoTrack's score there >= this
  c.mu_scale_offline_unsure = 1.0   # mu x this (at most 1) where the peak of NanoTrack's
  c.offline_unsure_threshold = 0.8  # tempered score is below this (NanoTrack losing it)
  c.reacquire_window_scale = 0.0    # window influence x this (1.0: off) where both
  c.reacquire_max_gap = 1.0         # branches' peaks are within this many cells of each
  c.reacquire_min_offset = 2.0      # other and at least this many from the crop centre,
  c.reacquire_online_normal = True  # on frames the online flag calls normal only,
  c.reacquire_min_online = 0.0      # where the raw online peak is at least this and both
  c.reacquire_offline_margin = 0.1  # peaks beat their branch's score at the window's
  c.reacquire_online_margin = 0.2   # pick by these margins (docs/duml_nano.md: measured)
  c.memory_size = 50
  c.num_init_samples = 10
  c.init_iters = 10
  c.update_every = 20
  c.update_iters = 2
  c.update_lr = 0.1
  c.distractor_iters = 1
  c.distractor_lr = 0.2
  c.init_samples_min_weight = 0.25
  c.not_found_threshold = 0.25
  c.distractor_threshold = 0.5
  c.distractor_window = 2.2
  return c


@dataclasses.dataclass(frozen=True, kw_only=True)
class NanoParams(tracker_lib.OnlineSchedule):
  """Hashable tracking parameters (static argument of the jitted steps): DuML's
  fusion / voting / online schedule (`tracker.OnlineSchedule`, the fields
  `tracker.online_update` / `tracker.localisation_flag` read), `stride` = 16 and
  the frozen NanoTrack post-processing config `nano`.
  """
  nano: Any
  stride: int = dn.STRIDE
  # Re-detection: where the online and offline peaks agree (within reacquire_max_gap
  # cells, Chebyshev) on a cell at least reacquire_min_offset cells from the crop centre,
  # the cosine window's influence is scaled by reacquire_window_scale (1.0: off; off at
  # mu 0 too, the offline branch alone), so a target both branches find away from the
  # last position is taken, not held back; with reacquire_online_normal only where the
  # online flag is normal (one clear online peak: not on not-found or distractor frames,
  # when the two may agree on a look-alike) and where the raw online peak is at least
  # reacquire_min_online. The margins ask both branches to prefer the agreed cell to the
  # one the window picks: NanoTrack's tempered score (the map Eq. 1 weighs) and the raw
  # online score at the peak exceed their values at that pick by reacquire_offline_margin
  # / reacquire_online_margin (a twin beside the target scores about as high as the
  # target itself; a target found again does not).
  reacquire_window_scale: float = 1.0
  reacquire_max_gap: float = 1.0
  reacquire_min_offset: float = 2.0
  reacquire_online_normal: bool = True
  reacquire_min_online: float = 0.0
  reacquire_offline_margin: float = 0.0
  reacquire_online_margin: float = 0.0


_TYPES = tracker_lib.field_types(NanoParams)


def params(config, **overrides) -> NanoParams:
  """`NanoParams` of a `default_config()`-shaped config, keyword overrides last."""
  d = dict(config)
  d.update(overrides)
  nano = d.pop("nanotrack")
  names = [f.name for f in dataclasses.fields(NanoParams) if f.name not in ("nano", "stride")]
  unknown = sorted(set(d) - set(names))
  if unknown:
    raise KeyError(f"duml-nano tracker config: unknown keys {unknown}")
  missing = [k for k in names if k not in d]
  if missing:
    raise KeyError(f"duml-nano tracker config: missing keys {missing}")
  if not 0. <= float(d["mu"]) <= 1.:
    raise ValueError(f"duml-nano tracker config: mu={d['mu']} outside [0, 1]")
  tracker_lib.check_schedule(d, "tracking")
  kw = {k: _TYPES.get(k, float)(d[k]) for k in names}
  frozen = nano if isinstance(nano, tuple) else ntt.freeze(nano)
  return NanoParams(nano=frozen, **kw)


class State(NamedTuple):
  """Tracker state (a pytree).

  nano: NanoTrack's state (template features, centre, size, pad mean).
  filter: (5, 5, D, 1) online filter. memory: `memory.Memory`.
  frame, num_updates: () int32 frames tracked / filter optimisations since init.
  """
  nano: ntt.NanoState
  filter: jnp.ndarray
  memory: memory_lib.Memory
  frame: jnp.ndarray
  num_updates: jnp.ndarray


def _to_network(cfg, patch):
  return patch[..., ::-1] if cfg.network_channels == "bgr" else patch


def init(model: dn.DuMLNano, variables, p: NanoParams, frame, box) -> State:
  """State on the first frame (`frame` uint8 RGB, `box` [x, y, w, h]); jitted
  (mu plays no part: one compilation per frame shape for every mu)."""
  return _init(model, variables, dataclasses.replace(p, mu=0.), jnp.asarray(frame),
               jnp.asarray(box, jnp.float32))


@ntt.jit(static_argnums=(0, 2))   # NanoTrack's compile options: same network values as NanoTracker
def _init(model, variables, p, frame, box):
  cfg = p.nano
  box = jnp.asarray(box, jnp.float32)
  nano = ntt.init_state(dn.nanotrack_variables(variables), cfg, frame, box)
  s_x, _ = ntt.search_geometry(cfg, nano.size)
  image_size = jnp.asarray([frame.shape[1], frame.shape[0]], jnp.float32)
  augs = crops.init_augmentations(p.num_init_samples, cfg.instance_size)
  xs = jax.vmap(lambda a: crops.crop(frame, nano.mean, image_size, nano.center, s_x,
                                     cfg.instance_size, a))(augs)
  x_in = model.apply(variables, _to_network(cfg, xs), method=dn.DuMLNano.online_input)
  x_online = model.apply(variables, x_in, method=dn.DuMLNano.online_feats)
  half = cfg.instance_size / 2.
  plain = jnp.concatenate([jnp.array([half, half]), nano.size * cfg.instance_size / s_x])
  boxes = jax.vmap(lambda a: crops.augment_box(plain, a, cfg.instance_size))(augs)
  mem = memory_lib.create(x_online, boxes, p.memory_size)
  if model.online_layer == "output":
    z_in = nano.z_feat
  else:   # another layer of the template than NanoTrack keeps
    z_in = model.apply(variables, ntt.template_input(cfg, frame, box)[0],
                       method=dn.DuMLNano.online_input)
  z_online = model.apply(variables, z_in, method=dn.DuMLNano.online_feats)
  filt0 = model.apply(variables, z_online, method=dn.DuMLNano.initial_filter)[0]
  filt = tracker_lib._optimise(model, variables, p, filt0, mem, p.init_iters)  # pylint: disable=protected-access
  zero = jnp.zeros((), jnp.int32)
  return State(nano, filt, mem, zero, zero)


def accurate_scores(p: NanoParams, cls):
  """NanoTrack's foreground probability softmax(cls / offline_temperature)[..., 1] of
  (S, S, 2) logits: its own score at temperature 1 (`ntt.foreground`)."""
  if p.offline_temperature == 1.:
    return ntt.foreground(cls)
  return tracker_lib.offline_probability(cls[..., 1] - cls[..., 0], p.offline_temperature)


def reacquired(p: NanoParams, s_offline, raw, flag, held):
  """Whether both branches point at the same off-centre cell, and prefer it to the cell
  the cosine window picks: () bool from NanoTrack's (S, S) score (tempered,
  `accurate_scores`), the (S, S, 1) raw online map, this frame's online flag
  (`tracker.localisation_flag`) and ``held``, the flat index `ntt.select` picks with
  NanoTrack's window (see `NanoParams.reacquire_*`)."""
  s = s_offline.shape[0]
  online = jnp.max(raw, axis=-1)
  cell = lambda m: jnp.stack(jnp.unravel_index(jnp.argmax(m.reshape(-1)), (s, s)))
  off, on = cell(s_offline), cell(online)
  gap = jnp.max(jnp.abs(off - on))
  offset = jnp.max(jnp.abs(off - s // 2))    # cell s // 2 is the crop centre (decode_points)
  margin = lambda m: jnp.max(m) - m.reshape(-1)[held]
  again = ((gap <= p.reacquire_max_gap) & (offset >= p.reacquire_min_offset)
           & (jnp.max(raw) >= p.reacquire_min_online)
           & (margin(s_offline) >= p.reacquire_offline_margin)
           & (margin(online) >= p.reacquire_online_margin))
  return again & (flag == tracker_lib.FLAG_NORMAL) if p.reacquire_online_normal else again


def fused_scores(p: NanoParams, s_accurate, raw, mu):
  """Eq. 1 on NanoTrack's grid: (S, S) accurate, (S, S, 1) raw online -> (S, S).

  `p.mu` == 0 (static) returns `s_accurate` itself; otherwise the traced `mu`
  weighs the branches, the online map calibrated by ``p.online_norm``
  (`tracker.calibrate_online`).
  """
  if p.mu == 0.:
    return s_accurate
  s_robust = tracker_lib.calibrate_online(raw, p)
  return duml_lib.fuse_scores(s_robust, s_accurate[..., None], mu)[..., 0]


def track(model: dn.DuMLNano, variables, p: NanoParams, state: State, frame):
  """One frame: (new state, {'box': [x, y, w, h], 'score', 'flag', 'iters'}).

  ``score`` is the fused score at the arg-max (NanoTrack's best score when
  mu = 0). Jitted; a nonzero `mu` is passed as a traced value, so a sweep of
  mu compiles once per frame shape; mu = 0 compiles the offline-only score
  (exactly NanoTrack's, no fusion arithmetic).
  """
  static = dataclasses.replace(p, mu=0. if p.mu == 0. else 1.)
  return _track(model, variables, static, state, frame, jnp.float32(p.mu))


@ntt.jit(static_argnums=(0, 2), static_argnames=("with_maps",))   # NanoTrack's compile options
def _track(model, variables, p, state, frame, mu, with_maps=False):
  cfg = p.nano
  x, s_x, scale_z = ntt.search_crop(cfg, state.nano, frame)
  x_feat, x_in = model.apply(variables, x, method=dn.DuMLNano.features_and_online_input)
  cls, loc = model.apply(variables, state.nano.z_feat, x_feat,
                         method=dn.DuMLNano.offline_heads)
  x_online = model.apply(variables, x_in, method=dn.DuMLNano.online_feats)
  raw = online_lib.online_scores(state.filter[None], x_online, None)[0]     # (S, S, 1)
  crop_scale = cfg.instance_size / s_x
  target_wh = state.nano.size * crop_scale
  # The online branch's own confidence (DiMP's flags) sets this frame's weight.
  s_accurate = ntt.foreground(cls[0])        # NanoTrack's own probability: veto, gate
  s_fuse = accurate_scores(p, cls[0])        # calibrated for Eq. 1 (mu 0 too: the ablation)
  online_flag = tracker_lib.localisation_flag(raw, target_wh, p)
  mu = tracker_lib.fusion_weight(mu, online_flag, p,
                                 tracker_lib.offline_at_online_peak(s_accurate, raw),
                                 jnp.max(s_fuse))
  score = fused_scores(p, s_fuse, raw, mu)
  best, penalty, boxes = ntt.select(cfg, score, loc[0], state.nano, scale_z)
  # Off (static, never reported) at window scale 1, and at mu 0: the offline branch alone.
  if p.reacquire_window_scale == 1. or p.mu == 0.:
    again = jnp.zeros((), bool)
  else:
    again = reacquired(p, s_fuse, raw, online_flag, best)
    freed, _, _ = ntt.select(cfg, score, loc[0], state.nano, scale_z,
                             cfg.window_influence * p.reacquire_window_scale)
    best = jnp.where(again, freed, best)
  flat = score.reshape(-1)
  if p.score_voting:
    box_crop = voting.score_voting(boxes, flat, jnp.ones_like(flat), best,
                                   p.voting_sigma, p.voting_eps)
  else:
    box_crop = boxes[best]
  lr = penalty[best] * flat[best] * cfg.lr
  nano, box = ntt.move(cfg, state.nano, box_crop, lr, scale_z, frame.shape[:2])

  # Online branch: this frame's sample is the new box in this crop's pixels.
  origin = ntt.crop_origin(cfg, state.nano.center, s_x)
  sample_box = jnp.concatenate([(nano.center - origin) * crop_scale, nano.size * crop_scale])
  frame_idx = state.frame + 1
  filt, mem, flag, iters = tracker_lib.online_update(
      model, variables, p, state.filter, state.memory, x_online[0], raw,
      target_wh, sample_box, frame_idx, flat[best], s_accurate.reshape(-1)[best])
  new = State(nano, filt, mem, frame_idx, state.num_updates + (iters > 0).astype(jnp.int32))
  # Diagnostics: which branch decides the (unpenalised) peak, the online confidence.
  argmax = lambda m: jnp.argmax(m.reshape(-1)).astype(jnp.int32)
  out = {"box": box, "score": flat[best], "flag": flag, "iters": iters,
         "mu": jnp.asarray(mu if p.mu else 0., jnp.float32),
         "online_peak": jnp.max(raw), "argmax_online": argmax(raw),
         "argmax_offline": argmax(s_accurate), "argmax_fused": argmax(score),
         "reacquired": again}
  if with_maps:   # static: `track_with_maps`
    s_acc = s_fuse
    w = (voting.vote_weights(boxes, flat, jnp.ones_like(flat), best, p.voting_sigma,
                             p.voting_eps)
         if p.score_voting else jax.nn.one_hot(best, flat.shape[0]))
    out["view"] = {
        "accurate": s_acc, "online_raw": raw, "fused": score, "candidates": boxes,
        "robust": fused_scores(dataclasses.replace(p, mu=1.), s_acc, raw, jnp.float32(1.)),
        "weights": w, "best": best, "centre": state.nano.center, "scale_z": scale_z,
        "s_x": s_x, "offline_logit": cls[0][..., 1] - cls[0][..., 0], "penalty": penalty}
  return new, out


def track_with_maps(model: dn.DuMLNano, variables, p: NanoParams, state: State, frame):
  """`track` (same state and outputs) plus ``out['view']``, what the visualiser draws
  (`duml_jax.evaluation.visualize`): 'accurate' (S, S) NanoTrack's score, 'robust' the
  online map as Eq. 1 weighs it (`fused_scores` at mu = 1, so whatever calibration it
  applies), 'online_raw' (S, S, 1), 'fused' (S, S) the map selected on, 'candidates'
  (N, 4) decoded (cx, cy, w, h) offsets from the crop centre (crop pixels at
  scale_z), 'weights' (N,) their voting weights (one-hot at the arg-max without
  voting), 'best', 'centre' (the crop's centre), 'scale_z', 's_x' (crop side),
  'offline_logit' (S, S) NanoTrack's foreground minus background logit, 'penalty' (N,)
  its scale/ratio penalty (for scoring fusion rules frame by frame: docs/duml_nano.md)."""
  static = dataclasses.replace(p, mu=0. if p.mu == 0. else 1.)
  return _track(model, variables, static, state, frame, jnp.float32(p.mu), with_maps=True)


class DuMLNanoTracker:
  """Host wrapper: ``init(frame, box)``, ``update(frame) -> (box, score)``.

  Frames uint8 RGB; boxes float numpy [x, y, w, h]. `last_output` holds the
  last step's numpy dict (flag, iters, ...).
  """

  def __init__(self, model, variables, p: NanoParams, name: str = "DuML-nano"):
    self.name = name
    # On the device once: numpy leaves would be copied in at every step.
    self.model, self.variables, self.params = model, jax.device_put(variables), p
    self.state = None
    self.last_output = None

  def init(self, frame, box):
    self.state = init(self.model, self.variables, self.params, jnp.asarray(frame),
                      jnp.asarray(box, jnp.float32))

  def update(self, frame):
    if self.state is None:
      raise RuntimeError(f"{self.name}: update called before init")
    self.state, out = track(self.model, self.variables, self.params, self.state,
                            jnp.asarray(frame))
    out = jax.device_get(out)
    self.last_output = out
    return np.asarray(out["box"], np.float64), float(out["score"])

