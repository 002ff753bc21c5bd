#!/usr/bin/env bash
# The real-video comparison on any OTB-layout folder (<seq>/img/*.jpg, <seq>/groundtruth_rect.txt):
# cv2.TrackerNano, NanoTrack-JAX, the recommended DuML-nano and DuML-nano-offline (the same at
# mu 0: its offline branch alone, the online branch's ablation) through evaluate.py, one table
# (AUC, precision, per-sequence AUC, paired bootstrap vs NanoTrack-JAX and vs the ablation) and
# OUT_DIR/report.json with the entries NanoTrack-cv2, NanoTrack-JAX, DuML-nano, DuML-nano-offline.
#
#   bash scripts/real_video.sh DATASET_DIR OUT_DIR
#
# Installs a .venv from requirements.txt (as scripts/main_job.sh) unless DUML_PYTHON names the
# python to use. What DuML-nano needs trained (its online pieces, meta_nano, NanoTrack frozen)
# is trained into OUT_DIR/meta and reused on rerun. Environment:
#   DUML_PYTHON      python to run with (no venv is made)
#   NANO_WEIGHTS     NanoTrack weights folder (default ../shared/weights/nanotrack)
#   REAL_TRAIN       real training clips for meta_nano (default ../shared/data/real_train)
#   DUML_NANO_META   1: DuML-nano with meta-trained online pieces (trained here, cached);
#                    0 (default, the recommendation measured on real_val, docs/duml_nano.md):
#                    their closed-form start, nothing to train
#   META_STEPS       meta-training steps (default: meta_nano's recipe); META_BATCH its batch
#   META_SYNTH_VIDEOS, META_SYNTH_FRAMES  size of the generated synthetic videos
#   INIT_SHIFTS      more starts, e.g. "1,0 0,1 -1,-1": every tracker also runs with its
#                    init box shifted by each dx,dy (pixels) and each sequence's score is
#                    the mean over all starts (one start swings short clips by many AUC points)
#   FRAME_STRIDE     k > 1: the same comparison on every k-th frame (OUT_DIR/data-every<k>,
#                    duml_jax.data.subsample; k times the motion per frame), results in
#                    OUT_DIR/results-every<k>, report OUT_DIR/report-every<k>.json
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash scripts/real_video.sh DATASET_DIR OUT_DIR" >&2
  exit 2
fi
[ -d "$1" ] || { echo "real_video.sh: DATASET_DIR $1 is not a folder" >&2; exit 2; }
DATA=$(cd "$1" && pwd)
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."
if [ -n "${DUML_PYTHON:-}" ]; then
  PY=$DUML_PYTHON
else
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  PY=.venv/bin/python
fi
WEIGHTS=${NANO_WEIGHTS:-../shared/weights/nanotrack}
[ -d "$WEIGHTS" ] || [ -f "$WEIGHTS" ] || {
  echo "real_video.sh: NanoTrack weights not found at $WEIGHTS (set NANO_WEIGHTS; docs/duml_nano.md)" >&2
  exit 2; }
WEIGHTS=$(cd "$(dirname "$WEIGHTS")" && pwd)/$(basename "$WEIGHTS")
REAL_TRAIN=${REAL_TRAIN:-../shared/data/real_train}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}

# The recommended DuML-nano (docs/duml_nano.md, chosen on ../shared/data/real_val).
DUML_NANO="duml_nano,weights=$WEIGHTS"
META="$OUT/meta"

# 1. Meta-train the online pieces (cached: skipped when OUT_DIR/meta holds a finished run).
CKPT=()
if [ "${DUML_NANO_META:-0}" = "0" ]; then
  echo "== DuML-nano's online pieces start from their closed form: nothing to train"
elif [ ! -f "$META/meta_nano.json" ]; then
  ARGS=(--workdir="$META" --weights="$WEIGHTS")
  if [ -d "$REAL_TRAIN" ]; then ARGS+=(--real_train="$(cd "$REAL_TRAIN" && pwd)"); else ARGS+=(--no_real_train); fi
  [ -n "${META_STEPS:-}" ] && ARGS+=(--steps="$META_STEPS")
  [ -n "${META_BATCH:-}" ] && ARGS+=(--batch_size="$META_BATCH")
  [ -n "${META_SYNTH_VIDEOS:-}" ] && ARGS+=(--synthetic_videos="$META_SYNTH_VIDEOS")
  [ -n "${META_SYNTH_FRAMES:-}" ] && ARGS+=(--synthetic_frames="$META_SYNTH_FRAMES")
  echo "== meta-training DuML-nano's online pieces into $META"
  "$PY" -m duml_jax.training.meta_nano "${ARGS[@]}"
  CKPT=(--checkpoint="$META")
else
  echo "== reusing $META (delete it to retrain)"
  CKPT=(--checkpoint="$META")
fi

# 2. The four trackers through evaluate.py, one results folder, from every start.
RES="$OUT/results"
REPORT=report.json
STRIDE=${FRAME_STRIDE:-1}
if [ "$STRIDE" != "1" ]; then
  "$PY" -m duml_jax.data.subsample --input="$DATA" --output="$OUT/data-every$STRIDE" \
    --every="$STRIDE"
  DATA="$OUT/data-every$STRIDE"
  RES="$OUT/results-every$STRIDE"   # never mixed with full-rate results of the same names
  REPORT="report-every$STRIDE.json"
fi
EVAL=(--benchmark=otb --dataset_dir="$DATA" --output_dir="$RES")
FOLDERS=()
for SHIFT in 0,0 ${INIT_SHIFTS:-}; do
  # evaluate.py's folder suffix for this shift (evaluate_lib.shift_suffix: '%g' numbers).
  SHIFT=$("$PY" -c 'import sys; print("_".join(f"{float(v):g}" for v in sys.argv[1].split(",")))' \
    "$SHIFT") || { echo "real_video.sh: INIT_SHIFTS: bad shift $SHIFT (want dx,dy)" >&2; exit 2; }
  SUFFIX=""
  [ "$SHIFT" = "0_0" ] || SUFFIX="-shift$SHIFT"
  echo "== NanoTrack-JAX and cv2.TrackerNano (init box shifted by ${SHIFT/_/,} px)"
  "$PY" evaluate.py --config="configs/duml_nano.py:nanotrack,weights=$WEIGHTS" "${EVAL[@]}" \
    --tracker_name=NanoTrack-JAX --baselines=cv2_nano --init_shift="${SHIFT/_/,}"
  echo "== DuML-nano ($DUML_NANO ${CKPT[*]:-}; init box shifted by ${SHIFT/_/,} px)"
  "$PY" evaluate.py --config="configs/duml_nano.py:$DUML_NANO" ${CKPT[@]+"${CKPT[@]}"} "${EVAL[@]}" \
    --tracker_name=DuML-nano --init_shift="${SHIFT/_/,}"
  echo "== DuML-nano-offline (DuML-nano at mu 0; init box shifted by ${SHIFT/_/,} px)"
  "$PY" evaluate.py --config="configs/duml_nano.py:$DUML_NANO,mu=0" "${EVAL[@]}" \
    --tracker_name=DuML-nano-offline --init_shift="${SHIFT/_/,}"
  FOLDERS+=("NanoTrack-cv2-v2$SUFFIX" "NanoTrack-JAX$SUFFIX" "DuML-nano$SUFFIX"
            "DuML-nano-offline$SUFFIX")
done
"$PY" evaluate.py "${EVAL[@]}" --score_only --trackers="$(IFS=,; echo "${FOLDERS[*]}")"

# 3. One table and OUT_DIR/report.json.
"$PY" -m duml_jax.evaluation.real_video --results="$RES" --out_dir="$OUT" \
  --duml_nano_config="configs/duml_nano.py:$DUML_NANO ${CKPT[*]:-}" --frame_stride="$STRIDE" \
  --report="$REPORT"
