#!/usr/bin/env bash
# The whole device call for issue 24: unpack the carried wheels, run every GPU figure
# (benchmarks/gpu_suite.py) under a time limit, leave the JSON, the log and nvidia-smi in $OUT.
#
# Once, on the machine with the repository and a registry:
#   bash benchmarks/gpu_wheels.sh                       # -> .whl/ (~11 MB, git-ignored)
# Then the one call the next lent GPU makes (device tool `run`; put the commit's hash for
# <COMMIT>, since the device copy has no .git):
#   run(command="DUML_COMMIT=<COMMIT> bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=540)
# The suite stops starting figures after SUITE_BUDGET_S (330 s) and is killed at
# SUITE_TIMEOUT_S (420 s); the JSON is rewritten after every figure, so it survives a kill.
# Commit $OUT/gpu_suite.json under benchmarks/results/ and its table in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/duml_gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Room for the largest training batch (JAX preallocates 75% by default).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1 || true
python3 -c "import jax, flax, ml_collections, grain; print(jax.__version__, jax.devices())" \
  2>&1 | tee "$OUT/env.txt"
timeout -k 10 "${SUITE_TIMEOUT_S:-420}" python3 benchmarks/gpu_suite.py \
  --out "$OUT/gpu_suite.json" --budget-s "${SUITE_BUDGET_S:-330}" 2>&1 | tee "$OUT/gpu_suite.log"
status=${PIPESTATUS[0]}
echo "gpu_suite exit status: $status (124: killed at the time limit; the JSON holds the figures done)"
exit "$status"
