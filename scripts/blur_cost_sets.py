#!/usr/bin/env python3
"""Writes three small FER2013 sets that measure what a blurred Training split costs.

Usage: blur_cost_sets.py FER2013_CSV[.gz] OUT_FOLDER

Each set trains on 3,589 faces and is validated and scored on the same two halves of
PrivateTest (even rows: validation, written as PublicTest; odd rows: PrivateTest):

  sharp.csv           trains on the PublicTest faces as they are;
  synthetic-blur.csv  trains on the same faces blurred by a Gaussian of 3 pixels (edges
                      extended, rounded to whole grey levels, as Dataset::blurred does);
  real-blur.csv       trains on 3,589 Training faces drawn at random (seed 7), which the
                      FER2013 rebuilt from JPEGs holds blurred already.

Train each with fvc-finetune --data OUT_FOLDER/NAME.csv, scoring sharp.csv with
--scored-blur 0 and the other two with --scored-blur 3 (docs/RESULTS.md has the commands).
The sets are derived from FER2013, so keep them beside the data, outside any source tree.
Needs numpy.
"""

import gzip
import sys
from pathlib import Path

import numpy as np

SIDE = 48
SIGMA = 3.0


def read_rows(path):
    """(emotion, pixels) pairs of each Usage, in file order."""
    rows = {"Training": [], "PublicTest": [], "PrivateTest": []}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as source:
        next(source)
        for line in source:
            emotion, pixels, usage = line.rstrip("\n").split(",")
            rows[usage].append((int(emotion), np.array(pixels.split(), dtype=np.uint8)))
    return rows


def blurred(pixels, sigma=SIGMA):
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets**2 / (2 * sigma * sigma))
    kernel /= kernel.sum()
    image = np.pad(pixels.reshape(SIDE, SIDE).astype(np.float32), radius, mode="edge")
    for axis in (1, 0):
        image = np.apply_along_axis(lambda line: np.convolve(line, kernel, "valid"), axis, image)
    return np.clip(np.round(image), 0, 255).astype(np.uint8).ravel()


def write_set(path, training, validation, test):
    with open(path, "w") as out:
        out.write("emotion,pixels,Usage\n")
        for usage, rows in (("Training", training), ("PublicTest", validation),
                            ("PrivateTest", test)):
            for emotion, pixels in rows:
                out.write(f"{emotion},{' '.join(map(str, pixels))},{usage}\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = read_rows(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    validation, test = rows["PrivateTest"][0::2], rows["PrivateTest"][1::2]
    sharp = rows["PublicTest"]
    drawn = np.random.default_rng(7).choice(len(rows["Training"]), len(sharp), replace=False)

    write_set(out / "sharp.csv", sharp, validation, test)
    write_set(out / "synthetic-blur.csv",
              [(emotion, blurred(pixels)) for emotion, pixels in sharp], validation, test)
    write_set(out / "real-blur.csv", [rows["Training"][i] for i in drawn], validation, test)
    print(f"wrote sharp.csv, synthetic-blur.csv and real-blur.csv in {out}")


if __name__ == "__main__":
    main()
