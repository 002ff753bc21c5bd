"""Video mode on a tiny synthetic video and a trivial tracker."""
import os

import cv2
import numpy as np
import pytest

from duml_jax.evaluation import video
from duml_jax.evaluation.video import VideoError, track_video

H, W, N = 48, 64, 6


def _frame(i):
  """Black RGB frame with a red 10x8 square at x = 5 + 4i, y = 10."""
  frame = np.zeros((H, W, 3), np.uint8)
  frame[10:18, 5 + 4 * i:15 + 4 * i] = (255, 0, 0)
  return frame


class RedTracker:
  """Returns the bounding box of the red pixels (checks RGB order)."""

  def __init__(self):
    self.frames = []

  def init(self, frame, box):
    self.frames.append(frame)
    self.init_box = np.asarray(box)

  def update(self, frame):
    self.frames.append(frame)
    red = (frame[..., 0] > 128) & (frame[..., 2] < 100)
    ys, xs = np.nonzero(red)
    box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    return box, float(red.mean())


def _write_video(path, codec):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10,
                           (W, H))
  assert writer.isOpened()
  for i in range(N):
    writer.write(cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
  writer.release()


def _read_all(path):
  capture = cv2.VideoCapture(str(path))
  frames = []
  while True:
    ok, bgr = capture.read()
    if not ok:
      break
    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
  capture.release()
  return frames


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_track_video_file(tmp_path, ext):
  source = tmp_path / ("in" + ext)
  _write_video(source, video.CODECS[ext])
  tracker = RedTracker()
  out = tmp_path / ("out" + ext)
  boxes, scores = track_video(tracker, source, [5, 10, 10, 8], out,
                              return_scores=True)
  assert boxes.shape == (N, 4) and np.isnan(scores[0])
  np.testing.assert_array_equal(boxes[0], [5, 10, 10, 8])
  # Lossy codecs blur edges by a pixel at most.
  expected = np.array([[5 + 4 * i, 10, 10, 8] for i in range(N)], float)
  np.testing.assert_allclose(boxes, expected, atol=1.0)
  assert all(f.dtype == np.uint8 and f.shape == (H, W, 3)
             for f in tracker.frames)
  assert len(tracker.frames) == N
  written = _read_all(out)
  assert len(written) == N and written[0].shape == (H, W, 3)
  # The green box's left edge (x = 5 + 4 * 3 = 17) is drawn in frame 3.
  edge = written[3][14, 17].astype(int)
  assert edge[1] > 150 and edge[0] < 120, edge


def test_track_folder_without_output(tmp_path):
  folder = tmp_path / "frames"
  folder.mkdir()
  for i in range(N):  # natural order: 2.png must come before 10.png
    cv2.imwrite(str(folder / f"{[1, 2, 3, 10, 11, 20][i]}.png"),
                cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
  boxes = track_video(RedTracker(), folder, [5, 10, 10, 8], max_frames=4)
  np.testing.assert_array_equal(
      boxes, [[5 + 4 * i, 10, 10, 8] for i in range(4)])


def test_folder_frames_of_another_size_are_an_error(tmp_path):
  folder = tmp_path / "frames"
  folder.mkdir()
  cv2.imwrite(str(folder / "1.png"), cv2.cvtColor(_frame(0), cv2.COLOR_RGB2BGR))
  big = cv2.resize(_frame(1), (W * 2, H * 2), interpolation=cv2.INTER_NEAREST)
  cv2.imwrite(str(folder / "2.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
  with pytest.raises(VideoError, match=rf"frame 1 \(.*2.png\) is {2 * W}x{2 * H} but frame 0 "
                     rf"\(.*1.png\) is {W}x{H}"):
    track_video(RedTracker(), folder, [5, 10, 10, 8], tmp_path / "out.avi")


def test_initial_box_outside_the_frame(tmp_path, caplog):
  source = tmp_path / "in.avi"
  _write_video(source, "MJPG")
  with pytest.raises(VideoError, match=r"--init_box \[70.0, 10.0, 5.0, 5.0\] lies entirely "
                     rf"outside the {W}x{H} first frame"):
    track_video(RedTracker(), source, [70, 10, 5, 5], box_name="--init_box")
  tracker = RedTracker()
  with caplog.at_level("WARNING"):
    boxes = track_video(tracker, source, [-4, 10, 14, 8], max_frames=2)
  np.testing.assert_array_equal(tracker.init_box, [0, 10, 10, 8])    # clipped to the frame
  np.testing.assert_array_equal(boxes[0], [0, 10, 10, 8])
  assert any("clipped to [0.0, 10.0, 10.0, 8.0]" in r.getMessage() for r in caplog.records)


def test_track_to_folder_leaves_nothing_when_it_fails(tmp_path):
  source = tmp_path / "in.avi"
  _write_video(source, "MJPG")

  class Failing(RedTracker):
    def update(self, frame):
      if len(self.frames) == 3:
        raise RuntimeError("tracker failed")
      return super().update(frame)

  out = tmp_path / "new" / "out"
  with pytest.raises(RuntimeError, match="tracker failed"):
    video.track_to_folder(Failing(), source, [5, 10, 10, 8], str(out), "_red")
  assert not (tmp_path / "new").exists()          # no partial video, no empty folders
  boxes, path = video.track_to_folder(RedTracker(), source, [5, 10, 10, 8], str(out), "_red")
  assert path == str(out / "in_red.mp4") and len(_read_all(path)) == N
  np.testing.assert_allclose(np.loadtxt(out / "in_red.txt", delimiter=","), boxes)


def test_errors(tmp_path):
  with pytest.raises(VideoError, match=r"video source .*missing.mp4 does not "
                     "exist"):
    track_video(RedTracker(), tmp_path / "missing.mp4", [1, 1, 2, 2])
  bogus = tmp_path / "bogus.mp4"
  bogus.write_text("not a video")
  with pytest.raises(VideoError, match=r"bogus.mp4"):
    track_video(RedTracker(), bogus, [1, 1, 2, 2])
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(VideoError, match=r"no image files .* in frame folder "
                     ".*empty"):
    track_video(RedTracker(), empty, [1, 1, 2, 2])
  source = tmp_path / "in.avi"
  _write_video(source, "MJPG")
  with pytest.raises(VideoError, match=r"initial box \[1.0, 1.0, 0.0, 2.0\]"):
    track_video(RedTracker(), source, [1, 1, 0, 2])
  with pytest.raises(VideoError, match=r"unsupported output extension '.gif' "
                     ".*out.gif"):
    track_video(RedTracker(), source, [5, 10, 10, 8], tmp_path / "out.gif")
  assert not os.path.exists(tmp_path / "out.gif")


def test_source_fps(tmp_path):
  source = tmp_path / "in.avi"
  _write_video(source, "MJPG")
  assert video.source_fps(source) == pytest.approx(10.0)
  assert video.source_fps(tmp_path) == 30.0
