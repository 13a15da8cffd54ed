#!/usr/bin/env bash
# Installs every Debian package hamdb needs to build, test and run.
# Idempotent and non-interactive: packages already present are skipped, and
# apt-get is only called when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl
  librocksdb-dev
  libtorch-dev
  libfaiss-dev
  libboost-all-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libcli11-dev
  libspdlog-dev libfmt-dev
  libjpeg-dev libpng-dev libxxhash-dev
  libopenblas-dev
  dataset-fashion-mnist
  # The Python client's numpy paths and the web page's browser tests.
  python3-numpy
  chromium chromium-driver python3-selenium
  # Cluster coordination (hamdb serve --cluster) and its tests.
  etcd-server etcd-client
)

# Extras for the people-run benchmarks and reports (`--extras`): load
# generator, plots, and scikit-learn's bundled digits for the OOD check.
if [ "${1:-}" = "--extras" ]; then
  PACKAGES+=(wrk python3-numpy python3-matplotlib python3-sklearn)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
