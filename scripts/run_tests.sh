#!/usr/bin/env bash
# Installs what the tests need (a venv in .venv) and runs the test suite on
# two CPU devices. Usage: bash scripts/run_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-test.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-export.txt
export XLA_FLAGS="--xla_force_host_platform_device_count=2"
export JAX_PLATFORMS=cpu
exec .venv/bin/python -m pytest -q -p no:randomly "$@"
