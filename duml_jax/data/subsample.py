"""A lower-frame-rate copy of an OTB-layout folder: every k-th frame of each sequence.

The same real video with k times the motion between frames: a harder test of a
tracker's robustness (a target that moves further than the cosine window expects,
more frames where the offline branch loses it), made from sequences one already has.

  python -m duml_jax.data.subsample --input=DIR --output=DIR --every=3

The input is read (and so checked) by the `otb` loader. Images are symbolic links
to the originals, renumbered 0001, 0002, ...; each ground-truth file keeps every
k-th row as written, so frame i of the copy is frame k*i of the original. The
output is built beside it and renamed into place; a folder made earlier with the
same input and k is reused, any other existing output is refused.
"""
import argparse
import os

from duml_jax.data import benchmarks
from duml_jax.data import derived

MARKER = "subsample.json"


def subsample_otb(src, dst, every):
  """Writes the every-`every`-th-frame copy of the OTB-layout folder `src` to `dst`.

  Returns:
    {sequence name: frames in the copy}.
  Raises:
    ValueError: `every` < 1, or `dst` exists and is not this copy.
    benchmarks.BenchmarkError: `src` is not a readable OTB-layout folder (named).
  """
  every = int(every)
  if every < 1:
    raise ValueError(f"subsample: every={every}; want a whole number >= 1")
  src, dst = os.path.abspath(src), os.path.abspath(dst)
  seqs = benchmarks.load_benchmark("otb", src)
  counts = {s.name: len(s.frames[::every]) for s in seqs}
  derived.build_once(
      dst, MARKER, {"input": src, "every": every}, lambda tmp: _write(seqs, tmp, every),
      f"subsample: {dst} exists and is not the every-{every} copy of {src}; "
      "remove it or give another --output")
  return counts


def _write(seqs, tmp, every):
  done = set()
  for s in seqs:
    seq_dir = os.path.dirname(os.path.dirname(s.frames[0]))   # <seq>/img/<frame>
    folder = os.path.basename(seq_dir)
    if folder in done:        # groundtruth_rect.k.txt: <seq>-k share one img/
      continue
    done.add(folder)
    os.makedirs(os.path.join(tmp, folder, "img"))
    kept = s.frames[::every]
    width = max(4, len(str(len(kept))))
    for i, f in enumerate(kept):   # renumbered 1, 2, ...: the loader refuses gaps
      name = f"{i + 1:0{width}d}{os.path.splitext(f)[1]}"
      os.symlink(os.path.realpath(f), os.path.join(tmp, folder, "img", name))
    for gt in sorted(os.listdir(seq_dir)):
      if gt.startswith("groundtruth_rect") and gt.endswith(".txt"):
        with open(os.path.join(seq_dir, gt)) as f:
          rows = [r for r in f.read().splitlines() if r.strip()]
        with open(os.path.join(tmp, folder, gt), "w") as f:
          f.write("\n".join(rows[::every]) + "\n")


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--input", required=True, help="OTB-layout folder (<seq>/img, groundtruth)")
  ap.add_argument("--output", required=True)
  ap.add_argument("--every", type=int, required=True, help="keep frames 0, k, 2k, ...")
  args = ap.parse_args(argv)
  try:
    counts = subsample_otb(args.input, args.output, args.every)
  except (ValueError, benchmarks.BenchmarkError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"{len(counts)} sequences, {sum(counts.values())} frames (every {args.every}) -> "
        f"{os.path.abspath(args.output)}")


if __name__ == "__main__":
  main()
