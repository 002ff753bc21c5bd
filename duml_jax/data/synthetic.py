"""Procedural tracking videos: textured objects, distractors, occluders, blur.

No download: every video is a pure function of its seed and a
`SyntheticConfig`. A target (rectangle or ellipse, aspect 0.3..3, textured with
stripes / checker / noise blobs in two random colours) moves smoothly over a
textured background seen by a slowly panning camera, while its scale and aspect
drift. Look-alike distractors (same texture family and colours, slightly
perturbed) orbit near the target and sometimes cross it, occluder patches
sweep across, and fast frames get a motion blur along the motion direction.

Boxes follow the library convention (`duml_jax.boxes`): ``[x, y, w, h]``,
0-based continuous pixel coordinates, clipped to the frame.

Training and evaluation use disjoint seed ranges (`TRAIN_SEEDS`,
`EVAL_SEEDS`); `make_sequence_set` refuses training seeds, and the synthetic
TFDS builder refuses evaluation seeds.
"""
import dataclasses
import os
from typing import Any, Optional, Sequence, Tuple

import cv2
import numpy as np

TRAIN_SEEDS = range(0, 1_000_000)
EVAL_SEEDS = range(1_000_000, 1_010_000)
# Part of the training range kept out of the CPU-sized recipe's training draws
# (`configs/duml.py:tiny` draws seeds below it): tracking hyper-parameters are
# tuned on these, never on `EVAL_SEEDS`.
VALIDATION_SEEDS = range(900_000, 1_000_000)
assert TRAIN_SEEDS.stop <= EVAL_SEEDS.start or EVAL_SEEDS.stop <= TRAIN_SEEDS.start, (
    "synthetic training and evaluation seed ranges overlap")

TEXTURES = ("stripes", "checker", "blobs")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Difficulty knobs of the generator (all sizes relative to the frame).

  Attributes:
    object_size: range of the target's sqrt(w*h) as a fraction of min(H, W).
    aspect: range of the target's w/h.
    speed: typical target speed, fraction of min(H, W) per frame.
    scale_change: amplitude of the log-scale drift over the video.
    aspect_change: amplitude of the log-aspect drift over the video.
    num_distractors: inclusive range of look-alike distractors.
    distractor_colour_jitter: std of the distractors' colour perturbation (0..255).
    distractor_size_jitter: relative size perturbation of distractors.
    distractor_distance: range of the distractor's orbit radius, in target sizes.
    crossing_prob: probability that a distractor's orbit passes through the target.
    occlusion_prob: probability that a video has an occluder sweeping over the target.
    occluder_size: range of the occluder side, in target sizes.
    blur: whether fast frames are motion-blurred.
    blur_min_speed: speed (pixels/frame) from which frames are blurred.
    blur_exposure: blur length as a fraction of the frame-to-frame motion.
    camera_speed: background pan speed, fraction of min(H, W) per frame.
    noise_std: sensor noise std (0..255).
  """
  object_size: Tuple[float, float] = (0.12, 0.35)
  aspect: Tuple[float, float] = (0.3, 3.0)
  speed: float = 0.015
  scale_change: float = 0.35
  aspect_change: float = 0.2
  num_distractors: Tuple[int, int] = (0, 2)
  distractor_colour_jitter: float = 12.0
  distractor_size_jitter: float = 0.15
  distractor_distance: Tuple[float, float] = (0.8, 2.5)
  crossing_prob: float = 0.4
  occlusion_prob: float = 0.3
  occluder_size: Tuple[float, float] = (0.6, 1.2)
  blur: bool = True
  blur_min_speed: float = 4.0
  blur_exposure: float = 0.7
  camera_speed: float = 0.003
  noise_std: float = 2.0

  @classmethod
  def from_dict(cls, d):
    """Builds a config from a (ConfigDict-like) mapping; unknown keys fail."""
    d = dict(d)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"unknown synthetic config keys {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})


@dataclasses.dataclass(frozen=True)
class Video:
  """A rendered video: frames (T,H,W,3) uint8 RGB, boxes (T,4) float32 xywh,
  the target's visible fraction (T,) float32 (1 = unoccluded) and, when asked
  for, its visible alpha (T,H,W) float32."""
  frames: np.ndarray
  boxes: np.ndarray
  visible: np.ndarray
  masks: Optional[np.ndarray] = None


# ----------------------------------------------------------------------------- textures


def _texture(rng, family, h, w, colours, freq):
  """A (h, w, 3) float32 texture of `family` blending two colours.

  Computed in float32 from per-row and per-column terms (the pattern is a function of
  x cos + y sin or of floor(x) + floor(y)): ~4x faster than on full coordinate grids, which
  matters because every procedural training draw renders a new scene.
  """
  xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
  if family == "stripes":
    theta = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    arg = (xs * np.float32(np.cos(theta) * freq))[None, :] + (
        ys * np.float32(np.sin(theta) * freq) + np.float32(phase))[:, None]
    p = np.float32(0.5) + np.float32(0.5) * np.sin(arg)
  elif family == "checker":
    cell = np.float32(max(np.pi / freq, 1.0))
    p = ((np.floor(ys / cell)[:, None] + np.floor(xs / cell)[None, :]) % 2).astype(np.float32)
  else:  # blobs: smooth noise thresholded softly
    gh, gw = max(2, int(h * freq / 3) + 2), max(2, int(w * freq / 3) + 2)
    noise = rng.standard_normal((gh, gw)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    p = 1.0 / (1.0 + np.exp(np.float32(-3.0) * noise))
  c0, c1 = (np.asarray(c, np.float32) for c in colours)
  return c0 + p[..., None] * (c1 - c0)


def _random_colours(rng):
  return rng.uniform(0, 255, size=(2, 3)).astype(np.float32)


def _shape_mask(kind, h, w):
  """(h, w) float32 alpha of a rectangle or an ellipse filling the box."""
  if kind == "rect":
    return np.ones((h, w), np.float32)
  m = np.zeros((h, w), np.uint8)
  cv2.ellipse(m, (w * 4, h * 4), (max(w * 4 - 1, 1), max(h * 4 - 1, 1)), 0, 0, 360, 255,
              -1, lineType=cv2.LINE_AA, shift=3)
  return m.astype(np.float32) / 255.0


@dataclasses.dataclass
class _Sprite:
  texture: np.ndarray   # (h0, w0, 3) float32, rendered once at base size
  mask: np.ndarray      # (h0, w0) float32


def _make_sprite(rng, family, colours, freq, base_w, base_h, kind):
  base_w, base_h = max(int(round(base_w)), 4), max(int(round(base_h)), 4)
  return _Sprite(_texture(rng, family, base_h, base_w, colours, freq),
                 _shape_mask(kind, base_h, base_w))


# ----------------------------------------------------------------------------- motion


def _smooth_curve(rng, t, amplitude, num_terms=3, min_period=20.0, max_period=120.0):
  """Zero-mean sum of random sinusoids: a smooth random 1-D signal over `t`."""
  out = np.zeros_like(t)
  for _ in range(num_terms):
    period = rng.uniform(min_period, max_period)
    out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
  return amplitude * out / num_terms


def _reflect(x, lo, hi):
  """Folds x into [lo, hi] by reflection (bouncing off the borders)."""
  if hi <= lo:
    return np.full_like(x, (lo + hi) / 2)
  span = hi - lo
  y = np.mod(x - lo, 2 * span)
  return lo + np.where(y > span, 2 * span - y, y)


def _trajectory(rng, num_frames, size, speed, lo, hi):
  """Centre track of a moving object: random heading + smooth wander, bounced."""
  t = np.arange(num_frames, dtype=np.float32)
  heading = rng.uniform(0, 2 * np.pi)
  v = speed * rng.uniform(0.3, 1.5)
  start = rng.uniform(lo, hi)
  wander = size * 1.5
  x = start[0] + v * np.cos(heading) * t + _smooth_curve(rng, t, wander)
  y = start[1] + v * np.sin(heading) * t + _smooth_curve(rng, t, wander)
  return np.stack([_reflect(x, lo[0], hi[0]), _reflect(y, lo[1], hi[1])], axis=-1)


# ----------------------------------------------------------------------------- rendering


def _paste(canvas, sprite_rgb, alpha, cx, cy, w, h):
  """Alpha-composites a sprite resized to (w, h) centred at (cx, cy).

  Returns the (x0, y0, x1, y1) integer region written and the alpha there
  (or None when the sprite is entirely outside the canvas).
  """
  H, W = canvas.shape[:2]
  wi, hi = max(int(round(w)), 1), max(int(round(h)), 1)
  x0, y0 = int(round(cx - wi / 2)), int(round(cy - hi / 2))
  cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + wi, W), min(y0 + hi, H)
  if cx1 <= cx0 or cy1 <= cy0:
    return None
  tex = cv2.resize(sprite_rgb, (wi, hi), interpolation=cv2.INTER_LINEAR)
  a = cv2.resize(alpha, (wi, hi), interpolation=cv2.INTER_LINEAR)
  tex = tex[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
  a = a[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
  region = canvas[cy0:cy1, cx0:cx1]
  region *= 1.0 - a
  region += a * tex
  return (cx0, cy0, cx1, cy1), a[..., 0]


def _motion_blur(frame, vx, vy, length):
  """Blurs along the direction (vx, vy) with a line kernel of `length` px."""
  k = int(round(length)) | 1
  if k < 3:
    return frame
  kernel = np.zeros((k, k), np.float32)
  c = k // 2
  n = np.hypot(vx, vy) + 1e-6
  dx, dy = vx / n * c, vy / n * c
  cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))),
           (int(round(c + dx)), int(round(c + dy))), 1.0, 1, lineType=cv2.LINE_AA)
  kernel /= kernel.sum()
  return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)


@dataclasses.dataclass
class Scene:
  """Everything random about one video, drawn once from its seed; frames are
  rendered from it one at a time (`render_frame`), so a training sample can
  render just the frames it uses. Boxes (T, 4) are known without rendering."""
  config: SyntheticConfig
  size: Tuple[int, int]            # (H, W)
  background: np.ndarray           # (bg_h, bg_w, 3) float32
  pan: np.ndarray                  # (T, 2) int64 top-left of the view into `background`
  target: Any                      # _Sprite
  centre: np.ndarray               # (T, 2) target centre
  target_wh: np.ndarray            # (T, 2) target size
  behind: list                     # [(sprite, cx(T), cy(T), w(T), h(T))] under the target
  front: list                      # ... over the target (occluders, some distractors)
  velocity: np.ndarray             # (T, 2) target velocity (motion blur)
  noise_seed: int
  boxes: np.ndarray                # (T, 4) float32 xywh, clipped to the frame

  @property
  def num_frames(self):
    return len(self.boxes)


def make_scene(seed, num_frames, height, width, config=SyntheticConfig()) -> Scene:
  """Draws the scene of video `seed` (deterministic in all arguments)."""
  cfg = config
  rng = np.random.default_rng(seed)
  T, H, W = int(num_frames), int(height), int(width)
  side = float(min(H, W))
  t = np.arange(T, dtype=np.float32)

  # Background: a larger textured canvas seen through a slowly panning window.
  margin = int(np.ceil(cfg.camera_speed * side * T * 0.6)) + 2
  bg_h, bg_w = H + 2 * margin, W + 2 * margin
  bg = _texture(rng, rng.choice(TEXTURES), bg_h, bg_w, _random_colours(rng) * 0.8 + 20,
                rng.uniform(0.02, 0.15))
  for _ in range(int(rng.integers(2, 6))):  # a few background patches
    ph, pw = int(rng.uniform(0.2, 0.6) * bg_h), int(rng.uniform(0.2, 0.6) * bg_w)
    py, px = int(rng.integers(0, bg_h - ph)), int(rng.integers(0, bg_w - pw))
    bg[py:py + ph, px:px + pw] = _texture(rng, rng.choice(TEXTURES), ph, pw,
                                          _random_colours(rng), rng.uniform(0.03, 0.3))
  pan = np.stack([_reflect(margin + _smooth_curve(rng, t, margin * 1.6), 0, 2 * margin),
                  _reflect(margin + _smooth_curve(rng, t, margin * 1.6), 0, 2 * margin)], -1)
  pan = np.round(pan).astype(np.int64)

  # Target: size, aspect, scale/aspect drift, trajectory.
  size0 = rng.uniform(*cfg.object_size) * side
  aspect0 = np.exp(rng.uniform(np.log(cfg.aspect[0]), np.log(cfg.aspect[1])))
  log_s = _smooth_curve(rng, t, cfg.scale_change * 2)
  log_a = _smooth_curve(rng, t, cfg.aspect_change * 2)
  tw = size0 * np.sqrt(aspect0) * np.exp(log_s + log_a / 2)
  th = size0 / np.sqrt(aspect0) * np.exp(log_s - log_a / 2)
  tw, th = np.minimum(tw, W * 0.9), np.minimum(th, H * 0.9)
  half = np.array([tw.max(), th.max()]) / 2
  lo, hi = half, np.array([W, H], np.float32) - half
  centre = _trajectory(rng, T, size0, cfg.speed * side, lo, hi)

  family = rng.choice(TEXTURES)
  colours = _random_colours(rng)
  freq = rng.uniform(0.15, 0.6)
  kind = rng.choice(["rect", "ellipse"])
  target = _make_sprite(rng, family, colours, freq, tw.max(), th.max(), kind)

  # Look-alike distractors orbiting the target, some crossing it.
  layers = []  # (sprite, cx(T), cy(T), w(T), h(T), in_front)
  for _ in range(int(rng.integers(cfg.num_distractors[0], cfg.num_distractors[1] + 1))):
    jitter = rng.normal(0, cfg.distractor_colour_jitter, size=(2, 3)).astype(np.float32)
    d_colours = np.clip(colours + jitter, 0, 255)
    d_scale = 1.0 + rng.uniform(-cfg.distractor_size_jitter, cfg.distractor_size_jitter)
    d_sprite = _make_sprite(rng, family, d_colours, freq * rng.uniform(0.9, 1.1),
                            tw.max() * d_scale, th.max() * d_scale, kind)
    size_t = np.sqrt(tw * th)
    radius = rng.uniform(*cfg.distractor_distance) * size_t
    if rng.random() < cfg.crossing_prob:  # orbit radius dips through zero once
      t_cross = rng.uniform(0.2, 0.8) * T
      radius = radius * np.clip(np.abs(t - t_cross) / max(T * 0.15, 1.0), 0, 1)
    angle = rng.uniform(0, 2 * np.pi) + _smooth_curve(rng, t, np.pi)
    dcx = np.clip(centre[:, 0] + radius * np.cos(angle), 0, W)
    dcy = np.clip(centre[:, 1] + radius * np.sin(angle), 0, H)
    layers.append((d_sprite, dcx, dcy, tw * d_scale, th * d_scale, bool(rng.random() < 0.5)))

  # Occluder: a textured patch sweeping across the target's path.
  if rng.random() < cfg.occlusion_prob:
    o_size = rng.uniform(*cfg.occluder_size) * size0
    ow, oh = o_size * rng.uniform(0.5, 2.0), o_size * rng.uniform(0.5, 2.0)
    o_sprite = _make_sprite(rng, rng.choice(TEXTURES), _random_colours(rng),
                            rng.uniform(0.05, 0.4), ow, oh, rng.choice(["rect", "ellipse"]))
    t_hit = rng.uniform(0.2, 0.8) * T
    heading = rng.uniform(0, 2 * np.pi)
    v = max(cfg.speed * side, 1.0) * rng.uniform(1.0, 2.0)
    i_hit = int(np.clip(round(t_hit), 0, T - 1))
    ocx = centre[i_hit, 0] + v * np.cos(heading) * (t - t_hit)
    ocy = centre[i_hit, 1] + v * np.sin(heading) * (t - t_hit)
    layers.append((o_sprite, ocx, ocy, np.full(T, ow), np.full(T, oh), True))

  velocity = np.gradient(centre, axis=0) if T > 1 else np.zeros_like(centre)
  x0 = np.clip(centre[:, 0] - tw / 2, 0, W)
  y0 = np.clip(centre[:, 1] - th / 2, 0, H)
  x1 = np.clip(centre[:, 0] + tw / 2, 0, W)
  y1 = np.clip(centre[:, 1] + th / 2, 0, H)
  boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=-1).astype(np.float32)
  return Scene(config=cfg, size=(H, W), background=bg, pan=pan, target=target,
               centre=centre, target_wh=np.stack([tw, th], -1),
               behind=[l[:5] for l in layers if not l[5]],
               front=[l[:5] for l in layers if l[5]], velocity=velocity,
               noise_seed=int(rng.integers(2**63)), boxes=boxes)


NOISE_MODES = ("exact", "bank")


def make_noise_bank(height, width, std, seed=0):
  """A (2 * height, 2 * width, 3) float32 field of N(0, std^2) sensor noise.

  `render_frame(..., noise_bank=bank)` adds a window of it at an offset drawn
  from the frame's noise generator instead of drawing H * W * 3 fresh normals:
  ~0.04 ms instead of ~2.2-2.7 ms per 256 x 256 frame (measured 2026-12-02/03); the
  fresh normals were a third of the procedural training data's CPU cost.
  Each frame's noise is still i.i.d. N(0, std^2) over its pixels; frames
  share shifted windows of one field ((H + 1) (W + 1) offsets).
  """
  rng = np.random.default_rng([int(seed), 0x6E6F6973])
  bank = rng.standard_normal((2 * int(height), 2 * int(width), 3), dtype=np.float32)
  return bank * np.float32(std)


def render_frame(scene: Scene, i: int, with_mask: bool = False, noise_bank=None):
  """Frame `i` of a scene: (uint8 (H, W, 3) RGB, visible fraction, alpha mask or None).

  Independent of which other frames are rendered (the sensor noise of frame
  i is seeded by (scene noise seed, i)). `noise_bank` (`make_noise_bank` at
  the config's `noise_std`): the noise is a window of it (training draws);
  None: fresh normals (every written and evaluation sequence).
  """
  cfg, (H, W) = scene.config, scene.size
  py, px = scene.pan[i, 1], scene.pan[i, 0]
  canvas = scene.background[py:py + H, px:px + W].copy()
  for sp, lx, ly, lw, lh in scene.behind:
    _paste(canvas, sp.texture, sp.mask, lx[i], ly[i], lw[i], lh[i])
  (cx, cy), (tw, th) = scene.centre[i], scene.target_wh[i]
  hit = _paste(canvas, scene.target.texture, scene.target.mask, cx, cy, tw, th)
  visible, mask = 1.0, (np.zeros((H, W), np.float32) if with_mask else None)
  if hit is not None:
    (x0, y0, x1, y1), a_t = hit
    full = a_t.sum()
    cover = np.zeros((H, W), np.float32)
    for sp, lx, ly, lw, lh in scene.front:
      out = _paste(canvas, sp.texture, sp.mask, lx[i], ly[i], lw[i], lh[i])
      if out is not None:
        (u0, v0, u1, v1), a = out
        cover[v0:v1, u0:u1] = 1.0 - (1.0 - cover[v0:v1, u0:u1]) * (1.0 - a)
    seen = a_t * (1.0 - cover[y0:y1, x0:x1])
    visible = float(seen.sum() / max(full, 1e-6))
    if with_mask:
      mask[y0:y1, x0:x1] = seen
  speed_px = float(np.hypot(*scene.velocity[i]))
  if cfg.blur and speed_px >= cfg.blur_min_speed:
    canvas = _motion_blur(canvas, scene.velocity[i, 0], scene.velocity[i, 1],
                          speed_px * cfg.blur_exposure)
  if cfg.noise_std > 0:
    noise_rng = np.random.default_rng([scene.noise_seed, int(i)])
    if noise_bank is None:
      canvas += noise_rng.normal(0, cfg.noise_std, size=canvas.shape).astype(np.float32)
    else:
      bh, bw = noise_bank.shape[:2]
      if bh < H or bw < W:
        raise ValueError(f"noise bank {noise_bank.shape[:2]} smaller than the frame {(H, W)}")
      oy, ox = (int(v) for v in noise_rng.integers(0, [bh - H + 1, bw - W + 1]))
      canvas += noise_bank[oy:oy + H, ox:ox + W]
  return np.clip(canvas, 0, 255).astype(np.uint8), visible, mask


def render_video(seed, num_frames, height, width, config=SyntheticConfig(), with_masks=False):
  """Renders one video deterministically from `seed`; returns a `Video`
  (`with_masks` also returns the target's visible alpha per frame)."""
  scene = make_scene(seed, num_frames, height, width, config)
  T, (H, W) = scene.num_frames, scene.size
  frames = np.empty((T, H, W, 3), np.uint8)
  visible = np.ones(T, np.float32)
  masks = np.zeros((T, H, W), np.float32) if with_masks else None
  for i in range(T):
    frames[i], visible[i], m = render_frame(scene, i, with_masks)
    if with_masks:
      masks[i] = m
  return Video(frames=frames, boxes=scene.boxes, visible=visible, masks=masks)


def make_video(seed, num_frames, height, width, config=SyntheticConfig()):
  """One synthetic video: ``(frames (T,H,W,3) uint8 RGB, boxes (T,4) float32)``.

  Boxes are xywh, 0-based continuous pixels (`duml_jax.boxes`). Deterministic
  in (seed, sizes, config).
  """
  v = render_video(seed, num_frames, height, width, config)
  return v.frames, v.boxes


def sequence_name(seed):
  return f"synth_{seed:07d}"


def write_sequence(root, name, frames, boxes, quality=92):
  """Writes one sequence in the OTB layout: ``<name>/img/0001.jpg`` and
  ``<name>/groundtruth_rect.txt`` (x,y,w,h, 1-based like OTB). Returns its dir."""
  seq_dir = os.path.join(root, name)
  img_dir = os.path.join(seq_dir, "img")
  os.makedirs(img_dir, exist_ok=True)
  for i, f in enumerate(frames):
    path = os.path.join(img_dir, f"{i + 1:04d}.jpg")
    if not cv2.imwrite(path, cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, quality]):
      raise IOError(f"could not write frame {path}")
  one_based = np.asarray(boxes, np.float64).copy()
  one_based[:, :2] += 1.0
  np.savetxt(os.path.join(seq_dir, "groundtruth_rect.txt"), one_based, fmt="%.2f",
             delimiter=",")
  return seq_dir


def check_seeds(seeds, allowed, what):
  bad = [s for s in seeds if s not in allowed]
  if bad:
    raise ValueError(f"{what} seeds {bad[:5]}{'...' if len(bad) > 5 else ''} are outside "
                     f"{allowed}; training and evaluation seeds must stay disjoint")


def make_sequence_set(seeds: Sequence[int], root, num_frames=100, height=256, width=256,
                      config=SyntheticConfig(), allowed=EVAL_SEEDS):
  """Writes held-out sequences (OTB layout) under `root`.

  Only `allowed` seeds are accepted: `EVAL_SEEDS` (the default) so that
  evaluation never sees a training video, or `VALIDATION_SEEDS` for tuning.
  Returns the sequence names, in seed order.
  """
  seeds = [int(s) for s in seeds]
  check_seeds(seeds, allowed, "evaluation" if allowed is EVAL_SEEDS else "validation")
  names = []
  for s in seeds:
    frames, boxes = make_video(s, num_frames, height, width, config)
    write_sequence(root, sequence_name(s), frames, boxes)
    names.append(sequence_name(s))
  return names


class ProceduralVideos:
  """Training videos rendered on demand: an effectively unlimited synthetic set.

  Video k is seed ``first_seed + k`` (all inside `TRAIN_SEEDS`); a draw builds
  its `Scene` (~10 ms) and renders only the frames a sample uses (~3 ms each),
  each passed through a JPEG encode/decode at `jpeg_quality`, like the
  written sets (`write_sequence`) and the held-out sequences, so that training
  and evaluation frames carry the same compression. Picklable (grain workers).
  `noise`: "exact" renders the frames of `render_video` (bit for bit before the
  JPEG round trip); "bank" takes each frame's sensor noise as a window of one
  `make_noise_bank` field (same per-frame distribution, ~a third less CPU per
  training batch), built lazily in each process.
  """

  def __init__(self, first_seed, num_videos, num_frames, height, width,
               config=SyntheticConfig(), jpeg_quality=92, noise="exact"):
    self.first_seed, self.num_videos = int(first_seed), int(num_videos)
    if self.num_videos <= 0:
      raise ValueError(f"procedural synthetic set: num_videos={num_videos} must be positive")
    check_seeds([self.first_seed, self.first_seed + self.num_videos - 1], TRAIN_SEEDS,
                "training")
    if noise not in NOISE_MODES:
      raise ValueError(f"config data.synthetic.noise={noise!r}: allowed values are "
                       f"{', '.join(NOISE_MODES)}")
    self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
    self.config, self.jpeg_quality, self.noise = config, int(jpeg_quality), noise
    self._bank = None

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_bank"] = None            # rebuilt in the worker: 3 MB not sent through pickles
    return state

  def _noise_bank(self):
    if self.noise != "bank" or self.config.noise_std <= 0:
      return None
    if self._bank is None:
      self._bank = make_noise_bank(self.height, self.width, self.config.noise_std,
                                   seed=self.first_seed)
    return self._bank

  def __len__(self):
    return self.num_videos

  def record(self, k):
    """{'video_id', 'boxes' (T, 4), 'valid' (T,), 'scene'} of video k (frames not rendered)."""
    if not 0 <= k < self.num_videos:
      raise IndexError(f"procedural synthetic video {k} outside [0, {self.num_videos})")
    seed = self.first_seed + int(k)
    scene = make_scene(seed, self.num_frames, self.height, self.width, self.config)
    valid = (scene.boxes[:, 2] > 0) & (scene.boxes[:, 3] > 0)
    return dict(video_id=sequence_name(seed), boxes=scene.boxes, valid=valid, scene=scene)

  def frame(self, rec, i):
    """Frame i of a `record`, uint8 (H, W, 3) RGB after the JPEG round trip."""
    rgb, _, _ = render_frame(rec["scene"], int(i), noise_bank=self._noise_bank())
    if self.jpeg_quality >= 100:
      return rgb
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
    if not ok:
      raise IOError(f"{rec['video_id']} frame {i}: JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
