"""Training batches: TFDS sources -> per-index samples -> per-process batches.

Determinism and resumption: example ``g`` of the global stream is a pure
function of ``(seed, g)`` (its generator is ``np.random.default_rng([seed,
g])``) and the global batch of step ``s`` holds examples ``s * B .. s * B + B
- 1``; process ``p`` of ``P`` takes the contiguous slice ``[p * B / P, (p + 1)
* B / P)``. So a batch depends only on (seed, step, process slice), not on
worker count, thread timing or what was read before, and the iterator state
is just the step number: ``make_train_iterator(..., start_step=k)`` resumes
exactly (no grain iterator state to checkpoint). A source that is drawn but
unusable (no valid frame, unreadable file) is redrawn from the same
generator, so even the retries are reproducible; these skips are counted in
``iterator.metrics``.

Batch formats (dicts of numpy arrays; sizes from the config):

  pair:      template (B,Z,Z,3) uint8, search (B,X,X,3) uint8,
             template_box, search_box (B,4) float32 xywh in crop pixels,
             negative (B,) bool
  sequence:  support_template (B,S,Z,Z,3), support_search (B,S,X,X,3) uint8,
             support_box (B,S,4) (box in the support_search crop),
             support_template_box (B,S,4) (box in the support_template crop),
             query_search (B,Q,X,X,3) uint8, query_box (B,Q,4),
             negative (B,) bool, all False

with Z = template_size (127), X = search_size (255), S = num_support (3),
Q = num_query (2). For negative pairs `search_box` is the box of the other
video's target (the distractor) in the search crop.
"""
import collections
import os
from typing import Any, Dict, List

import grain
import ml_collections
import numpy as np

from duml_jax.data import augment
from duml_jax.data import builders
from duml_jax.data import frames as frames_lib
from duml_jax.data import sampling
from duml_jax.data import synthetic as synthetic_lib

SKIP_REASONS = ("no_valid_frame", "frame_error", "same_video_negative")
_NUM_STEPS = 2**40  # the stream is unbounded in practice; grain needs a length


def _dataset(name, root, weight, split="train", frame_range=100, tag=""):
  return ml_collections.ConfigDict(dict(name=name, root=root, weight=float(weight),
                                        split=split, frame_range=int(frame_range), tag=tag))


def default_data_config():
  """Every key the data pipeline reads, with the paper's defaults.

  datasets: the paper's training mix VID + YouTube-BB + COCO + LaSOT +
  GOT-10k (DuML section 5 / appendix D). frame_range per dataset follows
  pysot (VID 100, YouTube-BB 3, COCO 1); LaSOT and GOT-10k use 100. The
  equal weights are this project's choice (the paper does not give them).
  Roots are relative to `data_root` unless absolute; `tfds_dir` keeps the
  array_record files.
  """
  c = ml_collections.ConfigDict()
  c.mode = "pair"                    # "pair" (offline branches) or "sequence" (joint)
  c.data_root = "~/tracking_data"
  c.tfds_dir = "~/tensorflow_datasets/duml"
  c.prepare_if_missing = True        # build missing array_record files on first use
  c.datasets = [
      _dataset("imagenet_vid", "ILSVRC2015", 1.0, frame_range=100),
      _dataset("youtube_bb", "youtube_bb", 1.0, frame_range=3),
      _dataset("coco", "coco", 1.0, frame_range=1),
      _dataset("lasot", "LaSOT", 1.0, frame_range=100),
      _dataset("got10k", "GOT-10k", 1.0, frame_range=100),
  ]
  c.template_size = 127
  c.search_size = 255
  c.context = 0.5
  c.neg_prob = 0.2
  c.num_support = 3
  c.num_query = 2
  c.max_gap = 30
  c.template_aug = augment.template_aug_defaults()
  c.search_aug = augment.search_aug_defaults()
  c.synthetic = ml_collections.ConfigDict(dict(
      # procedural: render each drawn video on demand (seeds first_seed ..
      # first_seed + num_videos - 1, no files) instead of a written TFDS set.
      procedural=False, jpeg_quality=92,
      # noise: "exact" (fresh normals per frame, as every written and evaluation
      # sequence) or "bank" (procedural only: windows of one noise field, ~1/3
      # less CPU per batch; `synthetic.make_noise_bank`).
      noise="exact",
      num_videos=1000, first_seed=0, num_frames=100, height=256, width=256,
      difficulty=ml_collections.ConfigDict(dict(
          object_size=(0.12, 0.35), speed=0.015, num_distractors=(0, 2),
          occlusion_prob=0.3, blur=True))))
  c.max_retries = 20                 # redraws before a sample is declared impossible
  c.num_workers = 4                  # grain worker processes (0: in-process)
  c.num_threads = 2                  # grain reader threads (per process or worker)
  c.prefetch = 4                     # batches prefetched by the reader threads
  return c


def synthetic_dataset(root, weight=1.0, frame_range=100, tag=""):
  """A `datasets` entry for the generated videos (JPEGs go under `root`)."""
  return _dataset("synthetic", root, weight, frame_range=frame_range, tag=tag)


# ----------------------------------------------------------------------------- sources


def _resolve(path, base):
  path = os.path.expanduser(str(path))
  return path if os.path.isabs(path) else os.path.join(os.path.expanduser(str(base)), path)


def load_sources(config):
  """[(entry, root, data source)] of `config.datasets`, building missing
  array_record files when `config.prepare_if_missing` (run once on one
  process first when several hosts share `tfds_dir`)."""
  out = []
  for k, entry in enumerate(config.datasets):
    if float(entry.weight) <= 0:
      continue
    root = _resolve(entry.root, config.data_root)
    data_dir = _resolve(entry.get("tag", "") or ".", config.tfds_dir)
    synth = dict(config.synthetic) if entry.name == "synthetic" else None
    try:
      if synth is not None and synth.pop("procedural", False):
        source = synthetic_lib.ProceduralVideos(
            synth["first_seed"], synth["num_videos"], synth["num_frames"], synth["height"],
            synth["width"], synthetic_lib.SyntheticConfig.from_dict(dict(synth["difficulty"])),
            synth.get("jpeg_quality", 92), synth.get("noise", "exact"))
      else:
        if synth is not None:
          synth["difficulty"] = dict(synth.get("difficulty", {}))
          synth.pop("jpeg_quality", None)
          noise = synth.pop("noise", "exact")
          if noise != "exact":
            raise ValueError(f"config data.synthetic.noise={noise!r} needs "
                             "data.synthetic.procedural=True (a written set's frames are "
                             "rendered with exact noise)")
        builder = builders.make_builder(entry.name, root, data_dir, synth)
        if config.prepare_if_missing:
          builders.prepare(builder, root)
        source = builders.data_source(builder, entry.split)
      out.append((entry, root, source))
    except Exception as e:
      raise type(e)(f"config.data.datasets[{k}] ({entry.name} at {root}): {e}") from e
  if not out:
    raise ValueError("config.data.datasets: no dataset with a positive weight")
  return out


# ----------------------------------------------------------------------------- samples


def _decode_record(rec):
  text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
  return dict(video_id=text(rec["video_id"]), frames=[text(f) for f in rec["frames"]],
              boxes=np.asarray(rec["boxes"], np.float32),
              valid=np.asarray(rec["valid"], bool))


class SampleFn:
  """Global example index -> one training example (picklable for grain workers)."""

  def __init__(self, config, sources, seed):
    self.mode = config.mode
    if self.mode not in ("pair", "sequence"):
      raise ValueError(f"config.data.mode must be 'pair' or 'sequence', got {self.mode!r}")
    self.seed = int(seed)
    self.sources = [s for _, _, s in sources]
    self.roots = [r for _, r, _ in sources]
    self.names = [e.name for e, _, _ in sources]
    self.frame_ranges = [int(e.frame_range) for e, _, _ in sources]
    self.probs = sampling.mixture_probs([float(e.weight) for e, _, _ in sources])
    self.z, self.x = int(config.template_size), int(config.search_size)
    self.context = float(config.context)
    self.neg_prob = float(config.neg_prob)
    self.num_support, self.num_query = int(config.num_support), int(config.num_query)
    self.max_gap = int(config.max_gap)
    self.template_aug = dict(config.template_aug)
    self.search_aug = dict(config.search_aug)
    self.max_retries = int(config.max_retries)

  # -- reading
  def _draw_video(self, rng):
    s = sampling.choose_source(rng, self.probs)
    src = self.sources[s]
    v = int(rng.integers(len(src)))
    if isinstance(src, synthetic_lib.ProceduralVideos):
      return s, v, src.record(v)
    return s, v, _decode_record(src[v])

  def _frame(self, s, rec, i):
    if isinstance(self.sources[s], synthetic_lib.ProceduralVideos):
      return self.sources[s].frame(rec, i)
    path = os.path.join(self.roots[s], rec["frames"][i])
    return frames_lib.read_frame(path, sequence=f"{self.names[s]}/{rec['video_id']}", index=i)

  # -- crops
  def _crops(self, rng, frame, box, template, search):
    """Template and/or search crop of one frame around `box` (one pad value)."""
    pad = augment.channel_mean(frame)
    s_z = augment.context_size(box, self.context)
    out = []
    if template:
      out.append(augment.crop_and_augment(rng, frame, box, self.z, s_z, self.template_aug,
                                          pad)[:2])
    if search:
      out.append(augment.crop_and_augment(rng, frame, box, self.x, s_z * self.x / self.z,
                                          self.search_aug, pad)[:2])
    return out

  # -- samples
  def _pair(self, rng, skips):
    s, v, rec = self._draw_video(rng)
    pair = sampling.sample_pair(rng, rec["valid"], self.frame_ranges[s])
    if pair is None:
      skips["no_valid_frame"] += 1
      return None
    t, j = pair
    negative = bool(rng.random() < self.neg_prob)
    s2, rec2 = s, rec
    if negative:
      s2, v2, rec2 = self._draw_video(rng)
      if (s2, v2) == (s, v):
        skips["same_video_negative"] += 1
        return None
      j = sampling.sample_frame(rng, rec2["valid"])
      if j is None:
        skips["no_valid_frame"] += 1
        return None
    (template, t_box), = self._crops(rng, self._frame(s, rec, t), rec["boxes"][t], True, False)
    (search, s_box), = self._crops(rng, self._frame(s2, rec2, j), rec2["boxes"][j], False, True)
    return dict(template=template, search=search, template_box=t_box, search_box=s_box,
                negative=np.bool_(negative))

  def _sequence(self, rng, skips):
    s, _, rec = self._draw_video(rng)
    drawn = sampling.sample_sequence(rng, rec["valid"], self.num_support, self.num_query,
                                     self.max_gap)
    if drawn is None:
      skips["no_valid_frame"] += 1
      return None
    support, query = drawn
    cache = {}
    frame = lambda i: cache[i] if i in cache else cache.setdefault(i, self._frame(s, rec, i))
    st, sb, ss, ssb, qs, qb = [], [], [], [], [], []
    for i in support:
      (z, z_box), (x, x_box) = self._crops(rng, frame(i), rec["boxes"][i], True, True)
      st.append(z), sb.append(z_box), ss.append(x), ssb.append(x_box)
    for i in query:
      (x, x_box), = self._crops(rng, frame(i), rec["boxes"][i], False, True)
      qs.append(x), qb.append(x_box)
    return dict(support_template=np.stack(st), support_template_box=np.stack(sb),
                support_search=np.stack(ss), support_box=np.stack(ssb),
                query_search=np.stack(qs), query_box=np.stack(qb), negative=np.bool_(False))

  def __call__(self, global_index):
    rng = np.random.default_rng([self.seed, int(global_index)])
    skips = collections.Counter()
    make = self._pair if self.mode == "pair" else self._sequence
    last_error = None
    for _ in range(self.max_retries):
      try:
        ex = make(rng, skips)
      except frames_lib.FrameError as e:
        skips["frame_error"] += 1
        last_error = e
        continue
      if ex is not None:
        ex["skipped"] = np.array([skips[r] for r in SKIP_REASONS], np.int32)
        return ex
    raise RuntimeError(f"example {global_index}: no usable sample in {self.max_retries} draws "
                       f"(config.data.max_retries); skips {dict(skips)}; last error: "
                       f"{last_error}")


# ----------------------------------------------------------------------------- iterator


class _LocalExample:
  """Local stream position j -> example of global index
  ``(j // b) * B + offset + j % b`` (picklable, for grain workers)."""

  def __init__(self, sample_fn, local_batch, global_batch, offset):
    self.fn, self.b, self.B, self.offset = sample_fn, local_batch, global_batch, offset

  def __call__(self, j):
    return self.fn((j // self.b) * self.B + self.offset + j % self.b)


class TrainIterator:
  """Iterator of per-process batches; its state is the next step number.

  Attributes:
    step: index of the next batch.
    metrics: skipped draws per reason (`SKIP_REASONS`) and `examples`, summed
      over the batches this iterator produced (for logging).
  """

  def __init__(self, sample_fn, *, local_batch, global_batch, offset, start_step,
               num_workers, num_threads, prefetch):
    self._example = _LocalExample(sample_fn, local_batch, global_batch, offset)
    self._b = local_batch
    self._workers, self._threads, self._prefetch = num_workers, num_threads, prefetch
    self.metrics = collections.Counter()
    self._start(start_step)

  def _start(self, step):
    self.step = int(step)
    ds = (grain.MapDataset.range(self.step * self._b, _NUM_STEPS * self._b)
          .map(self._example)
          .batch(self._b, drop_remainder=True))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self._threads,
                                              prefetch_buffer_size=self._prefetch))
    if self._workers > 0:
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
    self._it = iter(it)

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    batch = next(self._it)
    skipped = batch.pop("skipped").sum(axis=0)
    for reason, n in zip(SKIP_REASONS, skipped):
      self.metrics[reason] += int(n)
    self.metrics["examples"] += self._b
    self.step += 1
    return batch

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self._start(state["step"])

  def close(self):
    close = getattr(self._it, "close", None)
    if close is not None:
      close()


def make_train_iterator(config_data, *, process_index, process_count, global_batch_size, seed,
                        start_step=0, sources=None):
  """Per-process batch iterator (see the module docstring for formats).

  Args:
    config_data: `default_data_config()`-shaped ConfigDict (`config.data`).
    process_index, process_count: this process and the number of processes.
    global_batch_size: examples per step over all processes.
    seed: data seed; the stream is a pure function of (seed, step, index).
    start_step: first step to produce (resume from a checkpoint's step).
    sources: optional `load_sources(config_data)` result, to share opened sources.
  """
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size {global_batch_size} is not divisible by "
                     f"process_count {process_count}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} outside [0, {process_count})")
  local = global_batch_size // process_count
  sources = load_sources(config_data) if sources is None else sources
  fn = SampleFn(config_data, sources, seed)
  return TrainIterator(fn, local_batch=local, global_batch=global_batch_size,
                       offset=process_index * local, start_step=start_step,
                       num_workers=int(config_data.num_workers),
                       num_threads=int(config_data.num_threads),
                       prefetch=int(config_data.prefetch))
