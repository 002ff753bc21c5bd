"""Fake frames for runner tests: each frame encodes its sequence id and index in pixel (0, 0)."""
import numpy as np


def reader(ids, size=(64, 48)):
  """A `runner` frame reader: (path, sequence name, index) -> (H, W, 3) uint8 frame of `size`
  (width, height) whose pixel (0, 0) holds (ids[name], index // 256, index % 256)."""
  def read(path, seq_name, index):
    del path
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[0, 0] = (ids[seq_name], index // 256, index % 256)
    return img
  return read


def decode(frame):
  """(sequence id, frame index) of a frame made by `reader`."""
  return int(frame[0, 0, 0]), int(frame[0, 0, 1]) * 256 + int(frame[0, 0, 2])
