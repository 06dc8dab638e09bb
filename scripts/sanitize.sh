#!/usr/bin/env bash
# Builds fvc, its tests and its programs with AddressSanitizer and UndefinedBehaviorSanitizer
# (the asan preset) and runs the test suite under them, the fuzz cases included. A memory
# error or undefined behaviour in fvc's code fails the test that reached it, with the
# sanitizer's report in the test's output.
#
# Two kinds of test are left out (the asan test preset's filter): the out-of-memory test,
# whose address-space limit the sanitizer's shadow memory cannot live under, and the
# package tests, whose consumer project is built without the sanitizer's runtime.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset asan
cmake --build --preset asan
ctest --preset asan "$@"
