"""Which frames make a training sample (pure numpy, given a np.random.Generator).

* Pair-wise (offline branches, SiamRPN++ style, anchors.md 2.7): the template
  frame is a random valid frame; the search frame is a random valid frame
  within +-frame_range of it. With probability `neg_prob` the search frame is
  instead a random valid frame of another video (a negative pair).
* Sequence-wise (joint training, DiMP style, anchors.md 3.3; DuML section 4):
  a support set of `num_support` frames and a query set of `num_query` frames
  from one video, "causal": around a random valid base frame, support frames
  lie in [base - max_gap, base] and query frames in (base, base + max_gap]
  (falling back to [base - max_gap, base + max_gap] when nothing valid lies
  after the base). Frames are drawn without replacement while there are
  enough, then with replacement (one-frame videos such as COCO repeat their
  frame; augmentation makes the copies differ). No negatives.
* Dataset mixture: a source is drawn with probability proportional to its
  weight.
"""
import numpy as np


def mixture_probs(weights):
  """Normalised probabilities of (source, weight) pairs or plain weights."""
  w = np.asarray([p[1] if isinstance(p, (tuple, list)) else p for p in weights], np.float64)
  if w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
    raise ValueError(f"dataset weights must be finite, >= 0 and not all 0: {w.tolist()}")
  return w / w.sum()


def choose_source(rng, probs):
  """Index of the dataset to draw from."""
  return int(rng.choice(len(probs), p=probs))


def valid_frames(valid):
  return np.flatnonzero(np.asarray(valid, bool))


def _draw(rng, candidates, n):
  """n sorted frame indices from `candidates`: distinct while possible."""
  replace = len(candidates) < n
  return np.sort(rng.choice(candidates, size=n, replace=replace))


def sample_pair(rng, valid, frame_range):
  """(template_index, search_index) of one video, or None without valid frames."""
  idx = valid_frames(valid)
  if idx.size == 0:
    return None
  t = int(rng.choice(idx))
  near = idx[np.abs(idx - t) <= frame_range]
  return t, int(rng.choice(near))


def sample_frame(rng, valid):
  """One random valid frame (the search frame of a negative pair), or None."""
  idx = valid_frames(valid)
  return int(rng.choice(idx)) if idx.size else None


def sample_sequence(rng, valid, num_support, num_query, max_gap):
  """(support indices (num_support,), query indices (num_query,)), or None."""
  idx = valid_frames(valid)
  if idx.size == 0:
    return None
  base = int(rng.choice(idx))
  support = idx[(idx >= base - max_gap) & (idx <= base)]
  query = idx[(idx > base) & (idx <= base + max_gap)]
  if query.size == 0:
    query = idx[np.abs(idx - base) <= max_gap]
  return _draw(rng, support, num_support), _draw(rng, query, num_query)
