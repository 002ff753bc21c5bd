"""Reading frames: one place for the image convention.

Frames are ``uint8`` RGB arrays ``(H, W, 3)``. Grayscale images are made
3-channel; an unreadable, missing or truncated file raises `FrameError` naming
it. A JPEG cut short is refused (libjpeg only warns and fills the rest grey):
its end-of-image marker must be present, a check of the file's last bytes.
"""
import os

import cv2
import numpy as np

from duml_jax import errors

_JPEG_EXTENSIONS = (".jpg", ".jpeg")
_JPEG_EOI = b"\xff\xd9"
# Bytes searched for the end marker: some writers pad after it. In JPEG data 0xFF is always
# stuffed or a marker, so FF D9 near the end is the end marker itself.
_TAIL_BYTES = 1024


class FrameError(errors.UserError, IOError):
  """A frame that is missing, unreadable or corrupt."""


def is_truncated_jpeg(path):
  """Whether the JPEG file `path` lacks its end-of-image marker (FF D9) near its end."""
  with open(path, "rb") as f:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - _TAIL_BYTES))
    tail = f.read()
  return _JPEG_EOI not in tail


def read_frame(path, sequence=None, index=None):
  where = f" (sequence {sequence!r}, frame {index})" if sequence is not None else ""
  if not os.path.isfile(path):
    raise FrameError(f"missing frame file {path}{where}")
  if path.lower().endswith(_JPEG_EXTENSIONS) and is_truncated_jpeg(path):
    raise FrameError(f"truncated JPEG {path}{where}: no end-of-image marker (the file is "
                     "cut short); copy or extract it again")
  img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
  if img is None or img.size == 0:
    raise FrameError(f"unreadable or corrupt frame {path}{where}")
  if img.dtype != np.uint8:
    img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
  if img.ndim == 2:
    img = np.stack([img] * 3, axis=-1)
  elif img.shape[2] == 4:
    img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
  else:
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
  return np.ascontiguousarray(img)
