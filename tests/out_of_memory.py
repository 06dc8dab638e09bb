#!/usr/bin/env python3
"""Checks what fvc-finetune and fvc-evaluate say when a batch does not fit in memory.

Each run is limited in address space (`prlimit --as`) to what the program needs to start plus
a margin far below what a batch of 1,000 48x48 faces needs in VGG16, so the first batch fails
to allocate. Both programs must exit with status 6 and name the device, the batch size and a
smaller one; fvc-finetune must write no model, fvc-evaluate no scores. Runs with a batch that
fits under the same limit must succeed, so the limit is not simply too low to do anything;
fvc-evaluate scores the model that fvc-finetune's run that fits wrote.

Usage: out_of_memory.py PATH_TO_FVC_FINETUNE PATH_TO_FVC_EVALUATE
Needs only the standard library and util-linux's prlimit.
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

SKIPPED = 77
OUT_OF_MEMORY = 6
# Address space for the whole process: LibTorch's libraries and heap need about 1.5 GB of it
# before training; a batch of 10 needs well under 1 GB more, a batch of 1,000 several GB.
LIMIT_BYTES = 3 * 2**30


def limited(command, status):
    return run_checked(["prlimit", f"--as={LIMIT_BYTES}", "--", *command], status)


def finetune(program, out, batch_size, status):
    # float32: the memory a batch needs should not depend on the CPU this runs on.
    options = ["--synthetic", "1400", "--threads", "1", "--epochs", "1", "--precision", "float32",
               "--limit", str(max(100, batch_size)), "--batch-size", str(batch_size),
               "--out", out]
    return limited([program, *study_recipe(options), *options], status)


def evaluate(program, model, out, images, batch_size, status):
    return limited([program, "--model", model / "model.json", "--weights", model / "weights.h5",
                    "--synthetic", str(images), "--threads", "1", "--precision", "float32",
                    "--batch-size", str(batch_size), "--out", out], status)


def check_finetune(program, folder):
    too_big = folder / "too-big"
    refused = finetune(program, too_big, 1000, OUT_OF_MEMORY)
    error = refused.stderr.strip().splitlines()
    pattern = (r"error: cpu: out of memory training on batches of 1000 images \(.*"
               r"can't allocate memory.*\); try a smaller batch_size, such as 500")
    assert re.fullmatch(pattern, error[0]), refused.stderr
    assert error[1] == "start again with --batch-size 500, or free memory and run again", \
        refused.stderr
    assert not (too_big / "weights.h5").exists()
    print(error[0])

    fits = folder / "fits"
    finetune(program, fits, 10, 0)
    return fits


def check_evaluate(program, model, folder):
    too_big = folder / "scores-too-big"
    # Scoring keeps no activations for a backward pass, so it takes a larger batch to fail,
    # and a PrivateTest split (a tenth of the images) at least that large.
    refused = evaluate(program, model, too_big, 20000, 2000, OUT_OF_MEMORY)
    error = refused.stderr.strip().splitlines()
    pattern = (r"error: cpu: out of memory scoring batches of 2000 images \(.*"
               r"can't allocate memory.*\); try a smaller eval_batch_size, such as 1000")
    assert re.fullmatch(pattern, error[0]), refused.stderr
    assert error[1] == "run again with --batch-size 1000, or free memory", refused.stderr
    assert not (too_big / "confusion_privatetest.csv").exists()
    print(error[0])

    fits = folder / "scores-fit"
    evaluate(program, model, fits, 1400, 10, 0)
    assert (fits / "confusion_privatetest.csv").exists()


def main():
    if shutil.which("prlimit") is None:
        print("skipped: prlimit (util-linux) is not installed")
        return SKIPPED
    finetune_program, evaluate_program = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as folder:
        model = check_finetune(finetune_program, Path(folder))
        check_evaluate(evaluate_program, model, Path(folder))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
