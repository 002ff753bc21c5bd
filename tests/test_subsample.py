"""duml_jax.data.subsample: every k-th frame of an OTB-layout folder (symlinks + GT rows)."""
import json
import os

import cv2
import numpy as np
import pytest

from duml_jax.data import benchmarks, subsample

_JPG = cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))[1].tobytes()


def _seq(root, folder, names, gt_files):
  os.makedirs(root / folder / "img")
  for n in names:
    (root / folder / "img" / n).write_bytes(_JPG)
  for gt, x0 in gt_files:
    rows = [f"{x0 + i},{5 + i},8,6" for i in range(len(names))]
    (root / folder / gt).write_text("\n".join(rows) + "\n\n")


@pytest.fixture
def otb(tmp_path):
  src = tmp_path / "src"
  _seq(src, "Alpha", [f"{i}.jpg" for i in range(1, 11)], [("groundtruth_rect.txt", 10)])
  _seq(src, "Twin", [f"{i:04d}.jpg" for i in range(1, 5)],
       [("groundtruth_rect.1.txt", 10), ("groundtruth_rect.2.txt", 20)])
  return src


def test_every_third_frame_and_its_rows(otb, tmp_path):
  dst = tmp_path / "every3"
  counts = subsample.subsample_otb(otb, dst, 3)
  assert counts == {"Alpha": 4, "Twin-1": 2, "Twin-2": 2}
  full = {s.name: s for s in benchmarks.load_benchmark("otb", str(otb))}
  for s in benchmarks.load_benchmark("otb", str(dst)):
    # Frame i of the copy is frame 3i of the original, image and box.
    assert [os.path.realpath(f) for f in s.frames] == list(full[s.name].frames[::3])
    np.testing.assert_array_equal(s.boxes, full[s.name].boxes[::3])
  assert json.loads((dst / subsample.MARKER).read_text())["every"] == 3
  # The same call again reuses it; another k or a foreign folder is refused by name.
  assert subsample.subsample_otb(otb, dst, 3) == counts
  with pytest.raises(ValueError, match="every3 exists and is not the every-2 copy"):
    subsample.subsample_otb(otb, dst, 2)
  assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_bad_input(otb, tmp_path):
  with pytest.raises(ValueError, match="every=0"):
    subsample.subsample_otb(otb, tmp_path / "x", 0)
  with pytest.raises(benchmarks.BenchmarkError, match="missing"):
    subsample.subsample_otb(tmp_path / "missing", tmp_path / "y", 2)
  with pytest.raises(SystemExit, match="error: .*every=-1"):
    subsample.main(["--input", str(otb), "--output", str(tmp_path / "z"), "--every", "-1"])
  assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
