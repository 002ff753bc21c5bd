"""The visualiser (`duml_jax.evaluation.visualize`) and the trackers' map-returning step.

A random tiny DuML model (mechanics, not accuracy) and, where ../shared holds
them, NanoTrack's real weights for DuML-nano, on a small synthetic OTB folder.
"""
import dataclasses
import os

from absl import app
import cv2
import jax
import numpy as np
import pytest
from PIL import Image

from configs import duml as duml_config
from duml_jax import cli
from duml_jax import errors
from duml_jax.data import benchmarks
from duml_jax.data.frames import read_frame
from duml_jax.evaluation import visualize as vis
from duml_jax.models import duml as duml_lib
from duml_jax.models import duml_nano as dn
from duml_jax.tracking import adapter
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import tracker

NUM_FRAMES = 7
BOX0 = np.array([40., 40., 30., 24.])


def _frame(t, h=120, w=160):
  """Noisy background with a bright rectangle moving right by 3 px per frame."""
  rng = np.random.default_rng(t)
  img = rng.integers(40, 90, (h, w, 3)).astype(np.uint8)
  x = 40 + 3 * t
  img[40:64, x:x + 30] = (220, 200, 60)
  return img


@pytest.fixture(scope="module")
def otb_dir(tmp_path_factory):
  """One OTB-layout sequence 'Square' (1-based ground truth) read by the project's reader."""
  root = tmp_path_factory.mktemp("otb")
  (root / "Square" / "img").mkdir(parents=True)
  rows = []
  for t in range(NUM_FRAMES):
    cv2.imwrite(str(root / "Square" / "img" / f"{t + 1:04d}.jpg"),
                cv2.cvtColor(_frame(t), cv2.COLOR_RGB2BGR))
    x, y, w, h = BOX0 + [3 * t, 0, 0, 0]
    rows.append(f"{x + 1:g},{y + 1:g},{w:g},{h:g}")
  (root / "Square" / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")
  return root


@pytest.fixture(scope="module")
def seq(otb_dir):
  return benchmarks.load_benchmark("otb", otb_dir)[0]


@pytest.fixture(scope="module")
def tiny():
  c = duml_config.get_config("tiny")
  model = duml_lib.build_model(c.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
  # Never "not found" (a random model's online peak is low) and filter steps every
  # second frame: the visualiser's refine path runs.
  tcfg = tracker.tracking_params(c, memory_size=8, num_init_samples=3, init_iters=2,
                                 update_every=2, not_found_threshold=-1e9)
  return model, variables, tcfg


def _voted_centre(view, out_box, image_wh=(160., 120.)):
  """(the centre the view's candidates and weights vote for (Eq. 4), clipped to the
  frame as the trackers clip it; the box's centre), frame pixels."""
  w = np.asarray(view["weights"], np.float64)
  cand = np.asarray(view["candidates"], np.float64)
  voted = (w[:, None] * cand).sum(0) / w.sum()
  centre = np.asarray(view["centre"]) + voted[:2] / float(view["scale_z"])
  return np.clip(centre, 0., image_wh), np.asarray(out_box[:2]) + np.asarray(out_box[2:]) / 2.


@pytest.fixture(scope="module")
def jpegs(seq):
  """The sequence's frames as read back (JPEG-compressed)."""
  return [read_frame(f) for f in seq.frames]


@pytest.fixture(scope="module")
def duml_normal(tiny, jpegs):
  """Initial state, outputs and states of frames 2..6 by `tracker.step` (track + the
  SD-GN steps due)."""
  model, variables, tcfg = tiny
  frames, sizes = adapter.pad_frames(jpegs[:6])
  state = tracker.init(model, variables, tcfg, frames[0], BOX0.astype(np.float32), sizes[0])
  s0, outs, states = state, [], []
  for f in frames[1:]:
    state, out = tracker.step(model, variables, tcfg, state, f)
    outs.append(out)
    states.append(state)
  return s0, outs, states


def test_duml_track_with_maps_is_the_normal_path(tiny, duml_normal, jpegs):
  """The visualiser's DuML step (`track_with_maps` + `refine_filter`) = `tracker.step`."""
  model, variables, tcfg = tiny
  s0, outs, states = duml_normal
  stepper = vis.duml_stepper(model, variables, tcfg)
  state = s0
  for t in range(1, 5):
    state, out = stepper.step(state, jpegs[t])
    view = out.pop("view")
    # Two jitted programs (fusions differ): float32 agreement, ~1e-3 px after four frames.
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3),
                 (states[t - 1], outs[t - 1]), (state, out))
    # The maps are the ones the box came from: the voted candidates give its centre,
    # the arg-max index lies in the fused map.
    voted, centre = _voted_centre(view, out["box"])
    np.testing.assert_allclose(voted, centre, atol=1e-3)
    s = view["fused"].shape
    assert view["accurate"].shape == s and 0 <= int(view["best"]) < np.prod(s)
    assert view["candidates"].shape == (np.prod(s), 4) and np.all(view["weights"] >= 0)
    assert view["robust"].shape[:2] == s[:2] and view["online_raw"].shape == view["robust"].shape
  assert sum(int(o["iters"]) > 0 for o in outs[:4]) >= 2     # refine_filter ran


def test_frame_numbers_and_errors():
  assert vis.frame_numbers(10) == list(range(1, 11))
  assert vis.frame_numbers(10, "3:8", 2) == [3, 5, 7]
  assert vis.frame_numbers(10, "4:", 3) == [4, 7, 10]
  assert vis.frame_numbers(10, "5") == [5]
  for bad in ("0:3", "3:11", "8:3", "a:b", "1:2:3"):
    with pytest.raises(vis.VisualiseError, match="--frames"):
      vis.frame_numbers(10, bad)
  with pytest.raises(vis.VisualiseError, match="--every"):
    vis.frame_numbers(10, None, 0)


def _check_written(res, out_dir, seq_name, numbers):
  names = sorted(os.listdir(out_dir / seq_name))
  assert names == [f"{k:04d}.png" for k in numbers]
  for p in res.pngs:
    img = cv2.imread(p)
    assert img.shape == (vis.PANEL_H, vis.PANEL_W, 3)
  assert res.mp4 == str(out_dir / f"{seq_name}.mp4")
  assert vis.count_video_frames(res.mp4) == len(numbers)


def test_duml_visualiser_writes_panels_and_mp4(tiny, duml_normal, seq, tmp_path):
  model, variables, tcfg = tiny
  stepper = vis.duml_stepper(model, variables, tcfg)
  lines = []
  res = vis.visualise_sequence(stepper, seq, tmp_path, frames="1:5", every=2,
                               progress=lines.append)
  _check_written(res, tmp_path, "Square", [1, 3, 5])
  assert lines and "Square" in lines[-1]
  # The same boxes as the normal path.
  want = np.array([o["box"] for o in duml_normal[1][:4]])
  np.testing.assert_allclose(res.boxes[1:], want, rtol=1e-4, atol=1e-3)
  assert res.boxes.shape == (5, 4) and res.ious[0] == pytest.approx(1.)
  # Frame 1 has no maps (init); later panels differ from it (maps drawn).
  first, third = cv2.imread(res.pngs[0]), cv2.imread(res.pngs[1])
  tiles = np.s_[:2 * vis.TILE, vis.FRAME_W:]
  assert first[tiles].std() < third[tiles].std()


def test_render_panel_boxes_land_on_the_frame_and_palette_png(tmp_path):
  """The tracked box is drawn where it is: red pixels on its edge in the frame area;
  a palette PNG keeps the panel's size and its colours within a few levels."""
  frame = np.zeros((120, 160, 3), np.uint8)
  panel = vis.render_panel(frame, None, np.array([40., 30., 40., 20.]))
  scale = vis.FRAME_W / 160           # 4; letterboxed vertically: (480 - 480) / 2 = 0
  y, x = int(30 * scale), int(60 * scale)
  r, g, b = (int(v) for v in panel[y, x])
  assert r > 200 and g < 120 and b < 120, (r, g, b)
  vis.write_png(str(tmp_path / "p.png"), panel, colors=64)
  back = cv2.cvtColor(cv2.imread(str(tmp_path / "p.png")), cv2.COLOR_BGR2RGB)
  assert back.shape == panel.shape and np.abs(back[y, x].astype(int) - panel[y, x]).max() < 40
  with Image.open(tmp_path / "p.png") as im:
    assert im.mode == "P"
  with pytest.raises(vis.VisualiseError, match="png_colors"):
    vis.write_png(str(tmp_path / "q.png"), panel, colors=300)


@pytest.fixture(scope="module")
def nano_weights(shared_dir):
  w = shared_dir / "weights" / "nanotrack"
  if not (w / "nanotrackv2.pth").is_file():
    pytest.skip(f"{w}: NanoTrack weights not found (DuML-nano needs them)")
  from duml_jax.convert import nanotrack as nano_convert  # pylint: disable=import-outside-toplevel
  return nano_convert.load_nanotrack(w, "v2")


def test_duml_nano_visualiser(nano_weights, seq, jpegs, tmp_path):
  model = dn.build("v2")
  variables = dn.from_nanotrack(nano_weights, dn.init_online_params(model, jax.random.PRNGKey(0)))
  p = dnt.params(dnt.default_config(), mu=0.8, update_every=2)
  res = vis.visualise_sequence(vis.nano_stepper(model, variables, p), seq, tmp_path,
                               frames="2:", every=2, progress=lambda s: None)
  _check_written(res, tmp_path, "Square", [2, 4, 6])
  # The normal path (the runner's tracker) gives the same boxes.
  ref = dnt.DuMLNanoTracker(model, variables, p)
  ref.init(jpegs[0], BOX0)
  want = np.array([ref.update(f)[0] for f in jpegs[1:NUM_FRAMES - 1]])
  np.testing.assert_allclose(res.boxes[1:], want, atol=1e-3)
  # And the maps are those of that box: the voted candidates give its centre.
  state = dnt.init(model, variables, p, jpegs[0], BOX0.astype(np.float32))
  _, out = dnt.track_with_maps(model, variables, p, state, jpegs[1])
  out = jax.device_get(out)
  voted, centre = _voted_centre(out["view"], out["box"])
  np.testing.assert_allclose(voted, centre, atol=1e-2)
  # At mu = 1 the fused map is the online map as Eq. 1 weighs it.
  p1 = dataclasses.replace(p, mu=1.)   # the same compiled step (mu is traced)
  _, out1 = dnt.track_with_maps(model, variables, p1, state, jpegs[1])
  np.testing.assert_allclose(out1["view"]["fused"], out1["view"]["robust"], atol=1e-6)


def test_make_stepper_of_configs(tiny):
  """evaluate.py's configs: DuML (benchmark overrides applied) and DuML-nano; NanoTrack
  alone is refused with a reason (it has no online or fused map)."""
  from configs import duml_nano as duml_nano_config  # pylint: disable=import-outside-toplevel
  _, variables, _ = tiny
  c = duml_config.get_config("tiny")
  st = vis.make_stepper(c, variables, "otb")
  want = tracker.tracking_params(c, "otb")
  assert (st.mu, st.stride) == (want.mu, want.stride) and st.name.startswith("DuML")
  with pytest.raises(vis.VisualiseError, match="no online"):
    vis.make_stepper(duml_nano_config.get_config("nanotrack"), None)


def test_init_shift_moves_the_init_box_only(tiny, seq, tmp_path):
  model, variables, tcfg = tiny
  stepper = vis.duml_stepper(model, variables, tcfg)
  res = vis.visualise_sequence(stepper, seq, tmp_path, frames="1:2", mp4=False,
                               progress=lambda s: None, init_shift=(3., -2.))
  gt = np.asarray(seq.boxes[0], np.float64)
  np.testing.assert_allclose(res.boxes[0], gt + [3., -2., 0., 0.])
  assert res.ious[0] < 1. and len(res.pngs) == 2      # scored against the unmoved box
  assert issubclass(vis.VisualiseError, errors.UserError)   # the CLI prints the message alone


def test_number_list_flags_parse_or_name_the_flag():
  # --init_shift here and evaluate.py's --init_box / --init_shift read lists through this.
  assert cli.parse_numbers(["1", "-2.5"], 2, "init_shift", "dx,dy") == (1., -2.5)
  assert cli.parse_numbers(["1", "nan"], 2, "init_shift", "dx,dy")[0] == 1.
  for bad, finite in ((["1"], False), (["1", "x"], False), (["nan", "0"], True), ([], False)):
    with pytest.raises(app.UsageError, match=r"--init_shift=.*: expected dx,dy"):
      cli.parse_numbers(bad, 2, "init_shift", "dx,dy", finite=finite)
