"""Benchmark readers: folders on disk -> lists of `Sequence`.

`load_benchmark(name, root, split=None, sequences=None)` reads one of the
evaluation benchmarks below. Only frame *paths* are listed (frames are decoded
later by `duml_jax.data.frames.read_frame`, whose errors name the file). Ground
truth text is split on commas, tabs or spaces. Every box is converted to the
library's 0-based convention (`duml_jax.boxes`: ``[x, y, w, h]`` spans
``[x, x + w)`` with the first pixel at 0); `Sequence.one_based` records whether
the benchmark's own files are 1-based, so result writers add 1 back.

Directory layouts (``root`` is the folder given to `load_benchmark`):

| name | expected tree under ``root`` | ground truth | ``one_based`` |
|---|---|---|---|
| ``otb2015`` | ``<Folder>/img/0001.jpg ...``, ``<Folder>/groundtruth_rect[.k].txt`` | the official 100-sequence list with its frame ranges (David 300-770, Tiger1 6-354, BlurCar1 247-988, ...), ``Jogging-1/-2`` and ``Skating2-1/-2`` share one ``img`` and read ``groundtruth_rect.1/.2.txt``; ``Human4-2`` reads ``Human4/groundtruth_rect.2.txt``; Board has 5-digit names, KiteSurf png | yes (OTB MATLAB toolkit) |
| ``otb`` | ``<seq>/img/*.jpg``, ``<seq>/groundtruth_rect.txt`` (or ``groundtruth_rect.k.txt`` -> ``<seq>-k``) | one row per image | yes |
| ``vot2018``, ``vot2019`` (``vot``) | ``list.txt``, ``<seq>/groundtruth.txt``, frames in ``<seq>/color/*.jpg``, in ``<seq>/*.jpg`` or named by ``<seq>/sequence`` (``channels.color=color/%08d.jpg``), optional ``<seq>/<tag>.tag`` / ``.label`` | 8-value polygons (kept in ``polygons``; ``boxes`` = their axis-aligned hull) or 4-value rectangles | no (vot-toolkit rasterises with pixel 0 first) |
| ``nfs30`` | ``<seq>/30/<seq>/*.jpg``, ``<seq>/30/<seq>.txt`` | VATIC rows ``id xmin ymin xmax ymax frame lost occluded generated "label"``; a 240 fps file (~8x the frames) is subsampled with every 8th row; ``lost`` -> absent | no (VATIC pixel coordinates) |
| ``uav123`` | ``data_seq/UAV123/<folder>/000001.jpg ...``, ``anno/UAV123/<seq>.txt`` | the official 123 entries; ``bird1_2`` etc. are frame ranges of a shared folder; NaN rows = absent | yes (OTB-derived MATLAB toolkit) |
| ``lasot`` | ``<class>/<class>-<n>/img/00000001.jpg ...``, ``groundtruth.txt``, ``full_occlusion.txt``, ``out_of_view.txt``; test names from ``testing_set.txt`` if present, else the official 280 | absent = full occlusion or out of view | yes (MATLAB toolkit) |
| ``trackingnet`` | ``TEST/frames/<seq>/0.jpg ...``, ``TEST/anno/<seq>.txt`` (split ``TEST``, default) or ``TRAIN_k/...`` | TEST holds the first box only: later rows NaN | no (Python toolkit, boxes from YouTube-BB) |
| ``got10k`` | ``<split>/list.txt``, ``<split>/<seq>/00000001.jpg ...``, ``groundtruth.txt``, ``absence.label``, ``cover.label`` (split ``test`` by default, or ``val``) | test holds the first box only: later rows NaN | no (Python toolkit) |

Conversion: a 1-based box ``[x, y, w, h]`` becomes ``[x - 1, y - 1, w, h]``.
`Sequence.start_frame` is 0 for every reader: the benchmark frame ranges above
are applied by listing only the evaluated frames (e.g. Tiger1's first frame is
``img/0006.jpg``); ``attributes["first_frame_number"]`` keeps the file number of
``frames[0]`` where the benchmark numbers its frames from a range. Boxes the
benchmark gives for absent frames (LaSOT's ``0,0,0,0``) are kept as given
(converted); use `Sequence.absent`. NfS 30 fps folders one frame longer or
shorter than their subsampled rows are cut to the shorter (the usual
handling); every other mismatch of rows and frames is an error, except the
first-box-only TEST splits of TrackingNet and GOT-10k. Frames listed from a
folder whose files are numbered (``0001.jpg`` ...) must be numbered without
gaps (a missing file would put every later box on the wrong frame): the
error names the missing file and its neighbours.

The initial box is checked against the first frame's size (read from its
header): a box entirely outside the image is an error naming the file and
line; a box partly outside is clipped to the image with a warning (VOT
polygons are kept as given, as the VOT toolkit does).

`detect_layout(root)` names the layout family of a folder; a `load_benchmark`
name that does not match its folder raises `BenchmarkError` naming the
detected one.
"""
import glob
import os
import re

from absl import logging
import numpy as np

from duml_jax import errors
from duml_jax.data import frames as frames_lib
from duml_jax.data.sequence import Sequence

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class BenchmarkError(errors.UserError, ValueError):
  """A benchmark folder that does not match its documented layout."""


# --------------------------------------------------------------------------
# Official sequence tables (facts from the benchmarks' own configuration
# lists: the OTB toolkit's configSeqs, UAV123's configSeqs, LaSOT's test split).

# OTB-2015: "Name:end" or "Name:start-end" (frames of Name/img, 4-digit jpg).
_OTB2015_RANGES = """
Basketball:725 Biker:142 Bird1:408 Bird2:99 BlurBody:334 BlurCar1:247-988
BlurCar2:585 BlurCar3:3-359 BlurCar4:18-397 BlurFace:493 BlurOwl:631
Board:698 Bolt:350 Bolt2:293 Box:1161 Boy:602 Car1:1020 Car2:913 Car24:3059
Car4:659 CarDark:393 CarScale:252 ClifBar:472 Coke:291 Couple:140 Coupon:327
Crossing:120 Crowds:347 Dancer:225 Dancer2:150 David:300-770 David2:537
David3:252 Deer:71 Diving:215 Dog:127 Dog1:1350 Doll:3872 DragonBaby:113
Dudek:1145 FaceOcc1:892 FaceOcc2:812 Fish:476 FleetFace:707 Football:362
Football1:74 Freeman1:326 Freeman3:460 Freeman4:283 Girl:500 Girl2:1500
Gym:767 Human2:1128 Human3:1698 Human4-2:667 Human5:713 Human6:792 Human7:250
Human8:128 Human9:305 Ironman:166 Jogging-1:307 Jogging-2:307 Jump:122
Jumping:313 KiteSurf:84 Lemming:1336 Liquor:1741 Man:134 Matrix:100
Mhyang:1490 MotorRolling:164 MountainBike:228 Panda:1000 RedTeam:1918
Rubik:1997 Shaking:365 Singer1:351 Singer2:366 Skater:160 Skater2:435
Skating1:400 Skating2-1:473 Skating2-2:473 Skiing:81 Soccer:392 Subway:175
Surfer:376 Suv:945 Sylvester:1345 Tiger1:6-354 Tiger2:365 Toy:271 Trans:124
Trellis:569 Twinnings:472 Vase:271 Walking:412 Walking2:500 Woman:597
"""
# Sequences whose folder, ground-truth file or frame naming is not the default
# (folder = name, groundtruth_rect.txt, "%04d.jpg", ground truth row 0 = the
# first listed frame).
_OTB2015_QUIRKS = {
    "Board": dict(digits=5),
    "KiteSurf": dict(ext="png"),
    "Human4-2": dict(folder="Human4", gt="groundtruth_rect.2.txt"),
    "Jogging-1": dict(folder="Jogging", gt="groundtruth_rect.1.txt"),
    "Jogging-2": dict(folder="Jogging", gt="groundtruth_rect.2.txt"),
    "Skating2-1": dict(folder="Skating2", gt="groundtruth_rect.1.txt"),
    "Skating2-2": dict(folder="Skating2", gt="groundtruth_rect.2.txt"),
    # The toolkit omits Tiger1's first 5 frames; its file still has their rows.
    "Tiger1": dict(gt_first=1),
}

# UAV123: "name:end" (own folder from frame 1) or "name:start-end" (a frame
# range of the folder named by `name` without its "_k" suffix).
_UAV123_RANGES = """
bike1:3085 bike2:553 bike3:433 bird1_1:1-253 bird1_2:775-1477
bird1_3:1573-2437 boat1:901 boat2:799 boat3:901 boat4:553 boat5:505 boat6:805
boat7:535 boat8:685 boat9:1399 building1:469 building2:577 building3:829
building4:787 building5:481 car1_1:1-751 car1_2:751-1627 car1_3:1627-2629
car2:1321 car3:1717 car4:1345 car5:745 car6_1:1-487 car6_2:487-1807
car6_3:1807-2953 car6_4:2953-3925 car6_5:3925-4861 car7:1033 car8_1:1-1357
car8_2:1357-2575 car9:1879 car10:1405 car11:337 car12:499 car13:415
car14:1327 car15:469 car16_1:1-415 car16_2:415-1993 car17:1057 car18:1207
group1_1:1-1333 group1_2:1333-2515 group1_3:2515-3925 group1_4:3925-4873
group2_1:1-907 group2_2:907-1771 group2_3:1771-2683 group3_1:1-1567
group3_2:1567-2827 group3_3:2827-4369 group3_4:4369-5527 person1:799
person2_1:1-1189 person2_2:1189-2623 person3:643 person4_1:1-1501
person4_2:1501-2743 person5_1:1-877 person5_2:877-2101 person6:901
person7_1:1-1249 person7_2:1249-2065 person8_1:1-1075 person8_2:1075-1525
person9:661 person10:1021 person11:721 person12_1:1-601 person12_2:601-1621
person13:883 person14_1:1-847 person14_2:847-1813 person14_3:1813-2923
person15:1339 person16:1147 person17_1:1-1501 person17_2:1501-2347
person18:1393 person19_1:1-1243 person19_2:1243-2791 person19_3:2791-4357
person20:1783 person21:487 person22:199 person23:397 truck1:463 truck2:385
truck3:535 truck4_1:1-577 truck4_2:577-1261 uav1_1:1-1555 uav1_2:1555-2377
uav1_3:2473-3469 uav2:133 uav3:265 uav4:157 uav5:139 uav6:109 uav7:373
uav8:301 wakeboard1:421 wakeboard2:733 wakeboard3:823 wakeboard4:697
wakeboard5:1675 wakeboard6:1165 wakeboard7:199 wakeboard8:1543 wakeboard9:355
wakeboard10:469 car1_s:1475 car2_s:320 car3_s:1300 car4_s:830 person1_s:1600
person2_s:250 person3_s:505
"""

# LaSOT test split (280 = 70 classes x 4): "class:n,n,n,n".
_LASOT_TEST = """
airplane:1,9,13,15 basketball:1,6,7,11 bear:2,4,6,17 bicycle:2,7,9,18
bird:2,3,15,17 boat:3,4,12,17 book:3,10,11,19 bottle:1,12,14,18 bus:2,5,17,19
car:2,6,9,17 cat:1,3,18,20 cattle:2,7,12,13 spider:14,16,18,20 coin:3,6,7,18
crab:3,6,12,18 surfboard:4,5,8,12 cup:1,4,7,17 deer:4,8,10,14 dog:1,7,15,19
guitar:3,8,10,16 person:1,5,10,12 pig:2,10,13,18 rubicCube:1,6,14,19
swing:10,14,17,20 drone:2,7,13,15 pool:3,7,12,15 rabbit:10,13,17,19
racing:10,15,16,20 robot:1,5,8,19 sepia:6,8,13,16 sheep:3,5,7,9
skateboard:3,8,16,19 tank:6,9,14,16 tiger:4,6,12,18 train:1,7,11,20
truck:3,6,7,16 turtle:5,8,9,16 umbrella:2,9,17,19 yoyo:7,15,17,19
zebra:10,14,16,17 elephant:1,12,16,18 goldfish:3,7,8,10 hat:1,2,5,18
kite:4,6,10,15 motorcycle:1,3,9,18 mouse:1,8,9,17 flag:2,3,5,9 frog:3,4,9,20
gametarget:1,2,7,13 hand:2,3,9,16 helmet:5,11,13,19 licenseplate:6,12,13,15
electricfan:1,10,18,20 chameleon:3,6,11,20 crocodile:3,4,10,14
gecko:1,5,16,19 fox:2,3,5,20 giraffe:2,10,13,15 gorilla:4,6,9,13
hippo:1,7,9,20 horse:1,4,12,15 kangaroo:2,5,11,14 leopard:1,7,16,20
lion:1,5,12,20 lizard:1,3,6,13 microphone:2,6,14,16 monkey:3,4,9,17
shark:2,3,5,6 squirrel:8,11,13,19 volleyball:1,13,18,19
"""


def _parse_ranges(table):
  """"name:end" / "name:start-end" tokens -> {name: (start, end)} in order."""
  out = {}
  for token in table.split():
    name, span = token.rsplit(":", 1)
    start, _, end = span.rpartition("-")
    out[name] = (int(start) if start else 1, int(end))
  return out


def otb2015_sequence_names():
  """The 100 official OTB-2015 sequence names, in the toolkit's order."""
  return list(_parse_ranges(_OTB2015_RANGES))


def uav123_sequence_names():
  """The 123 official UAV123 sequence names."""
  return list(_parse_ranges(_UAV123_RANGES))


def lasot_test_names():
  """The 280 LaSOT test sequences ``<class>-<n>``."""
  names = []
  for token in _LASOT_TEST.split():
    cls, numbers = token.split(":")
    names.extend(f"{cls}-{n}" for n in numbers.split(","))
  return names


# --------------------------------------------------------------------------
# Small helpers.


def natural_key(path):
  """Sort key that orders ``2.jpg`` before ``10.jpg``."""
  return [int(t) if t.isdigit() else t.lower()
          for t in re.split(r"(\d+)", os.path.basename(path))]


def list_images(folder):
  """Image files of `folder`, sorted naturally (empty list if none)."""
  if not os.path.isdir(folder):
    return []
  files = [os.path.join(folder, f) for f in os.listdir(folder)
           if f.lower().endswith(_IMAGE_EXTENSIONS)]
  return sorted(files, key=natural_key)


def _fail(benchmark, message, sequence=None):
  where = f"[{benchmark}]" + (f" sequence {sequence!r}:" if sequence else "")
  raise BenchmarkError(f"{where} {message}")


def _read_lines(benchmark, sequence, path):
  """Lines of a text file without trailing empty lines; errors name the file."""
  if not os.path.isfile(path):
    _fail(benchmark, f"missing file {path}", sequence)
  with open(path, "r", encoding="utf-8", errors="replace") as f:
    lines = [line.strip() for line in f.read().splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  return lines


def _parse_rows(benchmark, sequence, path, widths):
  """Numeric rows of `path` split on commas, tabs or spaces (ragged)."""
  rows = []
  for number, line in enumerate(_read_lines(benchmark, sequence, path), 1):
    tokens = [t for t in re.split(r"[,\s]+", line) if t]
    try:
      values = [float(t) for t in tokens]  # "nan" / "NaN" -> NaN
    except ValueError:
      values = None
    if values is None or len(values) not in widths:
      _fail(benchmark, f"cannot parse line {number} of {path}: {line!r} "
            f"(expected {' or '.join(map(str, widths))} numbers)", sequence)
    rows.append(values)
  if not rows:
    _fail(benchmark, f"empty ground-truth file {path}", sequence)
  return rows


def read_table(benchmark, sequence, path, width=4):
  """(N, width) float64 array of a ground-truth file; errors name the line."""
  return np.asarray(_parse_rows(benchmark, sequence, path, (width,)),
                    dtype=np.float64)


def _read_flags(benchmark, sequence, path, count, pad=False):
  """0/1 flags (one per line or comma separated) as a (count,) bool array.

  With ``pad`` a shorter file is padded with False (the VOT toolkit's rule
  for tag files); otherwise the number of values must equal `count`.
  """
  flags = []
  for number, line in enumerate(_read_lines(benchmark, sequence, path), 1):
    for token in (t for t in re.split(r"[,\s]+", line) if t):
      try:
        flags.append(float(token) > 0)
      except ValueError:
        _fail(benchmark, f"cannot parse line {number} of {path}: {line!r} "
              "(expected 0/1 flags)", sequence)
  if len(flags) > count or (len(flags) < count and not pad):
    _fail(benchmark, f"{path} has {len(flags)} values for {count} frames",
          sequence)
  return np.asarray(flags + [False] * (count - len(flags)), dtype=bool)


def _check_count(benchmark, sequence, gt_path, num_rows, num_frames, what):
  if num_rows != num_frames:
    _fail(benchmark, f"{gt_path} has {num_rows} ground-truth lines but "
          f"{num_frames} frames ({what})", sequence)


def _check_initial_box(benchmark, sequence, box, gt_path, line):
  if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
    _fail(benchmark, f"initial box {box.tolist()} in {gt_path} (line {line})"
          " is NaN or has a non-positive size", sequence)


def _image_size(benchmark, sequence, path):
  """(width, height) of an image from its header."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return im.size
  except OSError as e:
    raise frames_lib.FrameError(f"[{benchmark}] sequence {sequence!r}: cannot read the "
                                f"size of frame 0 ({path}): {e}") from None


def _fit_initial_box(benchmark, sequence, boxes, frame0, gt_path, line, clip):
  """Refuses an initial box entirely outside frame 0; clips (with a warning) one partly
  outside when `clip`. `boxes` are 0-based; returns them (row 0 possibly clipped)."""
  width, height = _image_size(benchmark, sequence, frame0)
  x, y, w, h = boxes[0]
  x0, y0, x1, y1 = max(x, 0.), max(y, 0.), min(x + w, width), min(y + h, height)
  if x1 <= x0 or y1 <= y0:
    _fail(benchmark, f"initial box {boxes[0].tolist()} (0-based) in {gt_path} (line {line}) "
          f"lies entirely outside the {width}x{height} first frame {frame0}", sequence)
  if clip and (x0, y0, x1, y1) != (x, y, x + w, y + h):
    boxes = boxes.copy()
    boxes[0] = [x0, y0, x1 - x0, y1 - y0]
    logging.warning("[%s] sequence %r: initial box %s (0-based) in %s (line %d) extends "
                    "outside the %dx%d first frame: clipped to %s", benchmark, sequence,
                    [x, y, w, h], gt_path, line, width, height, boxes[0].tolist())
  return boxes


def _to_zero_based(boxes, one_based):
  boxes = np.array(boxes, dtype=np.float64)
  if one_based:
    boxes[:, :2] -= 1.0
  return boxes


def _make_sequence(benchmark, name, frames, boxes, gt_path, one_based,
                   polygons=None, absent=None, attributes=None, init_line=1):
  _check_initial_box(benchmark, name, boxes[0], gt_path, init_line)
  boxes = _fit_initial_box(benchmark, name, _to_zero_based(boxes, one_based), frames[0],
                           gt_path, init_line, clip=polygons is None)
  return Sequence(
      name=name, frames=tuple(frames),
      boxes=boxes,
      polygons=(None if polygons is None
                else _to_zero_based_polygons(polygons, one_based)),
      absent=absent, start_frame=0, one_based=one_based,
      attributes=dict(attributes or {}, benchmark=benchmark))


def _to_zero_based_polygons(polygons, one_based):
  polygons = np.array(polygons, dtype=np.float64)
  return polygons - 1.0 if one_based else polygons


def _images(benchmark, sequence, folder):
  """`list_images(folder)`, which must not be empty nor have gaps in its numbering."""
  frames = list_images(folder)
  if not frames:
    _fail(benchmark, f"no images in {folder}", sequence)
  _check_numbering(benchmark, sequence, frames)
  return frames


def _check_numbering(benchmark, sequence, frames):
  """Fails naming the first gap when every file is ``<prefix><number>.<ext>`` (one prefix
  and extension) and the numbers are not consecutive; other namings are not checked."""
  parts = [re.fullmatch(r"(.*?)(\d+)(\.[^.]+)", os.path.basename(f)) for f in frames]
  if len(frames) < 2 or not all(parts) or len({(m[1], m[3].lower()) for m in parts}) != 1:
    return
  numbers = [int(m[2]) for m in parts]
  padded = len({len(m[2]) for m in parts}) == 1
  for i in range(1, len(frames)):
    a, b = numbers[i - 1], numbers[i]
    if b == a + 1:
      continue
    before, after = os.path.basename(frames[i - 1]), os.path.basename(frames[i])
    if b == a:
      _fail(benchmark, f"{before} and {after} in {os.path.dirname(frames[i])} have the "
            "same frame number: remove one", sequence)
    name = lambda n, m=parts[i - 1]: f"{m[1]}{n:0{len(m[2]) if padded else 0}d}{m[3]}"
    missing = (name(a + 1) if b == a + 2 else
               f"{name(a + 1)} .. {name(b - 1)} ({b - a - 1} files)")
    _fail(benchmark, f"{missing} missing between {before} and {after} in "
          f"{os.path.dirname(frames[i])}: every later box would fall on the wrong frame; "
          "restore the missing frame(s)", sequence)


def _numbered_frames(benchmark, sequence, folder, start, end, digits, ext):
  """Paths ``folder/%0{digits}d.ext`` for start..end; all must exist."""
  present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
  if not present:
    _fail(benchmark, f"missing or empty frame folder {folder}", sequence)
  names = [f"{i:0{digits}d}.{ext}" for i in range(start, end + 1)]
  for number, fname in zip(range(start, end + 1), names):
    if fname not in present:
      _fail(benchmark, f"missing frame {number} "
            f"({os.path.join(folder, fname)}); the benchmark uses frames "
            f"{start}-{end}", sequence)
  return [os.path.join(folder, n) for n in names]


def _select(benchmark, available, wanted):
  """Restricts the list of names to `wanted` (error on unknown names)."""
  if wanted is None:
    return list(available)
  unknown = [w for w in wanted if w not in available]
  if unknown:
    preview = ", ".join(list(available)[:10])
    _fail(benchmark, f"unknown sequence(s) {unknown}; known: {preview}"
          f"{' ...' if len(available) > 10 else ''} ({len(available)} in all)")
  return list(wanted)


def _require_dir(benchmark, path, what):
  if not os.path.isdir(path):
    _fail(benchmark, f"missing {what} {path}")


# --------------------------------------------------------------------------
# Readers.


def _load_otb2015(root, split, wanted):
  del split
  bench = "otb2015"
  table = _parse_ranges(_OTB2015_RANGES)
  names = _select(bench, table, wanted)
  out = []
  for name in names:
    start, end = table[name]
    quirks = _OTB2015_QUIRKS.get(name, {})
    folder = os.path.join(root, quirks.get("folder", name))
    if not os.path.isdir(folder):
      _fail(bench, f"missing sequence folder {folder}", name)
    gt_path = os.path.join(folder, quirks.get("gt", "groundtruth_rect.txt"))
    gt = read_table(bench, name, gt_path)
    gt_first = quirks.get("gt_first", start)
    _check_count(bench, name, gt_path, len(gt), end - gt_first + 1,
                 f"the benchmark annotates frames {gt_first}-{end}")
    frames = _numbered_frames(bench, name, os.path.join(folder, "img"), start,
                              end, quirks.get("digits", 4),
                              quirks.get("ext", "jpg"))
    out.append(_make_sequence(
        bench, name, frames, gt[start - gt_first:], gt_path, one_based=True,
        attributes={"first_frame_number": start},
        init_line=start - gt_first + 1))
  return out


def _otb_gt_files(seq_dir):
  """[(suffix, path)]: groundtruth_rect.txt, else non-empty .k.txt files."""
  single = os.path.join(seq_dir, "groundtruth_rect.txt")
  if os.path.isfile(single):
    return [("", single)]
  multi = sorted(glob.glob(os.path.join(seq_dir, "groundtruth_rect.*.txt")),
                 key=natural_key)
  return [("-" + os.path.basename(p).split(".")[1], p) for p in multi
          if os.path.getsize(p) > 0]


def _load_otb(root, split, wanted):
  del split
  bench = "otb"
  folders = sorted((d for d in os.listdir(root)
                    if os.path.isdir(os.path.join(root, d, "img"))),
                   key=natural_key)
  entries = {}
  for folder in folders:
    gt_files = _otb_gt_files(os.path.join(root, folder))
    if not gt_files and (wanted is None or folder in wanted):
      _fail(bench, "no groundtruth_rect.txt (or non-empty groundtruth_rect.k"
            f".txt) in {os.path.join(root, folder)}", folder)
    for suffix, gt_path in gt_files:
      entries[folder + suffix] = (folder, gt_path)
  for name in wanted or ():
    seq_dir = os.path.join(root, name)
    if name not in entries and not os.path.isdir(seq_dir):
      _fail(bench, f"missing sequence folder {seq_dir}", name)
    if name not in entries and not os.path.isdir(os.path.join(seq_dir, "img")):
      _fail(bench, f"no img/ folder in {seq_dir}", name)
  names = _select(bench, entries, wanted)
  out = []
  for name in names:
    folder, gt_path = entries[name]
    frames = _images(bench, name, os.path.join(root, folder, "img"))
    gt = read_table(bench, name, gt_path)
    if len(gt) != len(frames):
      hint = (" -- an official OTB-2015 sequence: use --benchmark otb2015, "
              "which knows its frame range" if name in _parse_ranges(
                  _OTB2015_RANGES) else "")
      _check_count(bench, name, gt_path, len(gt), len(frames),
                   f"images in {os.path.join(root, folder, 'img')}{hint}")
    out.append(_make_sequence(bench, name, frames, gt, gt_path,
                              one_based=True))
  return out


def _read_vot_sequence_file(path):
  props = {}
  with open(path, "r", encoding="utf-8") as f:
    for line in f:
      key, sep, value = line.strip().partition("=")
      if sep:
        props[key.strip()] = value.strip()
  return props


def _vot_frames(bench, name, seq_dir, count):
  """Frame paths of a VOT sequence (sequence file, color/ or flat)."""
  meta_path = os.path.join(seq_dir, "sequence")
  if os.path.isfile(meta_path):
    props = _read_vot_sequence_file(meta_path)
    pattern = props.get("channels.color")
    if pattern:
      length = int(props.get("length", count))
      frames = [os.path.join(seq_dir, pattern % (i + 1)) for i in range(length)]
      missing = [f for f in frames if not os.path.isfile(f)]
      if missing:
        _fail(bench, f"missing frame {missing[0]} (pattern {pattern!r} from "
              f"{meta_path})", name)
      return frames, f"{length} frames named by {meta_path}"
  color = os.path.join(seq_dir, "color")
  frames = list_images(color) or list_images(seq_dir)
  where = color if os.path.isdir(color) else seq_dir
  if not frames:
    _fail(bench, f"no frames in {where}", name)
  _check_numbering(bench, name, frames)
  return frames, f"images in {where}"


def _polygon_hull(polygon):
  """Axis-aligned ``[x, y, w, h]`` around ``x1, y1, ..., x4, y4``."""
  xs, ys = polygon[0::2], polygon[1::2]
  return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _rect_polygon(rect):
  """The four corners of ``[x, y, w, h]`` (clockwise from top-left)."""
  x, y, w, h = rect
  return [x, y, x + w, y, x + w, y + h, x, y + h]


def _read_list(bench, path):
  if not os.path.isfile(path):
    _fail(bench, f"missing sequence list {path}")
  with open(path, "r", encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def _make_vot_loader(bench):
  def load(root, split, wanted):
    del split
    names = _select(bench, _read_list(bench, os.path.join(root, "list.txt")),
                    wanted)
    out = []
    for name in names:
      seq_dir = os.path.join(root, name)
      if not os.path.isdir(seq_dir):
        _fail(bench, f"missing sequence folder {seq_dir} (listed in "
              f"{os.path.join(root, 'list.txt')})", name)
      gt_path = os.path.join(seq_dir, "groundtruth.txt")
      # Rows are 8-value polygons or 4-value rectangles (may be mixed).
      rows = _parse_rows(bench, name, gt_path, (4, 8))
      frames, what = _vot_frames(bench, name, seq_dir, len(rows))
      _check_count(bench, name, gt_path, len(rows), len(frames), what)
      polygons = np.asarray([r if len(r) == 8 else _rect_polygon(r)
                             for r in rows], dtype=np.float64)
      boxes = np.asarray([_polygon_hull(r) if len(r) == 8 else r
                          for r in rows], dtype=np.float64)
      tags = {}
      for tag_path in sorted(glob.glob(os.path.join(seq_dir, "*.tag")) +
                             glob.glob(os.path.join(seq_dir, "*.label"))):
        tag = os.path.splitext(os.path.basename(tag_path))[0]
        tags[tag] = _read_flags(bench, name, tag_path, len(frames), pad=True)
      # vot-toolkit scores a 4-number row as a rectangle (x .. x + w - 1),
      # not as the polygon above (x .. x + w): runner.vot_ground_truth.
      rectangles = np.array([len(r) == 4 for r in rows])
      out.append(_make_sequence(bench, name, frames, boxes, gt_path,
                                one_based=False, polygons=polygons,
                                attributes={"tags": tags,
                                            "rectangle_rows": rectangles}))
    return out
  return load


def _read_nfs_annotation(bench, name, path):
  """VATIC rows -> (xywh boxes, lost, occluded)."""
  lines = _read_lines(bench, name, path)
  boxes, lost, occluded = [], [], []
  for number, line in enumerate(lines, start=1):
    tokens = line.split()
    try:
      x0, y0, x1, y1 = (float(t) for t in tokens[1:5])
      flags = [int(float(t)) for t in tokens[6:8]] if len(tokens) >= 8 else [
          0, 0]
    except ValueError:
      tokens = ()
    if len(tokens) < 5:
      _fail(bench, f"cannot parse line {number} of {path}: {line!r} (expected "
            "'id xmin ymin xmax ymax frame lost occluded generated label')",
            name)
    boxes.append([x0, y0, x1 - x0, y1 - y0])
    lost.append(flags[0] > 0)
    occluded.append(flags[1] > 0)
  if not boxes:
    _fail(bench, f"empty ground-truth file {path}", name)
  return (np.asarray(boxes, np.float64), np.asarray(lost, bool),
          np.asarray(occluded, bool))


def _load_nfs30(root, split, wanted):
  del split
  bench = "nfs30"
  available = sorted((d for d in os.listdir(root)
                      if os.path.isdir(os.path.join(root, d, "30"))),
                     key=natural_key)
  if wanted is not None:
    for name in wanted:
      if not os.path.isdir(os.path.join(root, name, "30")):
        _fail(bench, "missing sequence folder "
              f"{os.path.join(root, name, '30')}", name)
  names = _select(bench, available, wanted)
  out = []
  for name in names:
    base = os.path.join(root, name, "30")
    frames = _images(bench, name, os.path.join(base, name))
    gt_path = os.path.join(base, name + ".txt")
    boxes, lost, occluded = _read_nfs_annotation(bench, name, gt_path)
    if len(boxes) != len(frames) and abs(len(boxes) / len(frames) - 8) < 1:
      # A 240 fps annotation: the 30 fps frames are every 8th one.
      boxes, lost, occluded = boxes[::8], lost[::8], occluded[::8]
    if abs(len(boxes) - len(frames)) == 1:
      # NfS 30 fps folders are off by one frame against the subsampled rows.
      n = min(len(boxes), len(frames))
      boxes, lost, occluded, frames = boxes[:n], lost[:n], occluded[:n], \
          frames[:n]
    _check_count(bench, name, gt_path, len(boxes), len(frames),
                 f"images in {os.path.join(base, name)}")
    out.append(_make_sequence(bench, name, frames, boxes, gt_path,
                              one_based=False, absent=lost,
                              attributes={"occluded": occluded}))
  return out


def _load_uav123(root, split, wanted):
  del split
  bench = "uav123"
  table = _parse_ranges(_UAV123_RANGES)
  names = _select(bench, table, wanted)
  out = []
  for name in names:
    start, end = table[name]
    # bird1_2 etc. are frame ranges of the shared folder bird1.
    folder = name.rpartition("_")[0] if re.fullmatch(r".+_\d+", name) else name
    img_dir = os.path.join(root, "data_seq", "UAV123", folder)
    if not os.path.isdir(img_dir):
      _fail(bench, f"missing sequence folder {img_dir}", name)
    gt_path = os.path.join(root, "anno", "UAV123", name + ".txt")
    gt = read_table(bench, name, gt_path)
    _check_count(bench, name, gt_path, len(gt), end - start + 1,
                 f"the benchmark uses frames {start}-{end} of {img_dir}")
    frames = _numbered_frames(bench, name, img_dir, start, end, 6, "jpg")
    out.append(_make_sequence(
        bench, name, frames, gt, gt_path, one_based=True,
        absent=~np.all(np.isfinite(gt), axis=1),
        attributes={"first_frame_number": start}))
  return out


def _load_lasot(root, split, wanted):
  bench = "lasot"
  split = split or "test"
  if split not in ("test", "train"):
    _fail(bench, f"unknown split {split!r} (test or train)")
  list_file = os.path.join(
      root, "testing_set.txt" if split == "test" else "training_set.txt")
  if os.path.isfile(list_file):
    available = _read_list(bench, list_file)
  elif split == "test":
    available = lasot_test_names()
  else:
    _fail(bench, f"missing sequence list {list_file}")
  names = _select(bench, available, wanted)
  out = []
  for name in names:
    seq_dir = os.path.join(root, name.rpartition("-")[0], name)
    if not os.path.isdir(seq_dir):
      _fail(bench, f"missing sequence folder {seq_dir}", name)
    frames = _images(bench, name, os.path.join(seq_dir, "img"))
    gt_path = os.path.join(seq_dir, "groundtruth.txt")
    gt = read_table(bench, name, gt_path)
    _check_count(bench, name, gt_path, len(gt), len(frames),
                 f"images in {os.path.join(seq_dir, 'img')}")
    occlusion = _read_flags(bench, name,
                            os.path.join(seq_dir, "full_occlusion.txt"),
                            len(frames))
    out_of_view = _read_flags(bench, name,
                              os.path.join(seq_dir, "out_of_view.txt"),
                              len(frames))
    out.append(_make_sequence(
        bench, name, frames, gt, gt_path, one_based=True,
        absent=occlusion | out_of_view,
        attributes={"full_occlusion": occlusion, "out_of_view": out_of_view}))
  return out


def _first_box_only(gt, num_frames):
  boxes = np.full((num_frames, 4), np.nan)
  boxes[0] = gt[0]
  return boxes


def _load_trackingnet(root, split, wanted):
  bench = "trackingnet"
  split = split or "TEST"
  if split != "TEST" and not re.fullmatch(r"TRAIN_\d+", split):
    _fail(bench, f"unknown split {split!r} (TEST or TRAIN_k)")
  anno_dir = os.path.join(root, split, "anno")
  _require_dir(bench, anno_dir, f"{split} annotation folder")
  available = sorted((os.path.splitext(f)[0] for f in os.listdir(anno_dir)
                      if f.endswith(".txt")), key=natural_key)
  names = _select(bench, available, wanted)
  out = []
  for name in names:
    frame_dir = os.path.join(root, split, "frames", name)
    if not os.path.isdir(frame_dir):
      _fail(bench, f"missing sequence folder {frame_dir}", name)
    frames = _images(bench, name, frame_dir)
    gt_path = os.path.join(anno_dir, name + ".txt")
    gt = read_table(bench, name, gt_path)
    if split == "TEST":
      boxes = _first_box_only(gt, len(frames))
    else:
      _check_count(bench, name, gt_path, len(gt), len(frames),
                   f"images in {frame_dir}")
      boxes = gt
    out.append(_make_sequence(bench, name, frames, boxes, gt_path,
                              one_based=False, attributes={"split": split}))
  return out


def _load_got10k(root, split, wanted):
  bench = "got10k"
  split = split or "test"
  if split not in ("test", "val"):
    _fail(bench, f"unknown split {split!r} (test or val)")
  split_dir = os.path.join(root, split)
  names = _select(bench, _read_list(bench, os.path.join(split_dir, "list.txt")),
                  wanted)
  out = []
  for name in names:
    seq_dir = os.path.join(split_dir, name)
    if not os.path.isdir(seq_dir):
      _fail(bench, f"missing sequence folder {seq_dir}", name)
    frames = _images(bench, name, seq_dir)
    gt_path = os.path.join(seq_dir, "groundtruth.txt")
    gt = read_table(bench, name, gt_path)
    absent, attributes = None, {"split": split}
    if split == "test":
      boxes = _first_box_only(gt, len(frames))
    else:
      _check_count(bench, name, gt_path, len(gt), len(frames),
                   f"images in {seq_dir}")
      boxes = gt
      absence = os.path.join(seq_dir, "absence.label")
      if os.path.isfile(absence):
        absent = _read_flags(bench, name, absence, len(frames))
      cover = os.path.join(seq_dir, "cover.label")
      if os.path.isfile(cover):
        attributes["cover"] = read_table(
            bench, name, cover, width=1)[:, 0].astype(np.int32)
    out.append(_make_sequence(bench, name, frames, boxes, gt_path,
                              one_based=False, absent=absent,
                              attributes=attributes))
  return out


_LOADERS = {
    "otb2015": _load_otb2015,
    "otb": _load_otb,
    "vot2018": _make_vot_loader("vot2018"),
    "vot2019": _make_vot_loader("vot2019"),
    "vot": _make_vot_loader("vot"),
    "nfs30": _load_nfs30,
    "uav123": _load_uav123,
    "lasot": _load_lasot,
    "trackingnet": _load_trackingnet,
    "got10k": _load_got10k,
}
# The layout family each benchmark name belongs to (what `detect_layout` says).
_FAMILY = {"otb2015": "otb", "vot2018": "vot", "vot2019": "vot"}

KNOWN_BENCHMARKS = tuple(_LOADERS)


# --------------------------------------------------------------------------
# Layout detection.


def _subdirs(root):
  return [d for d in sorted(os.listdir(root))
          if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")]


def _matches(family, root):
  """Whether `root` has the marker files of a layout family."""
  j = os.path.join
  if family == "got10k":
    return any(os.path.isfile(j(root, s, "list.txt")) for s in ("val", "test"))
  if family == "trackingnet":
    return any(os.path.isdir(j(root, d, "anno")) and
               (d == "TEST" or d.startswith("TRAIN_")) for d in _subdirs(root))
  if family == "uav123":
    return os.path.isdir(j(root, "data_seq", "UAV123")) and os.path.isdir(
        j(root, "anno", "UAV123"))
  if family == "vot":
    return os.path.isfile(j(root, "list.txt")) and any(
        os.path.isfile(j(root, d, "groundtruth.txt")) for d in _subdirs(root))
  if family == "lasot":
    return any(os.path.isfile(j(root, c, d, "groundtruth.txt"))
               and os.path.isdir(j(root, c, d, "img"))
               for c in _subdirs(root) for d in _subdirs(j(root, c))
               if d.startswith(c + "-"))
  if family == "nfs30":
    return any(os.path.isfile(j(root, d, "30", d + ".txt"))
               for d in _subdirs(root))
  if family == "otb":
    return any(os.path.isdir(j(root, d, "img")) and _otb_gt_files(j(root, d))
               for d in _subdirs(root))
  raise KeyError(family)


_DETECTION_ORDER = ("got10k", "trackingnet", "uav123", "vot", "lasot", "nfs30",
                    "otb")


def detect_layout(root):
  """Names the layout family of folder `root`, or None if none matches.

  Returns one of ``got10k``, ``trackingnet``, ``uav123``, ``vot`` (the layout
  of ``vot2018`` / ``vot2019``), ``lasot``, ``nfs30``, ``otb`` (also the
  layout of ``otb2015``); each is a valid `load_benchmark` name.
  """
  if not os.path.isdir(root):
    return None
  for family in _DETECTION_ORDER:
    if _matches(family, root):
      return family
  return None


def load_benchmark(name, root, split=None, sequences=None):
  """Reads a benchmark's sequences (frame paths and 0-based ground truth).

  Args:
    name: one of `KNOWN_BENCHMARKS` (see the module docstring's table).
    root: the benchmark's folder.
    split: ``test``/``val`` for GOT-10k (default ``test``), ``TEST`` /
      ``TRAIN_k`` for TrackingNet (default ``TEST``), ``test``/``train`` for
      LaSOT (default ``test``); ignored by the others.
    sequences: optional list of sequence names to load (in that order).

  Returns:
    list of `Sequence`.

  Raises:
    BenchmarkError: unknown name, missing root / list / folder / file, a
      layout that does not match `name`, unparsable or inconsistent ground
      truth, or an invalid initial box. Messages name the benchmark, sequence
      and file (and line where one is at fault).
  """
  if name not in _LOADERS:
    raise BenchmarkError(f"unknown benchmark {name!r}; known benchmarks: "
                         f"{', '.join(KNOWN_BENCHMARKS)}")
  root = os.fspath(root)
  if not os.path.isdir(root):
    _fail(name, f"dataset root {root} does not exist or is not a folder")
  family = _FAMILY.get(name, name)
  if not _matches(family, root):
    detected = detect_layout(root)
    if detected:
      hint = (f"it looks like the {detected!r} layout: pass --benchmark "
              f"{detected}")
    else:
      hint = ("it matches no known benchmark layout (see the layout table in "
              "duml_jax/data/benchmarks.py)")
    if family == "got10k" and os.path.isfile(os.path.join(root, "list.txt")):
      hint = (f"{root} looks like one GOT-10k split folder: pass its parent "
              "(the folder holding val/ and test/) and --split")
    _fail(name, f"{root} does not have the {name} layout; {hint}")
  return _LOADERS[name](root, split, sequences)


def as_one_based(boxes):
  """0-based ``[x, y, w, h]`` -> the 1-based convention (result writers)."""
  boxes = np.array(boxes, dtype=np.float64)
  boxes[..., :2] += 1.0
  return boxes


__all__ = ["BenchmarkError", "KNOWN_BENCHMARKS", "detect_layout",
           "load_benchmark", "list_images", "natural_key", "read_table",
           "otb2015_sequence_names", "uav123_sequence_names",
           "lasot_test_names", "as_one_based"]
