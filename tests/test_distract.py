"""duml_jax.data.distract: the first frame's target pasted behind the target, swinging."""
import json
import os

import cv2
import numpy as np
import pytest

from duml_jax.data import benchmarks, distract, frames

H, W = 60, 120


def _frame(t):
  """Background 40; the target (rows 20-29, cols 50-59 in every frame) 200 + t; a
  marker pixel 255 at the target's top-left so the pasted patch is recognisable."""
  img = np.full((H, W, 3), 40, np.uint8)
  img[20:30, 50:60] = 200 + t
  img[20, 50] = 255
  return img


@pytest.fixture
def otb(tmp_path):
  src = tmp_path / "src"
  os.makedirs(src / "Box" / "img")
  for t in range(8):   # PNG: lossless input, so pixel values are exact
    cv2.imwrite(str(src / "Box" / "img" / f"{t + 1:04d}.png"), _frame(t))
  rows = ["51,21,10,10"] * 8       # 1-based OTB: 0-based [50, 20, 10, 10]
  rows[5] = "NaN,NaN,NaN,NaN"      # no box: left as it is
  (src / "Box" / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")
  return src


def test_patch_position_by_hand_and_target_kept(otb, tmp_path):
  dst = tmp_path / "dis"
  # amplitude 1.5, period 8: frame t's left edge is 50 + 15 cos(pi t / 4).
  counts = distract.distract_otb(otb, dst, amplitude=1.5, period=8)
  assert counts == {"Box": 6}      # frames 1-7 less the one without a box
  seq, = benchmarks.load_benchmark("otb", str(dst))
  orig, = benchmarks.load_benchmark("otb", str(otb))
  np.testing.assert_array_equal(seq.boxes, orig.boxes)
  assert os.path.realpath(seq.frames[0]) == os.path.realpath(orig.frames[0])
  assert os.path.realpath(seq.frames[5]) == os.path.realpath(orig.frames[5])
  # PNG in, PNG out: exact pixels. Frame t's patch spans columns left .. left + 9.
  for t, left in ((1, 61), (3, 39), (4, 35), (7, 61)):   # 50 + 10.6, 50 - 10.6, 50 - 15
    img = frames.read_frame(seq.frames[t])
    np.testing.assert_array_equal(img[20:30, 50:60], _frame(t)[20:30, 50:60])  # target kept
    patch = _frame(0)[20:30, 50:60]                   # frame 0's target, marker included
    np.testing.assert_array_equal(img[20:30, left:left + 10], patch)
    rest = np.ones(W, bool)                           # and nothing else changed
    rest[left:left + 10] = rest[50:60] = False
    np.testing.assert_array_equal(img[:, rest], _frame(t)[:, rest])
  # Frame 2's patch sits exactly behind the target: the frame is unchanged.
  np.testing.assert_array_equal(frames.read_frame(seq.frames[2]), _frame(2))
  assert json.loads((dst / distract.MARKER).read_text())["period"] == 8.


def test_lagged_patch_is_the_target_of_k_frames_earlier(otb, tmp_path):
  dst = tmp_path / "dis"
  distract.distract_otb(otb, dst, amplitude=1.5, period=8, lag=2)
  seq, = benchmarks.load_benchmark("otb", str(dst))
  # Frame t pastes frame t-2's target (its value 200 + t - 2); frame 1 frame 0's; frame 7
  # would take frame 5's, which has no box, so it keeps frame 4's (pasted at frame 6).
  for t, left, source in ((1, 61, 0), (3, 39, 1), (4, 35, 2), (7, 61, 4)):
    img = frames.read_frame(seq.frames[t])
    np.testing.assert_array_equal(img[20:30, left:left + 10], _frame(source)[20:30, 50:60])
    np.testing.assert_array_equal(img[20:30, 50:60], _frame(t)[20:30, 50:60])
  assert json.loads((dst / distract.MARKER).read_text())["lag"] == 2
  with pytest.raises(ValueError, match="lag=0"):     # another lag: refused, not reused
    distract.distract_otb(otb, dst, amplitude=1.5, period=8)
  for bad in (-1, 1.5):
    with pytest.raises(ValueError, match=f"lag={bad}"):
      distract.distract_otb(otb, tmp_path / "x", lag=bad)


def test_patch_clipped_at_the_image_edge():
  img = np.zeros((10, 12, 3), np.uint8)
  patch = np.full((4, 4, 3), 9, np.uint8)
  out = distract.paste_behind(img, patch, left=-2, top=8, target=[6, 0, 4, 4])
  # Rows 8-9 of the image, columns 0-1 of it: the part inside the image.
  assert (out > 0).sum() == 2 * 2 * 3 and (out[8:10, 0:2] == 9).all()
  assert img.max() == 0            # the input is not modified


def test_reuse_refusal_and_bad_arguments(otb, tmp_path):
  dst = tmp_path / "dis"
  distract.distract_otb(otb, dst)
  stamp = os.stat(dst / "Box" / "img" / "0002.png").st_mtime_ns
  assert distract.distract_otb(otb, dst) == {"Box": 6}       # same settings: reused
  assert os.stat(dst / "Box" / "img" / "0002.png").st_mtime_ns == stamp
  with pytest.raises(ValueError, match="amplitude=3.0"):
    distract.distract_otb(otb, dst, amplitude=3)
  with pytest.raises(ValueError, match="period=0.0"):
    distract.distract_otb(otb, tmp_path / "x", period=0)
  with pytest.raises(ValueError, match="amplitude=-1.0"):
    distract.distract_otb(otb, tmp_path / "x", amplitude=-1)
  (otb / "Box" / "groundtruth_rect.txt").write_text("51,21,0.4,10\n" * 8)   # under a pixel
  with pytest.raises(ValueError, match="'Box', frame 0.*empty"):
    distract.distract_otb(otb, tmp_path / "y")
  assert not (tmp_path / "y").exists()
  with pytest.raises(SystemExit, match="error: .*nowhere"):
    distract.main(["--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "z")])


def test_cli(otb, tmp_path, capsys):
  distract.main(["--input", str(otb), "--output", str(tmp_path / "d"), "--period", "4"])
  assert "1 sequences, 6 frames with a distractor (amplitude 2, period 4, lag 0)" in \
      capsys.readouterr().out
