#!/usr/bin/env python3
"""Checks that fvc-finetune --init-weights loads a VGGFace "notop" file by name.

Writes, with h5py alone, a save_weights file laid out as keras-vggface's VGG16
notop weights are (conv1_1 .. pool5, TensorFlow backend, Keras 2.0.4), sized
for --base-filters 2. fvc-finetune must report 13 layers loaded and fc6, fc7,
fc8 kept, and after one epoch at a learning rate too small to move anything the
saved backbone must still hold the file's values while the head must hold what
the same seed gives without --init-weights. With --batch-norm the same file
fills the convolutions, and the normalisations are listed as kept.

Then the refusals: a file with none of the model's layer names, a file made
for other filter counts (with and without --skip-mismatch) and --init-weights
with --resume.

Usage: finetune_init_weights.py PATH_TO_FVC_FINETUNE
Exits 77 (skipped) when numpy or h5py is missing.
"""

import re
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

try:
    import h5py
    import numpy as np
except ImportError as missing:
    print(f"skipped: {missing}; install python3-h5py to run this check")
    sys.exit(77)

# VGG16's blocks: convolutions per block and their filters at --base-filters 2.
BLOCKS = [(2, 2), (2, 4), (3, 8), (3, 16), (3, 16)]
BACKBONE = [f"conv{b}_{c}" for b, (convs, _) in enumerate(BLOCKS, 1) for c in range(1, convs + 1)]
HEAD = ["fc6", "fc7", "fc8"]
# Adam moves a weight by about the learning rate per step, far below this.
TOLERANCE = 1e-6


def write_notop(path, prefix="conv"):
    """prefix 'block' gives Keras's own VGG16 names, which the model does not use."""
    rng = np.random.default_rng(20170501)
    names, kernels = [], {}
    channels = 3
    with h5py.File(path, "w") as out:
        for block, (convs, filters) in enumerate(BLOCKS, 1):
            for conv in range(1, convs + 1):
                name = f"{prefix}{block}_{conv}"
                kernel = (rng.standard_normal((3, 3, channels, filters)) * 0.2).astype(np.float32)
                bias = (rng.standard_normal(filters) * 0.1).astype(np.float32)
                group = out.create_group(name)
                group.attrs["weight_names"] = np.array(
                    [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
                group.create_dataset(f"{name}/kernel:0", data=kernel)
                group.create_dataset(f"{name}/bias:0", data=bias)
                names.append(name)
                kernels[name] = (kernel, bias)
                channels = filters
            pool = f"pool{block}"
            # What Keras 2 stores for a layer without weights: an empty float array.
            out.create_group(pool).attrs["weight_names"] = []
            names.append(pool)
        out.attrs["layer_names"] = np.array([n.encode() for n in names])
        out.attrs["backend"] = np.bytes_("tensorflow")
        out.attrs["keras_version"] = np.bytes_("2.0.4")
    return kernels


def finetune(program, out, *options, status=0, base_filters=2):
    return run_checked([program, *study_recipe(options), "--synthetic", "100", "--epochs", "1", "--batch-size", "20",
                        "--base-filters", base_filters, "--threads", "1", "--lr", "1e-9",
                        "--out", out, *options], status)


def layer_weights(path, name):
    with h5py.File(path, "r") as weights:
        return [weights[name][f"{name}/{part}:0"][()] for part in ("kernel", "bias")]


def largest_difference(left, right):
    return max(float(np.abs(a - b).max()) for a, b in zip(left, right))


def main():
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        notop = folder / "notop.h5"
        kernels = write_notop(notop)

        result = finetune(program, folder / "run", "--init-weights", notop)
        expected = (f"init weights: {notop}: loaded 13 layers ({', '.join(BACKBONE)}); "
                    "kept 3 as initialised (fc6, fc7, fc8)")
        assert expected in result.stdout.splitlines(), result.stdout
        print(expected)

        weights = folder / "run" / "weights.h5"
        backbone = max(largest_difference(layer_weights(weights, name), kernels[name])
                       for name in BACKBONE)
        assert backbone < TOLERANCE, f"the backbone differs from the file by {backbone}"
        finetune(program, folder / "plain")
        head = max(largest_difference(layer_weights(weights, name),
                                      layer_weights(folder / "plain" / "weights.h5", name))
                   for name in HEAD)
        assert head < TOLERANCE, f"the head differs from the seeded one by {head}"
        print(f"backbone holds the file's values to {backbone:.1e}, the head the seeded ones "
              f"to {head:.1e}")

        result = finetune(program, folder / "bn", "--init-weights", notop, "--batch-norm")
        normalisations = [f"{name}_bn" for name in BACKBONE]
        expected = (f"init weights: {notop}: loaded 13 layers ({', '.join(BACKBONE)}); "
                    f"kept 16 as initialised ({', '.join(normalisations + HEAD)})")
        assert expected in result.stdout.splitlines(), result.stdout
        weights = folder / "bn" / "weights.h5"
        backbone = max(largest_difference(layer_weights(weights, name), kernels[name])
                       for name in BACKBONE)
        assert backbone < TOLERANCE, f"the normalised backbone differs by {backbone}"
        print("--batch-norm: the file fills the convolutions, the normalisations are kept")

        renamed = folder / "renamed.h5"
        write_notop(renamed, prefix="block")
        result = finetune(program, folder / "x", "--init-weights", renamed, status=1)
        assert re.match(r"error: .*renamed\.h5: no layer loaded by name: the file has none of "
                        r"the model's layers \(conv1_1, conv1_2, .*, fc8\)", result.stderr), result.stderr

        result = finetune(program, folder / "x", "--init-weights", notop, status=1,
                          base_filters=3)
        assert re.match(r"error: .*notop\.h5: dataset 'conv1_1/conv1_1/kernel:0' has shape "
                        r"\[3,3,3,2\], expected \[3,3,3,3\]", result.stderr), result.stderr
        result = finetune(program, folder / "x", "--init-weights", notop, "--skip-mismatch",
                          status=1, base_filters=3)
        assert "kept conv5_3 as initialised: dataset" in result.stdout, result.stdout
        assert "does --base-filters match the file?" in result.stderr, result.stderr

        result = finetune(program, folder / "x", "--init-weights", notop, "--resume",
                          folder / "run", status=2)
        assert "excludes" in result.stderr, result.stderr
    print("ok")


if __name__ == "__main__":
    main()
