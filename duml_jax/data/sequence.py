"""The in-memory description of one evaluation sequence."""
import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sequence:
  """One benchmark sequence.

  Attributes:
    name: sequence name as the benchmark spells it (result files use it).
    frames: frame file paths, in order.
    boxes: (N, 4) float64 ground truth ``[x, y, w, h]`` in the library's
      0-based convention (`duml_jax.boxes`); rows are NaN where the benchmark
      gives no box (test splits after frame 0).
    polygons: (N, 8) float64 VOT polygons (0-based) or None.
    absent: (N,) bool, True where the benchmark marks the target absent /
      out of view, or None when the benchmark has no such notion.
    start_frame: index of the first frame with ground truth used for init.
    one_based: whether the benchmark's files are 1-based (writers add 1).
    attributes: free-form metadata (e.g. per-frame VOT tags).
  """
  name: str
  frames: tuple
  boxes: np.ndarray
  polygons: Optional[np.ndarray] = None
  absent: Optional[np.ndarray] = None
  start_frame: int = 0
  one_based: bool = True
  attributes: dict = dataclasses.field(default_factory=dict)

  def __len__(self):
    return len(self.frames)
