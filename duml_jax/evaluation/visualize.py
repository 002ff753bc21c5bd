"""See what the tracker sees: per-frame panels of DuML / DuML-nano on a sequence.

  python -m duml_jax.evaluation.visualize --config=configs/duml_nano.py:duml_nano \
      --dataset_dir=../shared/data/real_val --sequence=Girl --frames=100:160 \
      --output_dir=/tmp/vis
  python -m duml_jax.evaluation.visualize --checkpoint=WORKDIR --dataset_dir=DIR \
      --sequence=SEQ --every=5 --output_dir=/tmp/vis

Each panel (paper Fig. 5 and Fig. 10): left, the frame with the ground truth
(green, outlined on the maps too), the tracked box (red), the search window
(grey) and the ten boxes with the largest score-voting weights (Eq. 4-5;
yellow = largest, blue = 10th); right, four tiles over the search region: the
crop with the same boxes and the top three vote shares, the offline
(accurate) map, the online (robust) map as Eq. 1 weighs it, and the fused map
the box is selected on (cross: each map's peak; ring on the fused map: the
selected, penalised arg-max). Maps are drawn on one fixed colour scale, 0
(blue) to 1 (red), clipped; each tile's title gives the map's own range (the
online tile also the raw scores' range before calibration). Anchor-based maps
(DuML) show the maximum over anchors per cell.

The maps come from the trackers' own step (`tracker.track_with_maps`,
`duml_nano_tracker.track_with_maps`: the same computation as `track`, with
the maps it fused), so they follow whatever fusion calibration is configured.

Writes ``OUTPUT_DIR/<sequence>/<frame>.png`` (1-based frame number, the
sequence's own numbering of its listed frames) for the frames in ``--frames``
(``first:last``, inclusive; default all) every ``--every`` frames, and
``OUTPUT_DIR/<sequence>.mp4`` of those panels (``mp4v``: the codec the
headless OpenCV wheel encodes and decodes; the file is read back and its frame
count checked). Tracking always starts at frame 1 and stops at ``last``;
``--init_shift=dx,dy`` starts it from the init box moved by that many pixels (as
evaluate.py's, to draw a run of a shifted start).
"""
import dataclasses
import os
import sys
import time
from typing import Callable, NamedTuple, Optional, Sequence as Seq

from absl import app
from absl import flags
import cv2
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags
from PIL import Image   # a matplotlib requirement

from duml_jax import cli
from duml_jax import console
from duml_jax import errors
from duml_jax.data.frames import read_frame
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import families
from duml_jax.evaluation import metrics
from duml_jax.evaluation import nano
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import adapter
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import tracker as tracker_lib

# Panel geometry (pixels): the frame letterboxed left, a 2 x 2 grid of tiles right,
# an info bar below. Even sides: the MP4 encoder's 4:2:0 chroma needs them.
FRAME_W, FRAME_H = 640, 480
TILE = 240
BAR_H = 52
PANEL_W, PANEL_H = FRAME_W + 2 * TILE, FRAME_H + BAR_H
TOP_K = 10
FOURCC = "mp4v"

GT_COLOR = (0, 255, 0)
TRACK_COLOR = (255, 40, 40)
WINDOW_COLOR = (160, 160, 160)
TEXT_COLOR = (255, 255, 255)


class VisualiseError(errors.UserError, ValueError):
  """A bad flag value (frame range, sequence name) or an unreadable output: the command
  line prints its message alone (`cli.run`)."""


class Stepper(NamedTuple):
  """A tracker as two host functions: ``init(frame, box) -> state`` and
  ``step(state, frame) -> (state, out)`` with ``out['view']`` (numpy) as
  `tracker.track_with_maps` documents; ``mu`` and ``stride`` for the drawing."""
  name: str
  init: Callable
  step: Callable
  mu: float
  stride: int


def duml_stepper(model, variables, tcfg: tracker_lib.TrackingParams, name="DuML",
                 pad_multiple: int = 64) -> Stepper:
  """DuML's steps as `adapter.DuMLTracker` runs them: frames padded to a multiple of
  `pad_multiple`, `track_with_maps`, then the SD-GN steps due (`refine_filter`)."""
  variables = jax.device_put(variables)

  def init(frame, box):
    padded, size = adapter.pad_frames([frame], pad_multiple)
    return tracker_lib.init(model, variables, tcfg, jnp.asarray(padded[0]),
                            jnp.asarray(box, jnp.float32), jnp.asarray(size[0]))

  def step(state, frame):
    padded, _ = adapter.pad_frames([frame], pad_multiple)
    state, out = tracker_lib.track_with_maps(model, variables, tcfg, state,
                                             jnp.asarray(padded[0]))
    out = jax.device_get(out)
    if int(out["iters"]) > 0:
      state = tracker_lib.refine_filter(model, variables, tcfg, state, jnp.int32(out["iters"]))
    return state, out

  return Stepper(name, init, step, float(tcfg.mu), int(tcfg.stride))


def nano_stepper(model, variables, p: dnt.NanoParams, name="DuML-nano") -> Stepper:
  """DuML-nano's steps (`duml_nano_tracker.init` / `track_with_maps`)."""
  variables = jax.device_put(variables)

  def init(frame, box):
    return dnt.init(model, variables, p, jnp.asarray(frame), jnp.asarray(box, jnp.float32))

  def step(state, frame):
    state, out = dnt.track_with_maps(model, variables, p, state, jnp.asarray(frame))
    return state, jax.device_get(out)

  return Stepper(name, init, step, float(p.mu), int(p.stride))


def make_stepper(config, variables, benchmark: Optional[str] = "otb") -> Stepper:
  """The `Stepper` of a DuML config (with `benchmark`'s tracking overrides, as
  evaluate.py) or a `configs/duml_nano.py` 'duml_nano' / 'onr' config."""
  name = evaluate_lib.tracker_name(config)
  family = families.name_of(config)
  if family != "duml":
    if family != "duml_nano":
      raise VisualiseError(f"config.tracker={config.tracker!r}: NanoTrack alone has no online "
                           "or fused map to show; use configs/duml_nano.py:duml_nano (mu=0 "
                           "gives NanoTrack's box with the online map beside it)")
    return nano_stepper(nano.build_model(config), variables, dnt.params(config.tracking), name)
  overrides = evaluate_lib.BENCHMARKS[benchmark][2] if benchmark else None
  tcfg = tracker_lib.tracking_params(config, overrides)
  return duml_stepper(duml_lib.build_model(config.model), variables, tcfg, name)


# -- drawing ------------------------------------------------------------------


def frame_view(view, stride: int):
  """`out['view']` (crop offsets at scale_z) in frame pixels: {'window': (x0, y0, side),
  'boxes': (N, 4) xywh candidates, 'weights': (N,), 'grid0': frame (x, y) of cell
  (0, 0)'s centre, 'cell': cell pitch (frame pixels), maps (S, S) ...}."""
  centre = np.asarray(view["centre"], np.float64)
  scale_z, s_x = float(view["scale_z"]), float(view["s_x"])
  cand = np.asarray(view["candidates"], np.float64).reshape(-1, 4)
  cxcy = centre + cand[:, :2] / scale_z
  wh = cand[:, 2:] / scale_z
  maps = {}
  for k in ("accurate", "robust", "online_raw", "fused"):
    m = view.get(k)
    if m is not None:
      m = np.asarray(m, np.float32)
      maps[k] = m.max(axis=-1) if m.ndim == 3 else m
  s = next(iter(maps.values())).shape[0]
  cell = stride / scale_z
  fused = np.asarray(view["fused"])
  best = np.unravel_index(int(view["best"]), fused.shape)[:2]
  return {"window": np.array([centre[0] - s_x / 2., centre[1] - s_x / 2., s_x]),
          "boxes": np.concatenate([cxcy - wh / 2., wh], axis=1),
          "weights": np.asarray(view["weights"], np.float64).reshape(-1),
          "grid0": centre - (s // 2) * cell, "cell": cell, "maps": maps,
          "best_cell": (int(best[0]), int(best[1]))}


def top_votes(weights, k: int = TOP_K):
  """Indices of the `k` largest positive weights (descending) and their shares of the sum."""
  w = np.asarray(weights, np.float64)
  order = np.argsort(-w, kind="stable")[:k]
  order = order[w[order] > 0]
  total = w.sum()
  return order, (w[order] / total if total > 0 else np.zeros(len(order)))


def _rank_color(i, n):
  t = i / max(n - 1, 1)
  return (int(255 * (1 - t)), int(255 * (1 - t) + 120 * t), int(255 * t))


def _rect(img, box, color, thickness, to_px):
  x, y, w, h = box
  if not np.all(np.isfinite(box)):
    return
  p0, p1 = to_px(np.array([x, y])), to_px(np.array([x + w, y + h]))
  cv2.rectangle(img, (int(round(p0[0])), int(round(p0[1]))),
                (int(round(p1[0])), int(round(p1[1]))), color, thickness, cv2.LINE_AA)


def _text(img, s, org, scale=0.42, color=TEXT_COLOR):
  cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
  cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _cross(img, xy, size=6):
  """A white cross outlined in black (visible on every colour of the map)."""
  x, y = int(round(xy[0])), int(round(xy[1]))
  for color, width in (((0, 0, 0), 4), ((255, 255, 255), 2)):
    cv2.line(img, (x - size, y), (x + size, y), color, width, cv2.LINE_AA)
    cv2.line(img, (x, y - size), (x, y + size), color, width, cv2.LINE_AA)


def _ring(img, xy, radius=8):
  x, y = int(round(xy[0])), int(round(xy[1]))
  cv2.circle(img, (x, y), radius, (0, 0, 0), 4, cv2.LINE_AA)
  cv2.circle(img, (x, y), radius, (255, 255, 255), 2, cv2.LINE_AA)


def _draw_boxes(img, gt, track, fv, to_px, labels: bool):
  if fv is not None:
    order, share = top_votes(fv["weights"])
    for rank in reversed(range(len(order))):   # largest drawn last (on top)
      _rect(img, fv["boxes"][order[rank]], _rank_color(rank, TOP_K), 1, to_px)
    if labels:
      for rank in range(min(3, len(order))):
        x, y = to_px(fv["boxes"][order[rank]][:2])
        _text(img, f"{share[rank]:.2f}", (int(x) + 2, int(y) + 12 + 11 * rank), 0.35,
              _rank_color(rank, TOP_K))
  if gt is not None:
    _rect(img, gt, GT_COLOR, 2, to_px)
  _rect(img, track, TRACK_COLOR, 2, to_px)


def _frame_area(frame, gt, track, fv):
  h, w = frame.shape[:2]
  scale = min(FRAME_W / w, FRAME_H / h)
  nw, nh = int(round(w * scale)), int(round(h * scale))
  area = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
  ox, oy = (FRAME_W - nw) // 2, (FRAME_H - nh) // 2
  area[oy:oy + nh, ox:ox + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
  to_px = lambda p: np.asarray(p, np.float64) * scale + (ox, oy)
  if fv is not None:
    x0, y0, side = fv["window"]
    _rect(area, (x0, y0, side, side), WINDOW_COLOR, 1, to_px)
  _draw_boxes(area, gt, track, fv, to_px, labels=False)
  return area


def _crop(frame, window):
  """The search window (x0, y0, side) of `frame` as a TILE x TILE image (mean padding)."""
  x0, y0, side = window
  k = TILE / side
  m = np.array([[k, 0., -x0 * k], [0., k, -y0 * k]], np.float32)
  fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
  return cv2.warpAffine(frame, m, (TILE, TILE), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _heat(crop, fv, m, title, gt=None, best_cell=None):
  """`m` (S, S) over the crop (each tile pixel samples the map at its cell coordinate),
  the ground truth outlined."""
  x0, y0, side = fv["window"]
  s = m.shape[0]
  px = x0 + (np.arange(TILE, dtype=np.float64) + 0.5) * side / TILE
  py = y0 + (np.arange(TILE, dtype=np.float64) + 0.5) * side / TILE
  u = (px - fv["grid0"][0]) / fv["cell"]
  v = (py - fv["grid0"][1]) / fv["cell"]
  mx, my = np.meshgrid(u.astype(np.float32), v.astype(np.float32))
  val = cv2.remap(np.ascontiguousarray(m, np.float32), mx, my, cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REPLICATE)
  inside = (mx >= -0.5) & (mx <= s - 0.5) & (my >= -0.5) & (my <= s - 0.5)
  colour = cv2.applyColorMap(np.uint8(np.clip(val, 0., 1.) * 255), cv2.COLORMAP_JET)
  colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
  dim = (crop.astype(np.float32) * 0.5).astype(np.uint8)
  tile = np.where(inside[..., None], cv2.addWeighted(colour, 0.65, crop, 0.35, 0.), dim)
  to_tile = lambda rc: ((fv["grid0"][0] + rc[1] * fv["cell"] - x0) * TILE / side,
                        (fv["grid0"][1] + rc[0] * fv["cell"] - y0) * TILE / side)
  if gt is not None:
    _rect(tile, gt, GT_COLOR, 1, lambda p: (np.asarray(p, np.float64) - (x0, y0)) * TILE / side)
  _cross(tile, to_tile(np.unravel_index(int(np.argmax(m)), m.shape)))
  if best_cell is not None:
    _ring(tile, to_tile(best_cell))
  _title(tile, title)
  return tile


def _title(tile, s):
  tile[:16] = (tile[:16].astype(np.float32) * 0.3).astype(np.uint8)
  _text(tile, s, (3, 12), 0.38)


def _blank(s):
  tile = np.zeros((TILE, TILE, 3), np.uint8)
  _title(tile, s)
  return tile


def _range(m):
  return f"{float(np.min(m)):.2f}..{float(np.max(m)):.2f}"


def render_panel(frame, gt, track, out=None, stride: int = 8, mu: float = 0.,
                 info: str = "") -> np.ndarray:
  """(PANEL_H, PANEL_W, 3) uint8 RGB panel of one frame (see the module docstring).

  Args:
    frame: (H, W, 3) uint8 RGB. gt: [x, y, w, h] or None. track: tracked [x, y, w, h].
    out: the step's output (numpy) with 'view', or None (the init frame: no maps).
    stride: the score maps' cell pitch in crop pixels. mu: the fusion weight (titles).
    info: text for the info bar.
  """
  fv = frame_view(out["view"], stride) if out is not None else None
  panel = np.zeros((PANEL_H, PANEL_W, 3), np.uint8)
  panel[:FRAME_H, :FRAME_W] = _frame_area(frame, gt, track, fv)
  if fv is None:
    tiles = [_blank("first frame: initialisation")] + [_blank("") for _ in range(3)]
  else:
    x0, y0, side = fv["window"]
    crop = _crop(frame, fv["window"])
    boxed = crop.copy()
    to_tile = lambda p: (np.asarray(p, np.float64) - (x0, y0)) * TILE / side
    _draw_boxes(boxed, gt, track, fv, to_tile, labels=True)
    _title(boxed, "search region, top-10 votes")
    maps = fv["maps"]
    tiles = [boxed]
    tiles.append(_heat(crop, fv, maps["accurate"],
                       f"offline (accurate) {_range(maps['accurate'])}", gt)
                 if "accurate" in maps else _blank("no offline branch"))
    if "robust" in maps:
      raw = f" raw {_range(maps['online_raw'])}" if "online_raw" in maps else ""
      tiles.append(_heat(crop, fv, maps["robust"],
                         f"online {_range(maps['robust'])}{raw}", gt))
    else:
      tiles.append(_blank("no online branch"))
    tiles.append(_heat(crop, fv, maps["fused"], f"fused mu={mu:g} {_range(maps['fused'])}",
                       gt, fv["best_cell"]))
  panel[:TILE, FRAME_W:FRAME_W + TILE] = tiles[0]
  panel[:TILE, FRAME_W + TILE:] = tiles[1]
  panel[TILE:2 * TILE, FRAME_W:FRAME_W + TILE] = tiles[2]
  panel[TILE:2 * TILE, FRAME_W + TILE:] = tiles[3]
  lines = [info]
  if fv is not None:
    _, share = top_votes(fv["weights"])
    lines.append("vote shares (Eq. 4-5 weights / their sum): "
                 + " ".join(f"{v:.2f}" for v in share))
    lines.append("green: ground truth, red: track, yellow->blue: votes 1..10, grey: search "
                 "region;  +: each map's peak, o: the selected (penalised) cell")
  for i, s in enumerate(lines):
    _text(panel, s, (6, FRAME_H + 14 + 16 * i), 0.42)
  return panel


# -- driving ------------------------------------------------------------------


def frame_numbers(num_frames: int, frames: Optional[str] = None, every: int = 1):
  """1-based frame numbers to draw: ``frames`` 'first:last' (inclusive; either side may be
  empty) or 'n', every `every`-th from first."""
  if every < 1:
    raise VisualiseError(f"--every={every}: must be >= 1")
  first, last = 1, num_frames
  if frames:
    parts = frames.split(":")
    try:
      if len(parts) == 1:
        first = last = int(parts[0])
      elif len(parts) == 2:
        first = int(parts[0]) if parts[0].strip() else 1
        last = int(parts[1]) if parts[1].strip() else num_frames
      else:
        raise ValueError(frames)
    except ValueError:
      raise VisualiseError(f"--frames={frames!r}: expected 'first:last' (1-based, "
                           "inclusive) or one frame number") from None
  if not 1 <= first <= last <= num_frames:
    raise VisualiseError(f"--frames={frames!r}: need 1 <= first <= last <= {num_frames} "
                         "(the sequence's frame count)")
  return list(range(first, last + 1, every))


def write_mp4(path, panels_paths: Seq[str], fps: float):
  """Writes the PNG panels to an ``mp4v`` MP4 and checks it reads back frame for frame."""
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC), float(fps),
                           (PANEL_W, PANEL_H))
  if not writer.isOpened():
    raise VisualiseError(f"cannot write {path} with fourcc {FOURCC!r}")
  try:
    for p in panels_paths:
      img = cv2.imread(p)
      if img is None or img.shape[:2] != (PANEL_H, PANEL_W):
        raise VisualiseError(f"{p}: not a {PANEL_W}x{PANEL_H} panel")
      writer.write(img)
  finally:
    writer.release()
  n = count_video_frames(path)
  if n != len(panels_paths):
    raise VisualiseError(f"{path}: {n} frames read back, {len(panels_paths)} written")
  return path


def count_video_frames(path) -> int:
  cap = cv2.VideoCapture(os.fspath(path))
  try:
    if not cap.isOpened():
      return 0
    n = 0
    while cap.read()[0]:
      n += 1
    return n
  finally:
    cap.release()


@dataclasses.dataclass
class Result:
  """What `visualise_sequence` wrote and measured."""
  pngs: list
  mp4: Optional[str]
  boxes: np.ndarray     # (last, 4) tracked boxes, frames 1..last
  ious: np.ndarray      # (last,) IoU with the ground truth (NaN where absent)


def write_png(path, panel, colors: int = 0):
  """Writes an RGB panel; `colors` > 0 palette-quantises it (Pillow, no dithering): a
  third of the bytes at 256 colours, for panels kept in the repository."""
  if colors:
    if not 2 <= colors <= 256:
      raise VisualiseError(f"--png_colors={colors}: 0 (full colour) or 2..256")
    Image.fromarray(panel).quantize(colors, dither=Image.Dither.NONE).save(path, optimize=True)
  elif not cv2.imwrite(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
    raise VisualiseError(f"cannot write {path}")


def visualise_sequence(stepper: Stepper, seq, output_dir, frames: Optional[str] = None,
                       every: int = 1, mp4: bool = True, fps: float = 10.,
                       progress: Optional[Callable[[str], None]] = None,
                       png_colors: int = 0, init_shift=(0., 0.)) -> Result:
  """Tracks `seq` (a `duml_jax.data.sequence.Sequence`) from its first frame to the last
  drawn one and writes the panels (module docstring; `png_colors`: `write_png`).
  `init_shift` (dx, dy) pixels moves the init box as evaluate.py's --init_shift does (the
  ground truth drawn and scored is unchanged), to draw a run from another start."""
  progress = progress or (lambda s: print(s, file=sys.stderr, flush=True))
  numbers = frame_numbers(len(seq.frames), frames, every)
  wanted, last = set(numbers), numbers[-1]
  folder = os.path.join(output_dir, seq.name)
  os.makedirs(folder, exist_ok=True)
  digits = max(4, len(str(len(seq.frames))))
  gts = np.asarray(seq.boxes, np.float64)
  absent = seq.absent if seq.absent is not None else np.zeros(len(gts), bool)
  pngs, boxes, ious = [], [], []
  t0 = time.time()
  state, out = None, None
  for k in range(1, last + 1):
    frame = read_frame(seq.frames[k - 1], sequence=seq.name, index=k - 1)
    gt = None if absent[k - 1] or not np.all(np.isfinite(gts[k - 1])) else gts[k - 1]
    if k == 1:
      if gt is None:
        raise VisualiseError(f"{seq.name}: no ground-truth box on frame 1 to start from")
      box = gt + np.array([init_shift[0], init_shift[1], 0., 0.])
      state = stepper.init(frame, box)
    else:
      state, out = stepper.step(state, frame)
      box = np.asarray(out["box"], np.float64)
    iou = float(metrics.rect_iou(box[None], gt[None])[0]) if gt is not None else np.nan
    boxes.append(box)
    ious.append(iou)
    if k in wanted:
      flag = (tracker_lib.FLAG_NAMES[int(out["flag"])] if out is not None else "init")
      info = (f"{stepper.name}  {seq.name}  frame {k}/{len(seq.frames)}  IoU {iou:.2f}  "
              f"score {float(out['score']) if out is not None else np.nan:.2f}  "
              f"online flag {flag}  SD-GN steps {int(out['iters']) if out is not None else 0}")
      panel = render_panel(frame, gt, box, out, stepper.stride, stepper.mu, info)
      path = os.path.join(folder, f"{k:0{digits}d}.png")
      write_png(path, panel, png_colors)
      pngs.append(path)
      if len(pngs) == 1 or len(pngs) % 20 == 0 or k == last:
        progress(f"{seq.name}: frame {k}/{last} tracked, {len(pngs)}/{len(numbers)} panels, "
                 f"IoU {iou:.2f}, {time.time() - t0:.0f} s -> {folder}")
  video = None
  if mp4:
    video = write_mp4(os.path.join(output_dir, f"{seq.name}.mp4"), pngs, fps)
    progress(f"{seq.name}: {len(pngs)} panels -> {video}")
  return Result(pngs, video, np.stack(boxes), np.asarray(ious))


# -- command line ---------------------------------------------------------------


def _define_flags():
  """Flags, defined only when run as a script (the module is imported next to others)."""
  config_flags.DEFINE_config_file("config", None, "Tracker config (as evaluate.py).",
                                  lock_config=True)
  flags.DEFINE_string("checkpoint", None,
                      "A train.py workdir (DuML) or a meta_nano workdir (DuML-nano).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_string("dataset_dir", None, "An OTB-layout folder (<Seq>/img, "
                      "groundtruth_rect.txt).")
  flags.DEFINE_enum("benchmark", "otb", sorted(evaluate_lib.BENCHMARKS),
                    "Reader of --dataset_dir (and DuML's tracking overrides).")
  flags.DEFINE_list("sequence", [], "Sequences to draw (default: all).")
  flags.DEFINE_string("frames", None, "first:last 1-based inclusive (default: all).")
  flags.DEFINE_integer("every", 1, "Draw every N-th frame of the range.")
  flags.DEFINE_string("output_dir", None, "Where PNGs and MP4s go.")
  flags.DEFINE_bool("mp4", True, "Also write <output_dir>/<sequence>.mp4.")
  flags.DEFINE_float("fps", 10., "MP4 frame rate.")
  flags.DEFINE_list("init_shift", ["0", "0"], "dx,dy pixels added to the init box (as "
                    "evaluate.py --init_shift: draw a run from another start).")
  flags.DEFINE_integer("png_colors", 0, "0: full-colour PNGs; N: palette of N "
                       "colours (smaller files, e.g. 256 for docs/).")


def main(argv):
  console.quiet_other_libraries()
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not (f.output_dir and f.dataset_dir):
    raise app.UsageError("--output_dir and --dataset_dir are required")
  if f.config is None and not f.checkpoint:
    raise app.UsageError("give --checkpoint (a train.py or meta_nano workdir) and/or --config")
  init_shift = cli.parse_numbers(f.init_shift, 2, "init_shift", "two finite numbers dx,dy "
                                 "(pixels)", finite=True)
  config, variables = evaluate_lib.resolve(f.config, f.checkpoint, f.step)
  stepper = make_stepper(config, variables, f.benchmark)
  seqs = evaluate_lib.load_sequences(f.benchmark, f.dataset_dir, sequences=f.sequence or None)
  for seq in seqs:
    res = visualise_sequence(stepper, seq, f.output_dir, f.frames, f.every, f.mp4, f.fps,
                             png_colors=f.png_colors, init_shift=init_shift)
    print(f"{seq.name}: {len(res.pngs)} panels in {os.path.join(f.output_dir, seq.name)}"
          + (f", {res.mp4}" if res.mp4 else "") + f"; mean IoU over frames 1-{len(res.ious)} "
          f"{np.nanmean(res.ious):.3f}")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
