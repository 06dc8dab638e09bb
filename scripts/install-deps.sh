#!/usr/bin/env bash
# Installs the Debian 12 packages fvc needs to build and test, and any packages
# named as arguments, skipping those already present. Run as root (or with sudo
# available).
set -euo pipefail

packages=(
  cmake ninja-build g++ make   # toolchain
  libtorch-dev                 # tensors, autograd, nn modules (LibTorch 1.13, CPU)
  libhdf5-dev                  # Keras weight files
  nlohmann-json3-dev           # Keras architecture JSON
  libfmt-dev                   # messages and log lines
  libisal-dev                  # .csv.gz input (streaming inflate), CRC-64 of cached sources
  zlib1g-dev                   # gzip test fixtures, the benchmark's inflate yardstick
  libpng-dev libjpeg-dev       # image folders: PNG and JPEG decoders (libjpeg-turbo)
  catch2                       # unit tests (v2)
  libcli11-dev                 # command-line options of the examples
  python3-h5py                 # the tests' independent reader of the Keras files (brings numpy)
  "$@"
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
