"""TFDS builders on tiny on-disk fixtures in each dataset's own layout."""
import json
import os

import cv2
import numpy as np
import pytest

from duml_jax.data import builders
from duml_jax.data import synthetic
from duml_jax.data.builders import lasot


def _jpg(path, size=(32, 32), value=128):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = size
  assert cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _build(name, root, tmp_path, split="train"):
  b = builders.prepare(builders.make_builder(name, root, tmp_path / "tfds"), root)
  src = builders.data_source(b, split)
  recs = [src[i] for i in range(len(src))]
  for r in recs:  # every indexed frame is a real file under the root
    for f in r["frames"]:
      assert os.path.isfile(os.path.join(root, f.decode())), f
  return b, {r["video_id"].decode(): r for r in recs}


def test_got10k(tmp_path):
  root = tmp_path / "got10k"
  for split in ("train", "val"):
    for k, seq in enumerate(["GOT-10k_Train_000001", "GOT-10k_Train_000002"]):
      for i in range(3):
        _jpg(root / split / seq / f"{i + 1:08d}.jpg")
      gt = "1,2,10,12\n3,4,0,5\nNaN,NaN,NaN,NaN\n" if k == 0 else "1,1,5,5\n2,2,5,5\n3,3,5,5\n"
      _write(root / split / seq / "groundtruth.txt", gt)
      _write(root / split / seq / "absence.label", "0\n0\n0\n" if k == 0 else "0\n1\n0\n")
    _write(root / split / "list.txt", "GOT-10k_Train_000001\nGOT-10k_Train_000002\n")
  # A listed sequence whose ground truth cannot be parsed is skipped, not fatal.
  _jpg(root / "train" / "GOT-10k_Train_000003" / "00000001.jpg")
  _write(root / "train" / "GOT-10k_Train_000003" / "groundtruth.txt", "1,2,oops\n")
  _write(root / "train" / "list.txt",
         "GOT-10k_Train_000001\nGOT-10k_Train_000002\nGOT-10k_Train_000003\n")
  b, recs = _build("got10k", root, tmp_path)
  assert set(b.info.splits) == {"train", "val"}
  r1, r2 = recs["GOT-10k_Train_000001"], recs["GOT-10k_Train_000002"]
  assert [f.decode() for f in r1["frames"]] == [
      f"train/GOT-10k_Train_000001/{i:08d}.jpg" for i in (1, 2, 3)]
  np.testing.assert_array_equal(r1["valid"], [True, False, False])  # w=0, NaN
  np.testing.assert_array_equal(r1["boxes"][0], [1, 2, 10, 12])
  np.testing.assert_array_equal(r2["valid"], [True, False, True])  # absence.label
  counts = b.info.metadata["counts_train"]
  assert counts["nonpositive_boxes"] == 1 and counts["nan_boxes"] == 1
  assert counts["absent_frames"] == 1 and counts["records"] == 2
  assert counts["unreadable_annotations"] == 1


def test_lasot_excludes_the_test_list_and_shifts_to_zero_based(tmp_path):
  root = tmp_path / "lasot"
  test_set = lasot.testing_set()
  assert len(test_set) == 280 and {"airplane-1", "bird-3"} <= test_set and "bird-4" not in test_set
  for name in ("airplane-1", "airplane-2", "bird-4"):  # airplane-1 is a test sequence
    seq = root / name.split("-")[0] / name
    for i in range(3):
      _jpg(seq / "img" / f"{i + 1:08d}.jpg")
    _write(seq / "groundtruth.txt", "11,21,5,6\n12,22,5,6\n13,23,5,6\n")
    _write(seq / "full_occlusion.txt", "0,1,0")
    _write(seq / "out_of_view.txt", "0,0,1")
  b, recs = _build("lasot", root, tmp_path)
  assert sorted(recs) == ["airplane-2", "bird-4"]
  r = recs["bird-4"]
  np.testing.assert_array_equal(r["boxes"][0], [10, 20, 5, 6])
  np.testing.assert_array_equal(r["valid"], [True, False, False])
  assert r["frames"][2].decode() == "bird/bird-4/img/00000003.jpg"


def test_lasot_training_set_file_wins(tmp_path):
  root = tmp_path / "lasot"
  for name in ("airplane-1", "airplane-2"):
    seq = root / "airplane" / name
    for i in range(3):
      _jpg(seq / "img" / f"{i + 1:08d}.jpg")
    _write(seq / "groundtruth.txt", "1,1,5,5\n1,1,5,5\n1,1,5,5\n")
  _write(root / "training_set.txt", "airplane-1\n")
  _, recs = _build("lasot", root, tmp_path)
  assert sorted(recs) == ["airplane-1"]


def test_trackingnet_marks_missing_frames_invalid(tmp_path):
  root = tmp_path / "trackingnet"
  for chunk in ("TRAIN_0", "TRAIN_11"):
    for seq in ("a1", "b2"):
      for i in range(3):
        if not (chunk == "TRAIN_11" and seq == "b2" and i == 1):
          _jpg(root / chunk / "frames" / seq / f"{i}.jpg")
      _write(root / chunk / "anno" / f"{seq}.txt", "0,0,8,9\n1,1,8,9\n2,2,8,9\n")
  b, recs = _build_allow_missing("trackingnet", root, tmp_path)
  assert sorted(recs) == ["TRAIN_0/a1", "TRAIN_0/b2", "TRAIN_11/a1", "TRAIN_11/b2"]
  np.testing.assert_array_equal(recs["TRAIN_11/b2"]["valid"], [True, False, True])
  np.testing.assert_array_equal(recs["TRAIN_0/a1"]["boxes"][2], [2, 2, 8, 9])
  assert b.info.metadata["counts_train"]["missing_frames"] == 1


def _build_allow_missing(name, root, tmp_path):
  b = builders.prepare(builders.make_builder(name, root, tmp_path / "tfds"), root)
  src = builders.data_source(b, "train")
  recs = {src[i]["video_id"].decode(): src[i] for i in range(len(src))}
  for r in recs.values():  # valid frames exist; invalid ones may be missing
    for f, ok in zip(r["frames"], r["valid"]):
      assert not ok or os.path.isfile(os.path.join(root, f.decode()))
  return b, recs


def _vid_xml(objects):
  objs = "".join(
      f"<object><trackid>{t}</trackid><name>n0</name><bndbox><xmax>{x1}</xmax>"
      f"<xmin>{x0}</xmin><ymax>{y1}</ymax><ymin>{y0}</ymin></bndbox>"
      f"<occluded>0</occluded><generated>0</generated></object>"
      for t, (x0, y0, x1, y1) in objects)
  return (f"<annotation><folder>x</folder><filename>y</filename><size><width>32</width>"
          f"<height>32</height></size>{objs}</annotation>")


def test_imagenet_vid_one_record_per_track(tmp_path):
  root = tmp_path / "vid"
  rel = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
  tracks = [[(0, (1, 2, 11, 22)), (1, (5, 5, 9, 9))],
            [(0, (2, 2, 12, 22))],
            [(0, (3, 2, 13, 22)), (1, (6, 6, 6, 10))]]  # track 1: zero width at frame 2
  for i, objs in enumerate(tracks):
    _jpg(root / "ILSVRC/Data/VID/train" / rel / f"{i:06d}.JPEG")
    _write(root / "ILSVRC/Annotations/VID/train" / rel / f"{i:06d}.xml", _vid_xml(objs))
  rel2 = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001"
  for i in range(3):
    _jpg(root / "ILSVRC/Data/VID/train" / rel2 / f"{i:06d}.JPEG")
    _write(root / "ILSVRC/Annotations/VID/train" / rel2 / f"{i:06d}.xml",
           _vid_xml([(3, (0, 0, 4, 4))] if i > 0 else []))
  b, recs = _build("imagenet_vid", root, tmp_path)
  assert sorted(recs) == [f"{rel}/00", f"{rel}/01", f"{rel2}/03"]
  np.testing.assert_array_equal(recs[f"{rel}/00"]["boxes"][0], [1, 2, 10, 20])
  np.testing.assert_array_equal(recs[f"{rel}/01"]["valid"], [True, False, False])
  assert len(recs[f"{rel2}/03"]["frames"]) == 2  # from first to last appearance
  assert recs[f"{rel2}/03"]["frames"][0].decode().endswith("000001.JPEG")


def test_coco_one_frame_records_skip_crowd(tmp_path):
  root = tmp_path / "coco"
  _jpg(root / "train2017/000000000001.jpg")
  _jpg(root / "train2017/000000000002.jpg")
  ann = {"images": [{"id": 1, "file_name": "000000000001.jpg"},
                    {"id": 2, "file_name": "000000000002.jpg"}],
         "annotations": [
             {"id": 10, "image_id": 1, "bbox": [1.5, 2.5, 10, 8], "iscrowd": 0},
             {"id": 11, "image_id": 1, "bbox": [0, 0, 30, 30], "iscrowd": 1},
             {"id": 12, "image_id": 2, "bbox": [3, 3, 0, 4], "iscrowd": 0},
             {"id": 13, "image_id": 2, "bbox": [4, 4, 5, 6], "iscrowd": 0}]}
  _write(root / "annotations/instances_train2017.json", json.dumps(ann))
  b, recs = _build("coco", root, tmp_path)
  assert sorted(recs) == ["1_10", "2_13"]
  np.testing.assert_allclose(recs["1_10"]["boxes"], [[1.5, 2.5, 10, 8]])
  counts = b.info.metadata["counts_train"]
  assert counts["crowd_skipped"] == 1 and counts["records_without_valid_frames"] == 1


def _det_xml(boxes):
  """PASCAL-VOC-style ILSVRC DET annotation (no trackid) with `boxes` (x0, y0, x1, y1)."""
  objs = "".join(
      f"<object><name>n01440764</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
      f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1 in boxes)
  return (f"<annotation><folder>n01440764</folder><filename>x</filename><size><width>32"
          f"</width><height>32</height></size>{objs}</annotation>")


def test_imagenet_det_one_frame_record_per_object(tmp_path):
  root = tmp_path / "ilsvrc"
  data, ann = root / "ILSVRC/Data/DET/train", root / "ILSVRC/Annotations/DET/train"
  a = "ILSVRC2013_train/n01440764/n01440764_10026"
  a2 = "ILSVRC2014_train_0000/ILSVRC2014_train_00000663"
  _jpg(data / f"{a}.JPEG")
  _write(ann / f"{a}.xml", _det_xml([(1, 2, 11, 22), (5, 5, 5, 9)]))    # 2nd: zero width
  _jpg(data / f"{a2}.JPEG")
  _write(ann / f"{a2}.xml", _det_xml([(3, 4, 13, 10)]))
  _jpg(data / "ILSVRC2014_train_0000/negative.JPEG")
  _write(ann / "ILSVRC2014_train_0000/negative.xml", _det_xml([]))     # a DET negative image
  _write(ann / "ILSVRC2014_train_0000/no_jpeg.xml", _det_xml([(1, 1, 5, 5)]))
  _write(ann / "ILSVRC2014_train_0000/broken.xml", "<annotation><object>")
  _write(ann / "ILSVRC2014_train_0000/bad_box.xml",
         "<annotation><object><bndbox><xmin>a</xmin></bndbox></object></annotation>")
  _jpg(root / "ILSVRC/Data/DET/val/ILSVRC2012_val_00000001.JPEG")
  _write(root / "ILSVRC/Annotations/DET/val/ILSVRC2012_val_00000001.xml", _det_xml([(0, 0, 8, 8)]))
  b, recs = _build("imagenet_det", root, tmp_path)
  assert sorted(recs) == [f"{a}/00", f"{a2}/00"]
  assert [f.decode() for f in recs[f"{a}/00"]["frames"]] == [f"ILSVRC/Data/DET/train/{a}.JPEG"]
  np.testing.assert_array_equal(recs[f"{a}/00"]["boxes"], [[1, 2, 10, 20]])
  np.testing.assert_array_equal(recs[f"{a2}/00"]["boxes"], [[3, 4, 10, 6]])
  counts = b.info.metadata["counts_train"]
  assert counts["records_without_valid_frames"] == 1          # the zero-width object
  assert counts["images_without_objects"] == 1
  assert counts["missing_frames"] == 1
  assert counts["unreadable_annotations"] == 2
  _, val = _build("imagenet_det", root, tmp_path, split="val")
  assert sorted(val) == ["ILSVRC2012_val_00000001/00"]


def test_imagenet_det_parse_errors_name_the_file(tmp_path):
  from duml_jax.data.builders import imagenet_det
  _write(tmp_path / "x.xml", "<annotation><object><bndbox><xmin>1</xmin></bndbox></object>"
         "</annotation>")
  with pytest.raises(ValueError, match=r"x\.xml: object 0"):
    imagenet_det.parse_objects(str(tmp_path / "x.xml"))


def test_youtube_bb_tracks_from_csv(tmp_path):
  root = tmp_path / "ytbb"
  rows = [  # youtube_id,timestamp_ms,class_id,class_name,object_id,presence,xmin,xmax,ymin,ymax
      "AAA,2000,0,person,0,present,0.25,0.75,0.5,1.0",
      "AAA,1000,0,person,0,present,0.0,0.5,0.0,0.5",
      "AAA,3000,0,person,0,absent,-1,-1,-1,-1",
      "BBB,0,5,potted plant,1,present,0.1,0.2,0.1,0.3",
      "BBB,1000,5,potted plant,1,present,0.1,0.2,0.1,0.3",
      "BBB,2000,5,potted plant,1,present,0.1,0.2,0.1,0.3",  # frame not extracted
      "BBB,3000,5,potted plant,1,present,0.1,zero,0.1,0.3",  # malformed
  ]
  _write(root / "yt_bb_detection_train.csv", "\n".join(rows) + "\n")
  for yid, cid, oid, ts in [("AAA", 0, 0, 1000), ("AAA", 0, 0, 2000), ("AAA", 0, 0, 3000),
                            ("BBB", 5, 1, 0), ("BBB", 5, 1, 1000)]:
    _jpg(root / "train" / yid / str(cid) / str(oid) / f"{ts}.jpg", size=(40, 64))
  b, recs = _build("youtube_bb", root, tmp_path)
  a = recs["AAA/0/0"]
  assert [f.decode().rsplit("/", 1)[1] for f in a["frames"]] == ["1000.jpg", "2000.jpg",
                                                                 "3000.jpg"]
  np.testing.assert_allclose(a["boxes"][:2], [[0, 0, 32, 20], [16, 20, 32, 20]])
  np.testing.assert_array_equal(a["valid"], [True, True, False])
  assert len(recs["BBB/5/1"]["frames"]) == 2
  assert b.info.metadata["counts_train"]["missing_frames"] == 1
  assert b.info.metadata["counts_train"]["malformed_rows"] == 1


def test_synthetic_builder_generates_and_indexes(tmp_path):
  params = dict(num_videos=2, num_frames=3, height=32, width=32)
  b = builders.make_builder("synthetic", tmp_path / "frames", tmp_path / "tfds", params)
  builders.prepare(b, tmp_path / "frames")
  src = builders.data_source(b, "train")
  assert len(src) == 2
  r = src[1]
  _, boxes = synthetic.make_video(1, 3, 32, 32)
  np.testing.assert_allclose(r["boxes"], boxes, atol=0.006)  # 2-decimal GT files
  assert os.path.isfile(tmp_path / "frames" / r["frames"][0].decode())
  # Another parameterisation gets another TFDS directory.
  b2 = builders.make_builder("synthetic", tmp_path / "frames", tmp_path / "tfds",
                             dict(params, num_frames=4))
  assert b2.data_dir != b.data_dir


def test_synthetic_builder_refuses_evaluation_seeds(tmp_path):
  params = dict(num_videos=1, first_seed=synthetic.EVAL_SEEDS.start, num_frames=2, height=16,
                width=16)
  b = builders.make_builder("synthetic", tmp_path / "frames", tmp_path / "tfds", params)
  with pytest.raises(ValueError, match="disjoint"):
    builders.prepare(b, tmp_path / "frames")


def test_missing_layout_names_the_expected_files(tmp_path):
  os.makedirs(tmp_path / "empty")
  _write(tmp_path / "empty" / "README", "nothing here")
  b = builders.make_builder("got10k", tmp_path / "empty", tmp_path / "tfds")
  with pytest.raises(FileNotFoundError, match="list.txt"):
    builders.prepare(b, tmp_path / "empty")
  with pytest.raises(KeyError, match="unknown dataset"):
    builders.make_builder("nope", tmp_path, tmp_path)


def test_otb_layout_indexes_the_shared_training_sequences(shared_dir, tmp_path):
  root = shared_dir / "data" / "real_train"
  b = builders.prepare(builders.make_builder("otb_layout", root, tmp_path / "tfds"), root)
  src = builders.data_source(b, "train")
  recs = {src[i]["video_id"].decode(): src[i] for i in range(len(src))}
  assert len(recs) == 13
  assert sum(len(r["frames"]) for r in recs.values()) == 1079  # README's total
  assert all(r["valid"].all() for r in recs.values())  # README: all boxes positive
  assert recs["Bolt"]["frames"][0].decode() == "Bolt/img/0001.jpg"
