#!/usr/bin/env bash
# Installs what is missing, builds fvc and runs the finetune example on the
# built-in synthetic faces (no download needed). About 9 minutes on 2 idle
# cores, 7 of them building.
#
# The full VGGFace network and the Keras recipe (Adam, Glorot start, no batch
# normalisation) are kept; the demo only takes smaller batches and a smaller
# step (batch 50, learning rate 1e-4) so that the net leaves its starting
# plateau within a few epochs of 2,800 images.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release
cmake --build --preset release

build/release/examples/finetune/fvc-finetune \
  --recipe original --synthetic 3500 --epochs 6 --batch-size 50 --lr 1e-4 \
  --out fvc-demo-out "$@"
