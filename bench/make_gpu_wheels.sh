#!/usr/bin/env bash
# bench/make_gpu_wheels.sh [DIR]: the wheelhouse bench/gpu_check.sh installs on the GPU machine (default .whl, ~12 MB).
# ../shared/offline-gpu/make-wheels gives nbdev, fastcore, hqq and torchao for Python 3.12; hqq also imports termcolor,
# which the GPU image lacks (seen 2026-11-27), so it is added here. Keep DIR out of git: echo /.whl/ >> .git/info/exclude
set -euo pipefail
dir=${1:-.whl}
cd "$(dirname "$0")/.."
bash ../shared/offline-gpu/make-wheels "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$dir" termcolor
ls "$dir" | wc -l | xargs echo "wheels:"
