#!/usr/bin/env bash
# Builds fvc against a CUDA LibTorch and runs the 16-epoch, batch-250 finetune on the full
# FER2013 Training split on one GPU, then reports the total seconds, the training images/s
# and the share of the GPU's bfloat16 peak that training reached.
#
#   scripts/gpu-finetune.sh --data fer2013.csv.gz [--recipe fvc|original] [--out DIR]
#                           [--deps FOLDER_OF_DEBS] [-- more fvc-finetune options]
#   scripts/gpu-finetune.sh --data fer2013.csv.gz -- --resume DIR     # continue a stopped run
#
# Options after -- go to fvc-finetune as they are; --epochs and --batch-size there replace the
# 16 and 250 given by default, and with --resume the checkpoint's settings are used.
#
# LibTorch comes from $LIBTORCH (an unpacked CUDA LibTorch) or else from the python3 torch's
# CMake files (torch.utils.cmake_prefix_path); the other libraries as install-deps.sh lists
# them, installed, or as Debian packages in --deps, unpacked into the build folder. The
# peak is measured here, as the best of ten 8192x8192x8192 bfloat16 matrix products through
# python3's torch. See docs/CUDA.md. Not yet run on a GPU: its first run is its test.
set -euo pipefail
cd "$(dirname "$0")/.."

data=""
recipe="fvc"
out=""
deps=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --recipe) recipe="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --deps) deps="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "gpu-finetune: unknown argument '$1'; see the top of $0" >&2; exit 2 ;;
  esac
done
[ -n "$data" ] || { echo "gpu-finetune: --data FER2013_CSV is required" >&2; exit 2; }
[ -f "$data" ] || { echo "gpu-finetune: $data: no such file, expected the FER2013 CSV" >&2; exit 2; }
out="${out:-gpu-finetune-$recipe}"
build=build/cuda

# Whether the options after -- include $1.
given() {
  local option
  for option in "${extra[@]}"; do [ "$option" = "$1" ] && return 0; done
  return 1
}

# LibTorch with CUDA.
if [ -n "${LIBTORCH:-}" ]; then
  torch_prefix="$LIBTORCH"
elif ! torch_prefix="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"; then
  echo "gpu-finetune: python3 has no torch; set LIBTORCH to an unpacked CUDA LibTorch" \
    "(see docs/CUDA.md)" >&2
  exit 2
fi
python3 -c 'import torch; assert torch.cuda.is_available(), "python3 torch sees no GPU"' ||
  echo "gpu-finetune: python3's torch sees no GPU; fvc-finetune will say what LibTorch sees"

# The other libraries: unpacked from Debian packages when --deps names a folder of them.
prefixes="$torch_prefix"
cmake_extra=()
if [ -n "$deps" ]; then
  root="$PWD/$build/deps"
  mkdir -p "$root"
  for deb in "$deps"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  multiarch="$root/usr/lib/x86_64-linux-gnu"
  prefixes="$prefixes;$root/usr"
  # Debian keeps the serial HDF5 in folders of its own.
  cmake_extra+=("-DCMAKE_INCLUDE_PATH=$root/usr/include/hdf5/serial"
                "-DCMAKE_LIBRARY_PATH=$multiarch/hdf5/serial;$multiarch"
                "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$multiarch")
  export LD_LIBRARY_PATH="$multiarch:$multiarch/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

echo "gpu-finetune: building fvc-finetune in $build against $torch_prefix"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$prefixes" \
  -DFVC_BUILD_TESTS=OFF -DFVC_BUILD_BENCH=OFF -DFVC_INSTALL=OFF "${cmake_extra[@]}"
cmake --build "$build" --target fvc-finetune

peak_tflops="$(python3 - <<'EOF' || echo 0
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
best = float("inf")
for _ in range(10):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); a @ b; end.record(); torch.cuda.synchronize()
    best = min(best, start.elapsed_time(end) / 1e3)
print(f"{2 * 8192**3 / best / 1e12:.0f}")
EOF
)"

run=(--data "$data" --device cuda)
if given --resume; then
  log="gpu-finetune-resumed.log"
else
  run+=(--recipe "$recipe" --out "$out")
  given --epochs || run+=(--epochs 16)
  given --batch-size || run+=(--batch-size 250)
  log="$out.log"
fi
echo "gpu-finetune: fvc-finetune ${run[*]} ${extra[*]}; log in $log"
started=$(date +%s.%N)
"$build/examples/finetune/fvc-finetune" "${run[@]}" "${extra[@]}" 2>&1 | tee "$log"
finished=$(date +%s.%N)

# "trained 16 epochs in S s, validation included; R training images/s"
summary="$(grep -E '^trained [0-9]+ epochs? in' "$log" | tail -1 || true)"
python3 - "$summary" "$started" "$finished" "$peak_tflops" <<'EOF'
import re, sys
summary, started, finished, peak = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
found = re.search(r"trained (\d+) epochs? in ([0-9.]+) s, validation included; "
                  r"([0-9.]+) training images/s", summary)
if not found:
    sys.exit("gpu-finetune: fvc-finetune printed no 'trained ... epochs' line; see the log")
epochs, seconds, rate = int(found[1]), float(found[2]), float(found[3])
# Multiply-accumulates of one 48x48x3 image through VGG16's convolutions and the 512-512-7
# head; a training step costs about three forward passes (forward, then the gradients of
# the activations and of the weights), two floating-point operations each.
side, convs, macs = 48, [(3, 64), (64, 64), None, (64, 128), (128, 128), None,
                         (128, 256), (256, 256), (256, 256), None, (256, 512), (512, 512),
                         (512, 512), None, (512, 512), (512, 512), (512, 512), None], 0
for layer in convs:
    if layer is None:
        side //= 2
    else:
        macs += side * side * layer[0] * layer[1] * 9
macs += 512 * 512 + 512 * 512 + 512 * 7
achieved = rate * 3 * 2 * macs / 1e12
print(f"{epochs} epochs: {seconds:.1f} s in fvc-finetune's epochs, validation included; "
      f"{finished - started:.1f} s for the whole program (data, saving, final scoring)")
print(f"training: {rate:.0f} images/s, {achieved:.1f} TFLOP/s ({macs / 1e9:.3f} GMAC forward per image)")
if peak > 0:
    print(f"bfloat16 peak measured here: {peak:.0f} TFLOP/s; training reached {100 * achieved / peak:.1f}% of it")
else:
    print("bfloat16 peak not measured: python3's torch could not run on the GPU")
EOF
