#!/usr/bin/env bash
# Builds fvc and runs every benchmark (docs/PERFORMANCE.md): reading FER2013 beside numpy, then
# training and scoring steps beside PyTorch with the fraction of the CPU's peak each reaches.
# Give the machine to it alone: on a busy machine the load, not the code, decides the figures.
# Needs ../shared/data/fer2013.csv.gz for the reading benchmark; installs PyTorch 1.13
# (python3-torch, the LibTorch fvc links) for the training peer.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh python3-torch
cmake --preset release
cmake --build --preset release --target bench
