#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: install the packages,
# configure, build, and run every GoogleTest binary through ctest.
#   bash scripts/test.sh            # build dir: build/
#   BUILD_DIR=build-asan CMAKE_ARGS=-DHAMDB_SANITIZE=address bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 900
