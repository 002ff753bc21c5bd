#!/usr/bin/env bash
# Fetches, into .whl/ (ignored by git), the wheels the GPU image lacks (issue 24): the GPU
# machine has no registry; it has jax, flax, optax, orbax, chex, absl, cv2, torch, etils,
# protobuf, pyarrow, requests, tqdm, wrapt, cloudpickle, six, PyYAML, but not these.
# Versions: requirements.txt and the CI venv's. Python 3.12, x86-64 (the GPU image's).
# Run here, from anywhere:  bash benchmarks/gpu_wheels.sh   (then see gpu_run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 tensorflow-datasets==4.9.10 \
  portpicker==1.6.0 dm-tree==0.1.10 immutabledict==4.3.1 simple-parsing==0.1.9 \
  docstring_parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 \
  termcolor==3.3.0 toml==0.10.2 tensorboardX==2.6.5
# promise (a tensorflow-datasets requirement) is published as a source archive only:
# build its pure-Python wheel here.
"$PY" -m pip wheel -q --no-deps -w .whl promise==2.3
ls .whl
