"""Bad input gives an error a person can act on, never a silent wrong answer (issue 25).

One test per fault: evaluate.py / train.py command lines on small OTB-layout folders made
here (5 frames of 96x72), each asserting the exit status (2: a user error, printed as one
line naming the file / frame / key, no traceback) and the message. The command lines run
in one subprocess per script (`tests/cli_cases.py`: jax imported once; the scripts' absl
flags clash inside pytest). Library-level checks (clipping, umask, settings records,
requirements) run in-process.
"""
import ast
import importlib.metadata
import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from duml_jax import errors
from duml_jax.data import benchmarks
from duml_jax.data import frames as frames_lib
from duml_jax.evaluation import provenance
from duml_jax.evaluation import runner
from duml_jax.evaluation import writers
from tests import jax_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
W, H, N = 96, 72, 5
BOX = "30,20,24,18"             # 1-based x,y,w,h of every ground-truth row
TINY = "--config=configs/duml.py:tiny"


def _frame(i, size=(W, H)):
  img = np.full((size[1], size[0], 3), 60 + 20 * i, np.uint8)
  cv2.rectangle(img, (29 + i, 19), (52 + i, 36), (250, 200, 40), -1)
  return img


def _otb(root, name="Seq", numbers=range(1, N + 1), rows=N, first=BOX, sizes=None):
  """An OTB-layout folder root/name with frames `numbers` (%04d.jpg) and `rows` gt lines."""
  img = root / name / "img"
  img.mkdir(parents=True)
  for k, n in enumerate(numbers):
    cv2.imwrite(str(img / f"{n:04d}.jpg"), _frame(k, (sizes or {}).get(n, (W, H))))
  (root / name / "groundtruth_rect.txt").write_text(
      "\n".join([first] + [BOX] * (rows - 1)) + "\n")
  return root


def _run_cases(cases, tmp):
  """{name: {"rc", "stdout", "stderr"}} of command lines run by tests/cli_cases.py."""
  names = list(cases)
  spec = tmp / f"cases_{names[0]}.json"
  out = tmp / f"results_{names[0]}.json"
  spec.write_text(json.dumps([cases[n] for n in names]))
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **jax_cache.ENV)
  env.pop("DUML_TRACEBACK", None)
  res = subprocess.run([sys.executable, "tests/cli_cases.py", str(spec), str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env=env)
  assert res.returncode == 0, res.stderr[-3000:]
  return dict(zip(names, json.loads(out.read_text())))


def _case(*argv, env=None):
  return {"argv": list(argv), "env": env or {}}


def _user_error(result, *needles):
  """Exit status 2, one 'error:' line holding every needle, no traceback."""
  assert result["rc"] == 2, result["stderr"][-3000:]
  assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
  lines = [l for l in result["stderr"].splitlines() if ": error: " in l]
  assert len(lines) == 1, result["stderr"][-3000:]
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The folders of every evaluate.py case."""
  t = tmp_path_factory.mktemp("bad_input")
  d = {"tmp": t}
  d["ok"] = _otb(t / "ok")
  d["trunc"] = _otb(t / "trunc")
  jpg = d["trunc"] / "Seq" / "img" / "0003.jpg"
  jpg.write_bytes(jpg.read_bytes()[:jpg.stat().st_size // 2])
  d["outside"] = _otb(t / "outside", first="200,150,20,10")
  d["sizes"] = _otb(t / "sizes", sizes={4: (W + 16, H)})
  d["gap"] = _otb(t / "gap", numbers=[1, 2, 4, 5, 6], rows=N)          # counts match
  d["gap_count"] = _otb(t / "gap_count", numbers=[1, 2, 4, 5], rows=N)  # counts differ
  d["a_file"] = t / "a_file"
  d["a_file"].write_text("not a folder")
  return d


@pytest.fixture(scope="module")
def evaluate_results(data):
  t = data["tmp"]
  bench = lambda name, out, *extra: _case("evaluate.py", TINY, "--benchmark=otb",
                                          f"--dataset_dir={data[name]}",
                                          f"--output_dir={t / out}", *extra)
  video = lambda out, box, *extra: _case("evaluate.py", TINY, f"--video={data['ok'] / 'Seq/img'}",
                                         f"--init_box={box}", f"--output_dir={t / out}", *extra)
  cases = {
      "first": bench("ok", "res"),
      "same": bench("ok", "res"),
      # A tracking key the tracker's name does not show: the same result folder.
      "changed": bench("ok", "res", "--config.tracking.penalty_k=0.123"),
      "overwrite": bench("ok", "res", "--overwrite"),
      "trunc": bench("trunc", "res_trunc"),
      "trunc_traceback": _case(*bench("trunc", "res_trunc2")["argv"],
                               env={"DUML_TRACEBACK": "1"}),
      "trunc_verbose": bench("trunc", "res_trunc3", "--verbosity=1"),
      "outside": bench("outside", "res_outside"),
      "sizes": bench("sizes", "res_sizes"),
      "gap": bench("gap", "res_gap"),
      "gap_count": bench("gap_count", "res_gap_count"),
      "unknown_key": bench("ok", "res_key", "--config.tracking.nonexistent=1"),
      "nano_mu_flag": _case("evaluate.py", "--config=configs/duml_nano.py:nanotrack",
                            "--config.tracking.mu=0.5", "--benchmark=otb",
                            f"--dataset_dir={data['ok']}", f"--output_dir={t / 'res_nano'}"),
      "nano_mu_arg": _case("evaluate.py", "--config=configs/duml_nano.py:nanotrack,mu=0.5",
                           "--benchmark=otb", f"--dataset_dir={data['ok']}",
                           f"--output_dir={t / 'res_nano'}"),
      "output_is_file": bench("ok", "a_file"),
      "output_under_file": bench("ok", "a_file/sub"),
      "output_read_only": _case("evaluate.py", TINY, "--benchmark=otb",
                                f"--dataset_dir={data['ok']}", "--output_dir=/sys/duml_out"),
      "missing_checkpoint": _case(*bench("ok", "res_ckpt")["argv"],
                                  f"--checkpoint={t / 'no_such_workdir'}"),
      "init_box_letters": video("vid_letters", "a,b,c,d"),
      "init_box_outside": video("vid_outside", "300,200,10,10"),
      "video_ok": video("vid_ok", "29,19,24,18"),
  }
  return _run_cases(cases, t)


# ------------------------------------------------------------ one test per fault ----


def test_rerun_with_other_settings_is_refused_same_settings_resume(evaluate_results, data):
  r = evaluate_results
  assert r["first"]["rc"] == 0, r["first"]["stderr"][-3000:]
  folder = data["tmp"] / "res" / "DuML-tiny-OFC-5s+ONR-mu0.8-vote"
  record = json.loads((folder / "settings.json").read_text())
  penalty_k = record["config"]["tracking"]["penalty_k"]
  assert penalty_k != 0.123 and record["code_version"] and record["variables_sha256"]
  # The same settings: every sequence skipped.
  assert r["same"]["rc"] == 0 and "1/1 sequences already done, skipped" in r["same"]["stderr"]
  # Other settings (same tracker name): refused, naming both values and --overwrite.
  _user_error(r["changed"], str(folder), f"tracking.penalty_k={penalty_k!r} there, 0.123 now",
              "--overwrite")
  # --overwrite tracks again instead of skipping (replacing other settings: the
  # provenance test below).
  assert r["overwrite"]["rc"] == 0, r["overwrite"]["stderr"][-3000:]
  assert "already done" not in r["overwrite"]["stderr"]
  assert (folder / "Seq.txt").exists()


def test_result_table_printed_once(evaluate_results):
  out = evaluate_results["first"]["stdout"] + evaluate_results["first"]["stderr"]
  assert len(re.findall(r"^Tracker\s+AUC", out, re.M)) == 1, out[-3000:]


def test_truncated_jpeg_names_sequence_frame_and_file(evaluate_results, data):
  path = data["trunc"] / "Seq" / "img" / "0003.jpg"
  _user_error(evaluate_results["trunc"], "truncated JPEG", str(path), "sequence 'Seq'",
              "frame 2")
  # DUML_TRACEBACK=1 or --verbosity=1 shows the traceback of the same user error.
  for tb in (evaluate_results["trunc_traceback"], evaluate_results["trunc_verbose"]):
    assert tb["rc"] != 0 and "Traceback" in tb["stderr"] and "FrameError" in tb["stderr"]


def test_first_box_outside_the_image_names_file_and_line(evaluate_results, data):
  gt = data["outside"] / "Seq" / "groundtruth_rect.txt"
  _user_error(evaluate_results["outside"], str(gt), "(line 1)", "entirely outside",
              f"{W}x{H}")


def test_first_box_partly_outside_is_clipped_with_a_warning(tmp_path, caplog):
  _otb(tmp_path, first="80,60,30,20")          # 1-based: spans x 79..109 of 96, y 59..79 of 72
  with caplog.at_level(logging.WARNING):
    (seq,) = benchmarks.load_benchmark("otb", tmp_path)
  np.testing.assert_array_equal(seq.boxes[0], [79, 59, W - 79, H - 59])
  assert any("clipped" in r.getMessage() and "groundtruth_rect.txt (line 1)" in r.getMessage()
             for r in caplog.records)


def test_frames_of_different_sizes_name_the_first_that_differs(evaluate_results, data):
  _user_error(evaluate_results["sizes"], str(data["sizes"] / "Seq" / "img" / "0004.jpg"),
              "frame 3", f"is {W + 16}x{H}", f"is {W}x{H}")


def test_missing_frame_names_the_gap(evaluate_results):
  gap = "0003.jpg missing between 0002.jpg and 0004.jpg"
  _user_error(evaluate_results["gap_count"], "sequence 'Seq'", gap)
  _user_error(evaluate_results["gap"], "sequence 'Seq'", gap)   # even with matching counts


def test_unknown_config_key_is_one_line_naming_key_preset_and_nearby_keys(evaluate_results):
  line = _user_error(evaluate_results["unknown_key"], "--config.tracking.nonexistent",
                     "configs/duml.py:tiny", "nearby keys: tracking.")
  assert "AttributeError" not in evaluate_results["unknown_key"]["stderr"]
  assert len(line) < 400
  _user_error(evaluate_results["nano_mu_flag"], "no key 'mu'", "configs/duml_nano.py:nanotrack",
              "tracking.crop")
  _user_error(evaluate_results["nano_mu_arg"], "'mu' does not apply to the 'nanotrack' preset")


def test_unusable_output_dir_is_refused_before_any_work(evaluate_results, data):
  _user_error(evaluate_results["output_is_file"], "--output_dir=", "is a file, not a folder")
  _user_error(evaluate_results["output_under_file"], str(data["a_file"]), "is a file")
  for r in (evaluate_results["output_is_file"], evaluate_results["output_under_file"]):
    assert "evaluating" not in r["stderr"]           # refused before the model was built
  try:
    tempfile.TemporaryFile(dir="/sys").close()
    sys_writable = True
  except OSError:
    sys_writable = False
  if not sys_writable:      # /sys refuses files even to root: a read-only folder for anyone
    _user_error(evaluate_results["output_read_only"], "--output_dir=/sys/duml_out",
                "cannot write in /sys")
  assert not os.path.exists("/sys/duml_out")


def test_missing_checkpoint_is_named_and_not_created(evaluate_results, data):
  _user_error(evaluate_results["missing_checkpoint"], str(data["tmp"] / "no_such_workdir"),
              "train.py workdir")
  assert not (data["tmp"] / "no_such_workdir").exists()


def test_init_box_that_is_not_numbers_is_a_usage_error(evaluate_results):
  _user_error(evaluate_results["init_box_letters"], "--init_box=a,b,c,d", "four numbers")


def test_video_init_box_outside_fails_and_leaves_no_folder(evaluate_results, data):
  _user_error(evaluate_results["init_box_outside"], "--init_box", "entirely outside")
  assert not (data["tmp"] / "vid_outside").exists()
  assert not (data["tmp"] / "vid_letters").exists()
  ok = evaluate_results["video_ok"]
  assert ok["rc"] == 0, ok["stderr"][-3000:]
  assert np.loadtxt(data["tmp"] / "vid_ok" / "img_duml.txt", delimiter=",").shape == (N, 4)


def test_train_py_bad_workdir_and_unknown_key(tmp_path):
  (tmp_path / "file").write_text("x")
  r = _run_cases({
      "workdir": _case("train.py", TINY, f"--workdir={tmp_path / 'file' / 'run'}"),
      "key": _case("train.py", TINY, "--config.optim.nonexistent_lr=1",
                   f"--workdir={tmp_path / 'run'}"),
      "bad_value": _case("train.py", TINY, "--config.model.offline=OFX",
                         f"--workdir={tmp_path / 'run2'}"),
  }, tmp_path)
  _user_error(r["workdir"], "--workdir=", "is a file")
  _user_error(r["key"], "--config.optim.nonexistent_lr", "configs/duml.py:tiny")
  _user_error(r["bad_value"], "model.offline='OFX'")
  assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


# ------------------------------------------------------------------ library level ----


def test_frame_reader_refuses_truncated_jpeg(tmp_path):
  path = tmp_path / "0001.jpg"
  cv2.imwrite(str(path), _frame(0))
  assert frames_lib.read_frame(str(path)).shape == (H, W, 3)
  data = path.read_bytes()
  path.write_bytes(data + b"\0" * 16)                  # padding after the end marker is fine
  assert frames_lib.read_frame(str(path)).shape == (H, W, 3)
  path.write_bytes(data[:-200])
  with pytest.raises(frames_lib.FrameError, match=r"truncated JPEG .*0001.jpg \(sequence 'S', "
                     r"frame 7\)"):
    frames_lib.read_frame(str(path), "S", 7)
  assert issubclass(frames_lib.FrameError, errors.UserError)


def test_settings_record_names_the_difference(tmp_path):
  old = {"config_sha256": "a" * 64, "variables_sha256": "b" * 64, "code_version": "c1",
         "checkpoint": "/w", "checkpoint_step": 1800, "config": {"tracking": {"mu": 0.8}}}
  folder = tmp_path / "T"
  provenance.prepare(str(folder), old)
  (folder / "Seq.txt").write_text("1,2,3,4\n")
  provenance.prepare(str(folder), dict(old))                      # same: resumes, keeps files
  assert (folder / "Seq.txt").exists()
  provenance.prepare(str(folder), dict(old, code_version="c0"))   # a new commit alone resumes
  assert (folder / "Seq.txt").exists()
  new = dict(old, variables_sha256="d" * 64, checkpoint_step=1300, code_version="c2")
  with pytest.raises(errors.SettingsMismatchError) as e:
    provenance.prepare(str(folder), new)
  assert "step 1800" in str(e.value) and "step 1300" in str(e.value)
  assert "code c1 there, c2 now" in str(e.value)
  provenance.prepare(str(folder), new, overwrite="stale")         # replaced
  assert not (folder / "Seq.txt").exists() and provenance.read(str(folder)) == new
  # Results from before settings were recorded are refused too.
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "Seq.txt").write_text("1,2,3,4\n")
  with pytest.raises(errors.SettingsMismatchError, match="no settings.json"):
    provenance.prepare(str(tmp_path / "old"), new)


def test_result_files_follow_the_umask(tmp_path):
  old = os.umask(0o027)
  try:
    writers.write_one_pass(str(tmp_path / "T"), "Seq", np.ones((2, 4)), np.ones(2),
                           one_based=True)
    report = writers.write_report(str(tmp_path), "OTB", {"T": {"success_auc": 0.5}})
  finally:
    os.umask(old)
  assert report["trackers"]["T"]["success_auc"] == 0.5
  for path in (tmp_path / "T" / "Seq.txt", tmp_path / "T" / "times" / "Seq_time.txt",
               tmp_path / "report.json"):
    assert path.stat().st_mode & 0o777 == 0o640, path


def test_runner_refuses_a_sequence_whose_frame_size_changes(tmp_path):
  class Still:
    name, batch_size = "Still", 1

    def init(self, frames, boxes, mask):
      del frames, boxes, mask

    def update(self, frames, mask):
      del frames, mask
      return np.zeros((1, 4)), np.zeros(1)

  seq = benchmarks.load_benchmark("otb", _otb(tmp_path / "d", sizes={3: (W, H + 8)}))[0]
  with pytest.raises(frames_lib.FrameError, match=r"frame 2 \(.*0003.jpg\) is 96x80 but "
                     r"frame 0 \(.*0001.jpg\) is 96x72"):
    runner.run_one_pass(Still(), [seq], str(tmp_path / "out"))


# ------------------------------------------------------------------ requirements ----

# Imported only by tests or by tools README's install does not cover (documented there).
# Test-only and optional: the converters' torch, the toolkits, the ONNX export's own
# requirements-export.txt (installed with --no-deps; README "Export").
_NOT_IN_REQUIREMENTS = {"torch", "got10k", "vot", "pytest", "jax2onnx", "onnxruntime"}
_SOURCES = ["duml_jax", "configs", "evaluate.py", "train.py"]


def _imports(path):
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name.split(".")[0] for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.module.split(".")[0]


def _requirements(path):
  names = set()
  for line in path.read_text().splitlines():
    line = line.split("#")[0].strip()
    if line and not line.startswith("-"):
      names.add(re.split(r"[=<>!~\[; ]", line)[0].lower().replace("_", "-"))
  return names


def _closure(dists):
  """`dists` and everything they require (not extras), as installed."""
  seen, todo = set(), list(dists)
  while todo:
    d = todo.pop()
    if d in seen:
      continue
    seen.add(d)
    try:
      reqs = importlib.metadata.requires(d) or []
    except importlib.metadata.PackageNotFoundError:
      continue
    for r in reqs:
      if "extra ==" not in r:
        todo.append(re.split(r"[=<>!~\[; (]", r.strip())[0].lower().replace("_", "-"))
  return seen


def test_every_third_party_import_is_in_requirements_txt():
  """README's install is `pip install -r requirements.txt`: what duml_jax, configs/ and the
  entry points import must come with it (onnx did not: NanoTrack's weights are ONNX graphs)."""
  provided = _closure(_requirements(ROOT / "requirements.txt"))
  by_module = importlib.metadata.packages_distributions()
  local = {"duml_jax", "configs", "evaluate", "train"}
  missing = {}
  files = [p for s in _SOURCES for p in ((ROOT / s).rglob("*.py") if (ROOT / s).is_dir()
                                         else [ROOT / s])]
  for path in files:
    for module in set(_imports(path)):
      if module in local or module in sys.stdlib_module_names or module in _NOT_IN_REQUIREMENTS:
        continue
      dists = {d.lower().replace("_", "-") for d in by_module.get(module, [module])}
      if not dists & provided:
        missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
  assert not missing, f"imported but not provided by requirements.txt: {missing}"
  assert "onnx" in _requirements(ROOT / "requirements.txt")
