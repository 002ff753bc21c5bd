"""Benchmark readers on tiny on-disk fixtures (a few 128x96 jpgs each: initial boxes must
lie at least partly inside the first frame)."""
import os

import cv2
import numpy as np
import pytest

from duml_jax.data import benchmarks
from duml_jax.data.benchmarks import BenchmarkError, load_benchmark
from duml_jax.data.frames import read_frame

_JPG = cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))[1].tobytes()
_PNG = cv2.imencode(".png", np.full((96, 128, 3), 90, np.uint8))[1].tobytes()


def _frames(folder, names):
  os.makedirs(folder, exist_ok=True)
  for name in names:
    with open(os.path.join(folder, name), "wb") as f:
      f.write(_PNG if name.endswith(".png") else _JPG)


def _text(path, lines):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(line + "\n" for line in lines))


def _rows(n, sep=",", x0=10):
  """n distinct 1-based boxes; row i is [x0 + i, 5 + i, 8, 6]."""
  return [sep.join(str(v) for v in (x0 + i, 5 + i, 8, 6)) for i in range(n)]


# ------------------------------------------------------------------ otb


@pytest.fixture
def otb_root(tmp_path):
  _frames(tmp_path / "Alpha" / "img", [f"{i}.jpg" for i in range(1, 11)])  # not zero-padded
  _text(tmp_path / "Alpha" / "groundtruth_rect.txt", _rows(10, ","))
  _frames(tmp_path / "Beta" / "img", [f"{i:04d}.jpg" for i in range(1, 5)])
  _text(tmp_path / "Beta" / "groundtruth_rect.txt", _rows(4, "\t") + [""])
  _frames(tmp_path / "Twin" / "img", [f"{i:04d}.jpg" for i in range(1, 3)])
  _text(tmp_path / "Twin" / "groundtruth_rect.1.txt", _rows(2, " "))
  _text(tmp_path / "Twin" / "groundtruth_rect.2.txt", _rows(2, ",", x0=20))
  return tmp_path


def test_otb_generic(otb_root):
  seqs = load_benchmark("otb", str(otb_root))
  assert [s.name for s in seqs] == ["Alpha", "Beta", "Twin-1", "Twin-2"]
  alpha = seqs[0]
  assert [os.path.basename(f) for f in alpha.frames] == [
      f"{i}.jpg" for i in range(1, 11)]    # natural order: 10.jpg last
  # 1-based [10, 5, 8, 6] -> 0-based [9, 4, 8, 6].
  np.testing.assert_array_equal(alpha.boxes[0], [9, 4, 8, 6])
  np.testing.assert_array_equal(alpha.boxes[2], [11, 6, 8, 6])
  assert alpha.one_based and alpha.start_frame == 0 and alpha.absent is None
  assert len(seqs[1]) == 4 and seqs[1].boxes.shape == (4, 4)  # tabs, blank end
  np.testing.assert_array_equal(seqs[2].boxes[0], [9, 4, 8, 6])
  np.testing.assert_array_equal(seqs[3].boxes[0], [19, 4, 8, 6])
  assert seqs[2].frames == seqs[3].frames
  assert benchmarks.detect_layout(str(otb_root)) == "otb"


def test_otb_select_and_errors(otb_root):
  (beta,) = load_benchmark("otb", otb_root, sequences=["Beta"])
  assert beta.name == "Beta"
  with pytest.raises(BenchmarkError, match=r"\[otb\] sequence 'Gamma'.*"
                     r"missing sequence folder"):
    load_benchmark("otb", otb_root, sequences=["Gamma"])
  _text(otb_root / "Beta" / "groundtruth_rect.txt", _rows(3))
  with pytest.raises(BenchmarkError, match=r"'Beta'.*groundtruth_rect.txt "
                     r"has 3 ground-truth lines but 4 frames"):
    load_benchmark("otb", otb_root)
  _text(otb_root / "Beta" / "groundtruth_rect.txt",
        _rows(2) + ["1,2,x,4", "1,2,3,4"])
  with pytest.raises(BenchmarkError, match=r"cannot parse line 3 of .*Beta.*"
                     r"groundtruth_rect.txt: '1,2,x,4'"):
    load_benchmark("otb", otb_root)
  _text(otb_root / "Beta" / "groundtruth_rect.txt", ["1,2,3"] * 4)
  with pytest.raises(BenchmarkError, match="line 1 .*expected 4 numbers"):
    load_benchmark("otb", otb_root)


@pytest.mark.parametrize("first", ["NaN,NaN,NaN,NaN", "3,4,0,6", "3,4,5,-1"])
def test_invalid_initial_box(otb_root, first):
  _text(otb_root / "Beta" / "groundtruth_rect.txt", [first] + _rows(3))
  with pytest.raises(BenchmarkError, match=r"\[otb\] sequence 'Beta': initial "
                     r"box .*groundtruth_rect.txt \(line 1\) is NaN or has a "
                     "non-positive size"):
    load_benchmark("otb", otb_root, sequences=["Beta"])


def test_general_errors(tmp_path, otb_root):
  with pytest.raises(BenchmarkError, match="unknown benchmark 'otb100'.*"
                     "otb2015, otb, vot2018, vot2019, vot, nfs30, uav123, "
                     "lasot, trackingnet, got10k"):
    load_benchmark("otb100", tmp_path)
  with pytest.raises(BenchmarkError, match=r"\[lasot\] dataset root .*nowhere "
                     "does not exist"):
    load_benchmark("lasot", tmp_path / "nowhere")
  with pytest.raises(BenchmarkError, match=r"\[lasot\] .* does not have the "
                     "lasot layout; it looks like the 'otb' layout: pass "
                     "--benchmark otb"):
    load_benchmark("lasot", otb_root)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(BenchmarkError, match="matches no known benchmark layout"):
    load_benchmark("got10k", empty)
  assert benchmarks.detect_layout(str(empty)) is None
  assert benchmarks.detect_layout(str(tmp_path / "nowhere")) is None


def test_otb_sample(otb_sample):
  seqs = {s.name: s for s in load_benchmark("otb", otb_sample)}
  assert {n: len(s) for n, s in seqs.items()} == {
      "Crossing": 120, "Freeman1": 326, "MotorRolling": 164, "bag": 196,
      "wakeboard7": 67}
  for s in seqs.values():
    assert s.boxes.shape == (len(s), 4) and np.all(np.isfinite(s.boxes))
  # Crossing is tab-delimited: first row "205\t151\t17\t50" (1-based).
  np.testing.assert_array_equal(seqs["Crossing"].boxes[0], [204, 150, 17, 50])
  np.testing.assert_allclose(seqs["bag"].boxes[0],
                             [290.83, 123.71, 150.35, 139.58])
  frame = read_frame(seqs["Freeman1"].frames[0])  # a grayscale sequence
  assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


# ------------------------------------------------------------------ otb2015


def _otb_folder(root, folder, numbers, gt_files, digits=4, ext="jpg"):
  _frames(root / folder / "img", [f"{i:0{digits}d}.{ext}" for i in numbers])
  for name, lines in gt_files.items():
    _text(root / folder / name, lines)


def _otb2015_tree(r, full=True):
  """Official-range folders: David and Tiger1, plus the other quirks."""
  _otb_folder(r, "Tiger1", range(1, 355), {
      "groundtruth_rect.txt": _rows(354)})
  _otb_folder(r, "David", range(1, 771), {"groundtruth_rect.txt": _rows(471)})
  if not full:
    return r
  _otb_folder(r, "Jogging", range(1, 308), {
      "groundtruth_rect.1.txt": _rows(307), "groundtruth_rect.2.txt":
      _rows(307, x0=100)})
  _otb_folder(r, "Human4", range(1, 668), {
      "groundtruth_rect.2.txt": _rows(667, "\t", x0=50)})
  (r / "Human4" / "groundtruth_rect.1.txt").write_text("")
  _otb_folder(r, "BlurCar3", range(3, 360), {
      "groundtruth_rect.txt": _rows(357)})
  _otb_folder(r, "Board", range(1, 699), {"groundtruth_rect.txt": _rows(698)},
              digits=5)
  _otb_folder(r, "KiteSurf", range(1, 85), {"groundtruth_rect.txt": _rows(84)},
              ext="png")
  return r


@pytest.fixture(scope="module")
def otb2015_root(tmp_path_factory):
  """Read-only: tests that modify files build their own tree."""
  return _otb2015_tree(tmp_path_factory.mktemp("otb2015"))


_QUIRKY = ["Jogging-1", "Jogging-2", "Human4-2", "Tiger1", "David", "BlurCar3",
           "Board", "KiteSurf"]


def test_otb2015_official_list():
  names = benchmarks.otb2015_sequence_names()
  assert len(names) == len(set(names)) == 100
  for name in _QUIRKY + ["Skating2-1", "Skating2-2", "BlurCar1", "BlurCar4"]:
    assert name in names
  for name in ("Jogging", "Skating2", "Human4"):
    assert name not in names


def test_otb2015_quirks(otb2015_root):
  seqs = {s.name: s for s in load_benchmark("otb2015", otb2015_root,
                                            sequences=_QUIRKY)}
  assert {n: len(s) for n, s in seqs.items()} == {
      "Jogging-1": 307, "Jogging-2": 307, "Human4-2": 667, "Tiger1": 349,
      "David": 471, "BlurCar3": 357, "Board": 698, "KiteSurf": 84}
  first = {n: os.path.relpath(s.frames[0], otb2015_root)
           for n, s in seqs.items()}
  assert first == {
      "Jogging-1": "Jogging/img/0001.jpg", "Jogging-2": "Jogging/img/0001.jpg",
      "Human4-2": "Human4/img/0001.jpg", "Tiger1": "Tiger1/img/0006.jpg",
      "David": "David/img/0300.jpg", "BlurCar3": "BlurCar3/img/0003.jpg",
      "Board": "Board/img/00001.jpg", "KiteSurf": "KiteSurf/img/0001.png"}
  assert os.path.basename(seqs["David"].frames[-1]) == "0770.jpg"
  assert seqs["Tiger1"].attributes["first_frame_number"] == 6
  assert all(s.start_frame == 0 and s.one_based for s in seqs.values())
  # Jogging-2 reads groundtruth_rect.2.txt: 1-based [100, 5, 8, 6].
  np.testing.assert_array_equal(seqs["Jogging-1"].boxes[0], [9, 4, 8, 6])
  np.testing.assert_array_equal(seqs["Jogging-2"].boxes[0], [99, 4, 8, 6])
  np.testing.assert_array_equal(seqs["Human4-2"].boxes[0], [49, 4, 8, 6])
  # Tiger1 drops its first 5 rows: frame 0006 <- row 6 = [15, 10, 8, 6].
  np.testing.assert_array_equal(seqs["Tiger1"].boxes[0], [14, 9, 8, 6])
  np.testing.assert_array_equal(seqs["Tiger1"].boxes[-1], [362, 357, 8, 6])
  np.testing.assert_array_equal(seqs["David"].boxes[0], [9, 4, 8, 6])


def test_otb2015_errors(tmp_path):
  otb2015_root = _otb2015_tree(tmp_path, full=False)
  os.remove(otb2015_root / "David" / "img" / "0500.jpg")
  with pytest.raises(BenchmarkError, match=r"\[otb2015\] sequence 'David': "
                     r"missing frame 500 \(.*David/img/0500.jpg\)"):
    load_benchmark("otb2015", otb2015_root, sequences=["David"])
  _text(otb2015_root / "Tiger1" / "groundtruth_rect.txt", _rows(349))
  with pytest.raises(BenchmarkError, match=r"'Tiger1'.*has 349 ground-truth "
                     "lines but 354 frames .*annotates frames 1-354"):
    load_benchmark("otb2015", otb2015_root, sequences=["Tiger1"])
  with pytest.raises(BenchmarkError, match=r"'Basketball'.*missing sequence "
                     "folder"):
    load_benchmark("otb2015", otb2015_root, sequences=["Basketball"])
  with pytest.raises(BenchmarkError, match=r"unknown sequence\(s\) "
                     r"\['Jogging'\]"):
    load_benchmark("otb2015", otb2015_root, sequences=["Jogging"])
  # The generic reader names the gap of a missing frame; with the frame back, it points at
  # otb2015 for a sequence with a frame range.
  with pytest.raises(BenchmarkError, match=r"'David': 0500.jpg missing between 0499.jpg "
                     "and 0501.jpg"):
    load_benchmark("otb", otb2015_root, sequences=["David"])
  _frames(otb2015_root / "David" / "img", ["0500.jpg"])
  with pytest.raises(BenchmarkError, match="use --benchmark otb2015"):
    load_benchmark("otb", otb2015_root, sequences=["David"])


# ------------------------------------------------------------------ vot


@pytest.fixture
def vot_root(tmp_path):
  _text(tmp_path / "list.txt", ["poly", "rect"])
  _frames(tmp_path / "poly" / "color", [f"{i:08d}.jpg" for i in range(1, 4)])
  _text(tmp_path / "poly" / "groundtruth.txt", [
      "10,5,20,5,20,15,10,15", "11.5,6,21,5,22,16,10,14", "1,1,4,1,4,3,1,3"])
  _text(tmp_path / "poly" / "occlusion.tag", ["0", "1"])  # shorter: padded
  _text(tmp_path / "poly" / "camera_motion.tag", ["1", "1", "0"])
  _frames(tmp_path / "rect" / "frames", [f"f{i}.jpg" for i in range(1, 3)])
  _text(tmp_path / "rect" / "sequence", ["channels.color=frames/f%d.jpg",
                                         "length=2", "fps=30"])
  # A rectangle row then a polygon row (the VOT format allows both).
  _text(tmp_path / "rect" / "groundtruth.txt",
        ["3,4,5,6", "4,5,10,5,10,12,4,12"])
  return tmp_path


@pytest.mark.parametrize("name", ["vot2018", "vot2019", "vot"])
def test_vot(vot_root, name):
  poly, rect = load_benchmark(name, vot_root)
  assert (poly.name, len(poly), rect.name, len(rect)) == ("poly", 3, "rect", 2)
  assert not poly.one_based
  np.testing.assert_array_equal(poly.polygons[1],
                                [11.5, 6, 21, 5, 22, 16, 10, 14])
  # Axis-aligned hull of polygon 1: x 10..22, y 5..16.
  np.testing.assert_array_equal(poly.boxes[1], [10, 5, 12, 11])
  np.testing.assert_array_equal(poly.boxes[0], [10, 5, 10, 10])
  tags = poly.attributes["tags"]
  np.testing.assert_array_equal(tags["occlusion"], [False, True, False])
  np.testing.assert_array_equal(tags["camera_motion"], [True, True, False])
  assert os.path.relpath(rect.frames[1], vot_root) == "rect/frames/f2.jpg"
  np.testing.assert_array_equal(rect.boxes, [[3, 4, 5, 6], [4, 5, 6, 7]])
  np.testing.assert_array_equal(rect.polygons, [[3, 4, 8, 4, 8, 10, 3, 10],
                                                [4, 5, 10, 5, 10, 12, 4, 12]])
  assert benchmarks.detect_layout(str(vot_root)) == "vot"


def test_vot_errors(vot_root):
  _text(vot_root / "list.txt", ["poly", "ghost"])
  with pytest.raises(BenchmarkError, match=r"\[vot2018\] sequence 'ghost': "
                     "missing sequence folder .*ghost .*listed in"):
    load_benchmark("vot2018", vot_root)
  _text(vot_root / "list.txt", ["poly"])
  _text(vot_root / "poly" / "groundtruth.txt", ["1,2,3,4,5,6,7,8"] * 2)
  with pytest.raises(BenchmarkError, match="has 2 ground-truth lines but 3 "
                     "frames"):
    load_benchmark("vot2019", vot_root)
  _text(vot_root / "poly" / "groundtruth.txt", ["1,2,3,4,5,6"] * 3)
  with pytest.raises(BenchmarkError, match="line 1 .*expected 4 or 8 numbers"):
    load_benchmark("vot2019", vot_root)
  _text(vot_root / "list.txt", ["poly", "rect"])
  os.remove(vot_root / "rect" / "frames" / "f2.jpg")
  with pytest.raises(BenchmarkError, match=r"'rect': missing frame "
                     r".*f2.jpg \(pattern 'frames/f%d.jpg'"):
    load_benchmark("vot", vot_root, sequences=["rect"])


# ------------------------------------------------------------------ nfs30


def _vatic(n, lost=()):
  return [f'1 {10 + i} 5 {18 + i} 11 {i} {int(i in lost)} 0 0 "ball"'
          for i in range(n)]


def test_nfs30(tmp_path):
  _frames(tmp_path / "ball" / "30" / "ball", [f"{i:05d}.jpg" for i in
                                              range(1, 5)])
  _text(tmp_path / "ball" / "30" / "ball.txt", _vatic(32, lost=(16,)))
  _frames(tmp_path / "cup" / "30" / "cup", [f"{i:05d}.jpg" for i in
                                            range(1, 4)])
  _text(tmp_path / "cup" / "30" / "cup.txt", _vatic(3))
  ball, cup = load_benchmark("nfs30", tmp_path)
  assert (ball.name, len(ball), cup.name, len(cup)) == ("ball", 4, "cup", 3)
  # 240 fps rows 0, 8, 16, 24; VATIC corners -> [xmin, ymin, w, h], 0-based.
  np.testing.assert_array_equal(ball.boxes[:, 0], [10, 18, 26, 34])
  np.testing.assert_array_equal(ball.boxes[0], [10, 5, 8, 6])
  np.testing.assert_array_equal(ball.absent, [False, False, True, False])
  assert not ball.one_based
  assert benchmarks.detect_layout(str(tmp_path)) == "nfs30"
  _text(tmp_path / "cup" / "30" / "cup.txt", _vatic(2) + ["1 2 3"])
  with pytest.raises(BenchmarkError, match=r"\[nfs30\] sequence 'cup': cannot "
                     "parse line 3 of .*cup.txt"):
    load_benchmark("nfs30", tmp_path, sequences=["cup"])


# ------------------------------------------------------------------ uav123


def test_uav123(tmp_path):
  data = tmp_path / "data_seq" / "UAV123"
  anno = tmp_path / "anno" / "UAV123"
  _frames(data / "bird1", [f"{i:06d}.jpg" for i in range(1, 260)])
  _text(anno / "bird1_1.txt", _rows(253))
  _frames(data / "person8", [f"{i:06d}.jpg" for i in range(1070, 1526)])
  _text(anno / "person8_2.txt", _rows(451))
  _frames(data / "uav6", [f"{i:06d}.jpg" for i in range(1, 110)])
  _text(anno / "uav6.txt", _rows(2) + ["NaN,NaN,NaN,NaN"] + _rows(106))
  seqs = load_benchmark("uav123", tmp_path,
                        sequences=["bird1_1", "person8_2", "uav6"])
  assert [(s.name, len(s)) for s in seqs] == [
      ("bird1_1", 253), ("person8_2", 451), ("uav6", 109)]
  assert os.path.relpath(seqs[1].frames[0], tmp_path) == os.path.join(
      "data_seq", "UAV123", "person8", "001075.jpg")
  assert os.path.basename(seqs[0].frames[-1]) == "000253.jpg"
  np.testing.assert_array_equal(seqs[1].boxes[0], [9, 4, 8, 6])
  assert seqs[2].absent.tolist()[:4] == [False, False, True, False]
  assert np.all(np.isnan(seqs[2].boxes[2])) and seqs[0].one_based
  assert len(benchmarks.uav123_sequence_names()) == 123
  assert benchmarks.detect_layout(str(tmp_path)) == "uav123"
  _text(anno / "bird1_2.txt", _rows(703))
  with pytest.raises(BenchmarkError, match=r"'bird1_2': missing frame 775 "):
    load_benchmark("uav123", tmp_path, sequences=["bird1_2"])


# ------------------------------------------------------------------ lasot


def _lasot_seq(root, name, n=3, occ="0,1,0", oov="0,0,1"):
  cls = name.rsplit("-", 1)[0]
  seq = root / cls / name
  _frames(seq / "img", [f"{i:08d}.jpg" for i in range(1, n + 1)])
  _text(seq / "groundtruth.txt", _rows(n))
  _text(seq / "full_occlusion.txt", [occ])
  _text(seq / "out_of_view.txt", [oov])


def test_lasot(tmp_path):
  _lasot_seq(tmp_path, "airplane-1")
  _lasot_seq(tmp_path, "kite-4")
  (seq,) = load_benchmark("lasot", tmp_path, sequences=["airplane-1"])
  np.testing.assert_array_equal(seq.absent, [False, True, True])
  np.testing.assert_array_equal(seq.boxes[1], [10, 5, 8, 6])
  assert seq.one_based and len(seq) == 3
  assert benchmarks.detect_layout(str(tmp_path)) == "lasot"
  # Without testing_set.txt the official 280 are expected: airplane-9 is not.
  assert len(benchmarks.lasot_test_names()) == 280
  with pytest.raises(BenchmarkError, match=r"\[lasot\] sequence 'airplane-9':"
                     " missing sequence folder .*airplane/airplane-9"):
    load_benchmark("lasot", tmp_path)
  _text(tmp_path / "testing_set.txt", ["kite-4", "airplane-1"])
  assert [s.name for s in load_benchmark("lasot", tmp_path)] == [
      "kite-4", "airplane-1"]
  _text(tmp_path / "kite" / "kite-4" / "out_of_view.txt", ["0,0"])
  with pytest.raises(BenchmarkError, match=r"'kite-4': .*out_of_view.txt has "
                     "2 values for 3 frames"):
    load_benchmark("lasot", tmp_path)


# ------------------------------------------------------------------ trackingnet


def test_trackingnet(tmp_path):
  _frames(tmp_path / "TEST" / "frames" / "vid_a",
          [f"{i}.jpg" for i in range(12)])
  _text(tmp_path / "TEST" / "anno" / "vid_a.txt", ["10.5,5,8,6"])
  _frames(tmp_path / "TRAIN_0" / "frames" / "vid_b",
          [f"{i}.jpg" for i in range(3)])
  _text(tmp_path / "TRAIN_0" / "anno" / "vid_b.txt", _rows(3))
  (test,) = load_benchmark("trackingnet", tmp_path)
  assert test.name == "vid_a" and len(test) == 12 and not test.one_based
  assert [os.path.basename(f) for f in test.frames[:3]] == [
      "0.jpg", "1.jpg", "2.jpg"]
  assert os.path.basename(test.frames[-1]) == "11.jpg"
  np.testing.assert_array_equal(test.boxes[0], [10.5, 5, 8, 6])
  assert np.all(np.isnan(test.boxes[1:]))
  (train,) = load_benchmark("trackingnet", tmp_path, split="TRAIN_0")
  np.testing.assert_array_equal(train.boxes[2], [12, 7, 8, 6])
  assert benchmarks.detect_layout(str(tmp_path)) == "trackingnet"
  _text(tmp_path / "TRAIN_0" / "anno" / "vid_b.txt", _rows(4))
  with pytest.raises(BenchmarkError, match=r"\[trackingnet\] sequence 'vid_b'"
                     ".*has 4 ground-truth lines but 3 frames"):
    load_benchmark("trackingnet", tmp_path, split="TRAIN_0")


# ------------------------------------------------------------------ got10k


def test_got10k(tmp_path):
  val = tmp_path / "val"
  _text(val / "list.txt", ["GOT-10k_Val_000001"])
  seq = val / "GOT-10k_Val_000001"
  _frames(seq, [f"{i:08d}.jpg" for i in range(1, 4)])
  _text(seq / "groundtruth.txt", _rows(3))
  _text(seq / "absence.label", ["0", "1", "0"])
  _text(seq / "cover.label", ["8", "0", "5"])
  test = tmp_path / "test"
  _text(test / "list.txt", ["GOT-10k_Test_000001"])
  _frames(test / "GOT-10k_Test_000001", [f"{i:08d}.jpg" for i in range(1, 5)])
  _text(test / "GOT-10k_Test_000001" / "groundtruth.txt", ["1,2,3,4"])

  (v,) = load_benchmark("got10k", tmp_path, split="val")
  assert v.name == "GOT-10k_Val_000001" and len(v) == 3 and not v.one_based
  np.testing.assert_array_equal(v.boxes[0], [10, 5, 8, 6])
  np.testing.assert_array_equal(v.absent, [False, True, False])
  np.testing.assert_array_equal(v.attributes["cover"], [8, 0, 5])
  (t,) = load_benchmark("got10k", tmp_path)
  assert len(t) == 4 and t.absent is None
  np.testing.assert_array_equal(t.boxes[0], [1, 2, 3, 4])
  assert np.all(np.isnan(t.boxes[1:]))
  assert benchmarks.detect_layout(str(tmp_path)) == "got10k"

  with pytest.raises(BenchmarkError, match="one GOT-10k split folder: pass its"
                     " parent"):
    load_benchmark("got10k", val)
  os.remove(test / "list.txt")
  with pytest.raises(BenchmarkError, match=r"\[got10k\] missing sequence list "
                     ".*test/list.txt"):
    load_benchmark("got10k", tmp_path)
  _text(seq / "absence.label", ["0", "1"])
  with pytest.raises(BenchmarkError, match="absence.label has 2 values for 3 "
                     "frames"):
    load_benchmark("got10k", tmp_path, split="val")
  with pytest.raises(BenchmarkError, match="unknown split 'train'"):
    load_benchmark("got10k", tmp_path, split="train")


def test_as_one_based_round_trip():
  boxes = np.array([[9.0, 4.0, 8.0, 6.0]])
  np.testing.assert_array_equal(benchmarks.as_one_based(boxes),
                                [[10, 5, 8, 6]])


def test_otb_folder_without_ground_truth(otb_root):
  (otb_root / "Beta" / "groundtruth_rect.txt").unlink()
  with pytest.raises(BenchmarkError, match=r"\[otb\] sequence 'Beta': no "
                     "groundtruth_rect.txt .* in .*Beta"):
    load_benchmark("otb", otb_root)
  assert [s.name for s in load_benchmark("otb", otb_root,
                                         sequences=["Alpha"])] == ["Alpha"]
  (otb_root / "Delta").mkdir()
  with pytest.raises(BenchmarkError, match=r"'Delta': no img/ folder in "):
    load_benchmark("otb", otb_root, sequences=["Delta"])


def test_empty_frame_folder(tmp_path):
  _lasot_seq(tmp_path, "kite-4")
  for f in (tmp_path / "kite" / "kite-4" / "img").iterdir():
    f.unlink()
  with pytest.raises(BenchmarkError, match=r"\[lasot\] sequence 'kite-4': no "
                     "images in .*kite-4/img"):
    load_benchmark("lasot", tmp_path, sequences=["kite-4"])
