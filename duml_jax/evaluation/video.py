"""Video mode: track one target through a video file or a folder of frames.

`track_video` feeds frames (``uint8`` RGB, the `duml_jax.data.frames`
convention) to a per-sequence tracker object with ``init(frame, box)`` and
``update(frame) -> (box, score)``, draws the boxes and writes a video.
Boxes are ``[x, y, w, h]`` in the library's 0-based convention.

Codecs (checked with opencv-python-headless here): ``.mp4`` -> ``mp4v``,
``.avi`` -> ``MJPG``; H.264 (``avc1``) has no encoder in the headless wheel.

The initial box must overlap the first frame (a box partly outside is clipped
with a warning); a folder's frames must share one size. `track_to_folder`
(evaluate.py's video mode) leaves neither a partial video nor an empty
output folder behind when it fails.
"""
import os

from absl import logging
import cv2
import numpy as np

from duml_jax import errors
from duml_jax.data.benchmarks import list_images
from duml_jax.data.frames import read_frame

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoError(errors.UserError, IOError):
  """An unreadable video source or an output that cannot be written."""


def iter_frames(source):
  """Yields ``(index, uint8 RGB frame)`` from a video file or frame folder.

  Raises:
    VideoError: the source is missing, cannot be opened or has no frames.
  """
  source = os.fspath(source)
  if os.path.isdir(source):
    paths = list_images(source)
    if not paths:
      raise VideoError(f"no image files (jpg/png/bmp) in frame folder {source}")
    first = None
    for index, path in enumerate(paths):
      frame = read_frame(path, sequence=source, index=index)
      first = (path, frame.shape) if first is None else first
      if frame.shape[:2] != first[1][:2]:
        raise VideoError(f"frame {index} ({path}) is {frame.shape[1]}x{frame.shape[0]} but "
                         f"frame 0 ({first[0]}) is {first[1][1]}x{first[1][0]}: the frames "
                         f"of {source} must all have one size")
      yield index, frame
    return
  if not os.path.isfile(source):
    raise VideoError(f"video source {source} does not exist")
  capture = cv2.VideoCapture(source)
  try:
    if not capture.isOpened():
      raise VideoError(f"cannot open video {source} (not a video OpenCV can "
                       "decode)")
    index = 0
    while True:
      ok, bgr = capture.read()
      if not ok:
        break
      yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
      index += 1
    if index == 0:
      raise VideoError(f"no decodable frames in video {source}")
  finally:
    capture.release()


def source_fps(source, default=30.0):
  """Frame rate of a video file, `default` for a frame folder or unknown."""
  source = os.fspath(source)
  if os.path.isfile(source):
    capture = cv2.VideoCapture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    if fps and np.isfinite(fps) and fps > 0:
      return float(fps)
  return float(default)


def draw_box(frame, box, color=(0, 255, 0), thickness=2, label=None):
  """Returns a copy of RGB `frame` with 0-based ``[x, y, w, h]`` drawn."""
  out = np.ascontiguousarray(frame).copy()
  x, y, w, h = (float(v) for v in box)
  if not all(np.isfinite([x, y, w, h])):
    return out
  top_left = (int(round(x)), int(round(y)))
  bottom_right = (int(round(x + w)) - 1, int(round(y + h)) - 1)
  cv2.rectangle(out, top_left, bottom_right, color, thickness)
  if label:
    cv2.putText(out, label, (top_left[0], max(top_left[1] - 4, 10)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
  return out


def _open_writer(output_path, fps, size, codec):
  ext = os.path.splitext(output_path)[1].lower()
  codec = codec or CODECS.get(ext)
  if codec is None:
    raise VideoError(f"unsupported output extension {ext!r} for "
                     f"{output_path}: use one of {sorted(CODECS)}")
  folder = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(folder, exist_ok=True)
  writer = cv2.VideoWriter(output_path, cv2.VideoWriter_fourcc(*codec), fps,
                           size)
  if not writer.isOpened():
    raise VideoError(f"cannot write video {output_path} with codec {codec!r}")
  return writer


def _fit_box(box, frame, box_name, source):
  """`box` clipped to the frame (with a warning); VideoError if it lies entirely outside."""
  height, width = frame.shape[:2]
  x, y, w, h = box
  x0, y0, x1, y1 = max(x, 0.), max(y, 0.), min(x + w, width), min(y + h, height)
  if x1 <= x0 or y1 <= y0:
    raise VideoError(f"{box_name} {box.tolist()} lies entirely outside the {width}x{height} "
                     f"first frame of {source}")
  if (x0, y0, x1, y1) != (x, y, x + w, y + h):
    clipped = np.array([x0, y0, x1 - x0, y1 - y0])
    logging.warning("%s %s extends outside the %dx%d first frame of %s: clipped to %s",
                    box_name, box.tolist(), width, height, source, clipped.tolist())
    return clipped
  return box


def track_video(tracker, source, init_box, output_path=None, *, fps=None,
                codec=None, color=(0, 255, 0), thickness=2, max_frames=None,
                show_score=True, return_scores=False, box_name="initial box"):
  """Tracks a target through `source` and writes an annotated video.

  Args:
    tracker: object with ``init(frame, box)`` and ``update(frame) ->
      (box, score)``; frames are uint8 RGB ``(H, W, 3)``.
    source: a video file (read with ``cv2.VideoCapture``) or a folder of
      frames (sorted naturally).
    init_box: the target's 0-based ``[x, y, w, h]`` in the first frame.
    output_path: ``.mp4`` or ``.avi`` to write, or None for no video.
    fps: output frame rate (default: the source's, or 30 for a folder).
    codec: FourCC override (default from the extension, see `CODECS`).
    color: RGB box colour.
    thickness: box line width in pixels.
    max_frames: stop after this many frames (None: all).
    show_score: write the tracker's score beside the box.
    return_scores: also return the per-frame scores.
    box_name: how errors name `init_box` (evaluate.py: "--init_box").

  Returns:
    boxes (N, 4) float64, row 0 being `init_box`; with `return_scores`,
    ``(boxes, scores)`` where scores (N,) has NaN for frame 0.

  Raises:
    VideoError: unreadable source, invalid initial box, unwritable output.
  """
  init_box = np.asarray(init_box, dtype=np.float64).reshape(-1)
  if (init_box.shape != (4,) or not np.all(np.isfinite(init_box))
      or init_box[2] <= 0 or init_box[3] <= 0):
    raise VideoError(f"{box_name} {init_box.tolist()} for {source} must be a "
                     "finite [x, y, w, h] with positive size")
  if output_path is not None:
    output_path = os.fspath(output_path)
  rate = float(fps) if fps else source_fps(source)
  writer, boxes, scores = None, [], []
  try:
    for index, frame in iter_frames(source):
      if max_frames is not None and index >= max_frames:
        break
      if index == 0:
        init_box = _fit_box(init_box, frame, box_name, source)
        tracker.init(frame, init_box)
        box, score = init_box, np.nan
      else:
        box, score = tracker.update(frame)
        box = np.asarray(box, dtype=np.float64).reshape(4)
        score = float(score)
      boxes.append(box)
      scores.append(score)
      if output_path is not None:
        if writer is None:
          size = (frame.shape[1], frame.shape[0])
          writer = _open_writer(output_path, rate, size, codec)
        label = f"{score:.2f}" if show_score and np.isfinite(score) else None
        drawn = draw_box(frame, box, color, thickness, label)
        writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
  finally:
    if writer is not None:
      writer.release()
  boxes = np.stack(boxes)
  if return_scores:
    return boxes, np.asarray(scores, dtype=np.float64)
  return boxes


def track_to_folder(tracker, source, init_box, output_dir, suffix="", **kwargs):
  """Tracks `source` into ``output_dir/<source name><suffix>.mp4`` and ``.txt`` (boxes,
  0-based ``x,y,w,h``); returns (boxes, video path).

  On failure the partial video is removed, and `output_dir` too when this call created it
  and it is left empty. `kwargs` go to `track_video`.
  """
  stem = os.path.splitext(os.path.basename(os.fspath(source).rstrip("/")))[0] + suffix
  video = os.path.join(output_dir, stem + ".mp4")
  top = os.path.abspath(output_dir)      # the outermost folder this call may create
  while not os.path.exists(os.path.dirname(top)):
    top = os.path.dirname(top)
  created = not os.path.exists(top)
  before = os.stat(video).st_mtime_ns if os.path.exists(video) else None
  try:
    boxes = track_video(tracker, source, init_box, video, **kwargs)
    np.savetxt(video[:-4] + ".txt", boxes, fmt="%.2f", delimiter=",")
  except BaseException:
    if os.path.exists(video) and os.stat(video).st_mtime_ns != before:
      os.remove(video)      # written (or truncated) by this call: partial
    folder = os.path.abspath(output_dir)
    while created and os.path.isdir(folder) and not os.listdir(folder):
      os.rmdir(folder)
      if folder == top:
        break
      folder = os.path.dirname(folder)
    raise
  return boxes, video
