#!/usr/bin/env bash
# The main job: installs what is needed (a venv in .venv), trains the
# CPU-sized DuML on the built-in synthetic tracking data and prints its
# evaluation (held-out synthetic sequences, and ../shared/data/otb_sample
# when it exists). Usage: bash scripts/main_job.sh [WORKDIR] [extra train.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORKDIR=${1:-workdir/tiny}
shift || true
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
SAMPLE=""
if [ -d ../shared/data/otb_sample ]; then
  SAMPLE="--config.eval.otb_sample_dir=$(cd ../shared/data/otb_sample && pwd)"
fi
exec .venv/bin/python train.py --config=configs/duml.py:tiny --workdir="$WORKDIR" $SAMPLE "$@"
