#!/usr/bin/env bash
# Installs what is missing, builds fvc with its tests and runs the whole suite.
# Tests that need ../shared/data/fer2013.csv.gz report themselves skipped without it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release
cmake --build --preset release
ctest --preset release "$@"
