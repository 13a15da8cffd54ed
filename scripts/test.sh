#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: install the packages,
# configure, build, and run every GoogleTest binary through ctest.
#   bash scripts/test.sh            # build dir: build/
#   BUILD_DIR=build-asan CMAKE_ARGS=-DHAMDB_SANITIZE=address SKIP_TSAN=1 bash scripts/test.sh
# After ctest it runs scripts/test-tsan.sh (HTTP concurrency under ThreadSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS" --timeout 900)

# The HTTP concurrency tests again under ThreadSanitizer (a torch-free build of
# http_test only). SKIP_TSAN=1 skips it.
if [ "${SKIP_TSAN:-0}" != 1 ]; then
  BUILD_DIR="${BUILD_DIR}-tsan" JOBS="$JOBS" bash scripts/test-tsan.sh
fi
