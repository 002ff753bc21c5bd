"""Reading frames: one place for the image convention.

Frames are ``uint8`` RGB arrays ``(H, W, 3)``. Grayscale images are made
3-channel; an unreadable or missing file raises `FrameError` naming it.
"""
import os

import cv2
import numpy as np


class FrameError(IOError):
  """A frame that is missing, unreadable or corrupt."""


def read_frame(path, sequence=None, index=None):
  where = f" (sequence {sequence!r}, frame {index})" if sequence is not None else ""
  if not os.path.isfile(path):
    raise FrameError(f"missing frame file {path}{where}")
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
