#!/usr/bin/env bash
# Out-of-distribution check of a Fashion-MNIST encoder: the share of
# scikit-learn's bundled 8x8 digits (upscaled to 28x28) flagged OOD, beside
# the share of the Fashion-MNIST test set flagged OOD, at radius 0 and 1.
# Usage: scripts/ood_check.sh MODEL.hdbe [HAMDB_BINARY]
set -euo pipefail
model=${1:?usage: $0 MODEL.hdbe [hamdb binary]}
hamdb=${2:-build/tools/hamdb}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$hamdb" export-dataset sklearn-digits --out "$out/digits"
echo "== in distribution: Fashion-MNIST test (10,000 images)"
"$hamdb" evaluate-encoder --model "$model" --dataset fashion-mnist --split test --ood-radius 1
echo "== out of distribution: sklearn digits (1,797 images, from the PNG files)"
"$hamdb" evaluate-encoder --model "$model" --images "$out/digits/test" --ood-radius 1
"$hamdb" encode --model "$model" "$out"/digits/test/3/*.png | head -5
