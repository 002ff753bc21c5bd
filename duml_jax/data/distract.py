"""A copy of an OTB-layout folder with a look-alike distractor beside the target.

Every frame after the first gets the first frame's target patch (the tracker's
template, exactly) pasted behind the target, resized to that frame's ground-truth
box and swinging horizontally across it: its left edge sits at

    x_t + amplitude * w_t * cos(2 pi t / period)

(``[x_t, y_t, w_t, h_t]`` the 0-based ground truth of frame t), so every
`period` frames it passes behind the target twice. The target's own pixels are
never covered and the ground truth is copied unchanged. A Siamese tracker sees
two equally good matches of its template; an online branch that has learnt the
target against its background (DuML's ONR) can tell them apart. The same real
video, made harder in one controlled way, from sequences one already has.

With ``lag`` k > 0 the pasted patch is instead the target as it was k frames
earlier (frame t - k's ground-truth patch, or the latest frame before it with a
box; frame 0's while t < k): a twin that follows the target's changes of
appearance, meant to fool a branch that remembers recent frames (the online one)
as well as the template.

  python -m duml_jax.data.distract --input=DIR --output=DIR [--amplitude=2 --period=60 --lag=0]

The input is read (and so checked) by the `otb` loader. The first frame and frames
without a ground-truth box are linked to the originals; the others are written
under their own names (JPEG at quality 95). Each sequence gets its own folder (a
shared ``img`` with ``groundtruth_rect.k.txt`` becomes ``<seq>-k``). The output is
built beside it and renamed into place; a folder made earlier with the same input
and settings is reused, any other existing output is refused.
"""
import argparse
import os
import shutil

import cv2
import numpy as np

from duml_jax.data import benchmarks
from duml_jax.data import derived
from duml_jax.data import frames as frames_lib

MARKER = "distract.json"


def distractor_left(box, t, amplitude, period):
  """Left edge x of the distractor in frame t (0-based pixels, before rounding)."""
  return box[0] + amplitude * box[2] * np.cos(2. * np.pi * t / period)


def paste_behind(image, patch, left, top, target):
  """`image` (H, W, 3) with `patch` resized to `target`'s size, its top-left corner at
  (`left`, `top`) rounded, everywhere except on `target` [x, y, w, h]'s pixels and
  outside the image. Returns a new array."""
  w, h = max(1, int(round(target[2]))), max(1, int(round(target[3])))
  p = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
  x0, y0 = int(round(left)), int(round(top))
  ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w]
  tx, ty, tw, th = target
  keep = ~((xs >= tx) & (xs < tx + tw) & (ys >= ty) & (ys < ty + th))
  keep &= (xs >= 0) & (xs < image.shape[1]) & (ys >= 0) & (ys < image.shape[0])
  out = image.copy()
  out[ys[keep], xs[keep]] = p[keep]
  return out


def _has_box(box):
  return bool(np.isfinite(box).all() and box[2] > 0 and box[3] > 0)


def _target_patch(frame, box):
  """The pixels of `box` inside `frame` (rounded), or None where that is empty."""
  x, y, w, h = box
  x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
  x1 = min(frame.shape[1], int(round(x + w)))
  y1 = min(frame.shape[0], int(round(y + h)))
  if x1 - x0 < 1 or y1 - y0 < 1:
    return None
  return frame[y0:y1, x0:x1]


def distract_otb(src, dst, amplitude=2., period=60., lag=0):
  """Writes the distractor copy of the OTB-layout folder `src` to `dst`.

  `lag` 0 pastes the first frame's target patch; k > 0 the target of k frames earlier.

  Returns:
    {sequence name: frames with a distractor}.
  Raises:
    ValueError: amplitude < 0 or period <= 0 (or not finite), lag not a whole number
      >= 0, an empty first box, or
      `dst` exists and is not this copy.
    benchmarks.BenchmarkError / frames.FrameError: unreadable input (named).
  """
  amplitude, period = float(amplitude), float(period)
  if not (float(lag).is_integer() and lag >= 0):
    raise ValueError(f"distract: lag={lag}; want a whole number of frames >= 0")
  lag = int(lag)
  if not (np.isfinite(amplitude) and amplitude >= 0):
    raise ValueError(f"distract: amplitude={amplitude}; want a number >= 0")
  if not (np.isfinite(period) and period > 0):
    raise ValueError(f"distract: period={period}; want a number of frames > 0")
  src, dst = os.path.abspath(src), os.path.abspath(dst)
  seqs = benchmarks.load_benchmark("otb", src)
  derived.build_once(
      dst, MARKER, {"input": src, "amplitude": amplitude, "period": period, "lag": lag},
      lambda tmp: _write(seqs, tmp, amplitude, period, lag),
      f"distract: {dst} exists and is not the distractor copy of {src} with "
      f"amplitude={amplitude}, period={period}, lag={lag}; remove it or give another "
      f"--output")
  return {s.name: sum(map(_has_box, s.boxes[1:])) for s in seqs}


def _write(seqs, tmp, amplitude, period, lag):
  for s in seqs:
    seq_dir = os.path.dirname(os.path.dirname(s.frames[0]))   # <seq>/img/<frame>
    gt_name = "groundtruth_rect.txt"
    if s.name != os.path.basename(seq_dir):                     # <seq>-k
      gt_name = f"groundtruth_rect.{s.name.rsplit('-', 1)[1]}.txt"
    os.makedirs(os.path.join(tmp, s.name, "img"))
    shutil.copyfile(os.path.join(seq_dir, gt_name),
                    os.path.join(tmp, s.name, "groundtruth_rect.txt"))
    first = frames_lib.read_frame(s.frames[0], s.name, 0)
    patch = _target_patch(first, s.boxes[0])
    if patch is None:
      raise ValueError(f"distract: sequence {s.name!r}, frame 0: the first frame's box "
                       f"{list(s.boxes[0])} is empty or outside the "
                       f"{first.shape[1]}x{first.shape[0]} image")
    recent = {0: patch}   # lag > 0: target patches of the frames t - lag .. t - 1
    for t, f in enumerate(s.frames):
      out = os.path.join(tmp, s.name, "img", os.path.basename(f))
      box = s.boxes[t]
      if lag and t >= lag:   # frame t - lag's patch; none (no box): keep the one before
        patch = recent.pop(t - lag, patch)
      if t == 0 or not _has_box(box):
        os.symlink(os.path.realpath(f), out)
        continue
      frame = frames_lib.read_frame(f, s.name, t)
      if lag:
        own = _target_patch(frame, box)
        if own is not None:
          recent[t] = own.copy()
      img = paste_behind(frame, patch, distractor_left(box, t, amplitude, period), box[1], box)
      jpeg = [cv2.IMWRITE_JPEG_QUALITY, 95] if out.lower().endswith((".jpg", ".jpeg")) else []
      if not cv2.imwrite(out, img[..., ::-1], jpeg):
        raise OSError(f"distract: could not write {out}")


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--input", required=True, help="OTB-layout folder (<seq>/img, groundtruth)")
  ap.add_argument("--output", required=True)
  ap.add_argument("--amplitude", type=float, default=2.,
                  help="swing of the distractor, in target widths (default 2)")
  ap.add_argument("--period", type=float, default=60.,
                  help="frames per full swing (default 60)")
  ap.add_argument("--lag", type=int, default=0,
                  help="0: paste the first frame's target; k > 0: the target of k frames "
                       "earlier (default 0)")
  args = ap.parse_args(argv)
  try:
    counts = distract_otb(args.input, args.output, args.amplitude, args.period, args.lag)
  except (ValueError, OSError, benchmarks.BenchmarkError, frames_lib.FrameError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"{len(counts)} sequences, {sum(counts.values())} frames with a distractor "
        f"(amplitude {args.amplitude:g}, period {args.period:g}, lag {args.lag}) -> "
        f"{os.path.abspath(args.output)}")


if __name__ == "__main__":
  main()
