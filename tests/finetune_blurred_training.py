#!/usr/bin/env python3
"""Checks that fvc-finetune warns when the Training images are blurrier than the scored ones.

A CSV holds smooth Training faces (slow waves, little detail) and noisy PublicTest and
PrivateTest faces. With the study's recipe the program must say so in one warning line that
gives both sharpness figures and names --scored-blur; with --scored-blur given it must not.
A CSV with noisy images in every split gets no warning either.

Usage: finetune_blurred_training.py PATH_TO_FVC_FINETUNE
Needs only the standard library.
"""

import math
import random
import re
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

SPLIT_SIZES = {"Training": 40, "PublicTest": 14, "PrivateTest": 14}
WARNING = re.compile(r"^warning: the Training images are blurrier than the PublicTest images "
                     r"\(sharpness (\d\.\d{3}) against (\d\.\d{3})\); a network trained on them "
                     r"scores sharp faces poorly\. --scored-blur blurs the scored images to match "
                     r"\(3 for FER2013 rebuilt from JPEGs\)$", re.M)


def smooth_face(rng):
    phase = rng.random() * 6.28
    return [int(128 + 100 * math.sin(x / 6 + phase) * math.cos(y / 7))
            for y in range(48) for x in range(48)]


def noisy_face(rng):
    return [rng.randrange(256) for _ in range(48 * 48)]


def write_csv(path, training_face, rng):
    with open(path, "w", newline="") as out:
        out.write("emotion,pixels,Usage\n")
        for usage, count in SPLIT_SIZES.items():
            face = training_face if usage == "Training" else noisy_face
            for _ in range(count):
                out.write(f"{rng.randrange(7)},{' '.join(map(str, face(rng)))},{usage}\n")


def finetune(program, data, out, *options):
    command = ["--data", data, "--base-filters", "2", "--threads", "1", "--epochs", "1",
               "--batch-size", "20", "--out", out, *options]
    return run_checked([program, *study_recipe(command), *command]).stdout


def main():
    program = sys.argv[1]
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        blurred = folder / "blurred.csv"
        write_csv(blurred, smooth_face, rng)
        warned = finetune(program, blurred, folder / "warned")
        found = WARNING.search(warned)
        assert found, warned
        trained_on, scored_on = map(float, found.groups())
        assert trained_on < 0.6 * scored_on, found.group(0)
        print(found.group(0))

        quiet = finetune(program, blurred, folder / "blurred-scores", "--scored-blur", "3")
        assert "warning:" not in quiet, quiet

        sharp = folder / "sharp.csv"
        write_csv(sharp, noisy_face, rng)
        assert "warning:" not in finetune(program, sharp, folder / "sharp")
    print("ok")


if __name__ == "__main__":
    main()
