#!/usr/bin/env python3
"""Checks that fvc-finetune --resume continues with the recipe its checkpoint recorded.

A first run trains a narrow network with batch normalisation and dropout for one epoch on
the built-in synthetic faces with --augment, --sampling, --seed and --batch-size away from
their defaults. --resume without those flags must train the second epoch with all of them:
the trainer logs the batch size and the network, augmentation and sampling it uses, and the
Training split, drawn with the seed, must be the first run's. A flag given again with the checkpoint's value is accepted; one
that contradicts the checkpoint ends the program with status 1 before any data is read, and
the message names the flag and both values. The final scores' --tta, which the checkpoint does
not hold, comes from the output folder's final_views.txt; a run without that file (from an
older fvc-finetune) is resumed with a line saying so.

Usage: finetune_resume.py PATH_TO_FVC_FINETUNE
Needs only the standard library.
"""

import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

RECIPE_LINE = ("batch normalisation; dropout 0.25; augmentation crop 2, flip; "
               "sampling balanced (with replacement)")


def finetune(program, *options, status=0):
    return run_checked([program, *study_recipe(options), "--synthetic", "100", "--base-filters", "2", "--threads", "1",
                        *options], status)


def line_starting(output, start):
    found = [line for line in output.splitlines() if line.startswith(start)]
    assert found, f"no line starting with {start!r} in:\n{output}"
    return found[0]


def main():
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        first = finetune(program, "--epochs", "1", "--batch-size", "20", "--seed", "5",
                         "--augment", "flip,crop=2", "--sampling", "balanced", "--batch-norm",
                         "--dropout", "0.25", "--tta", "flip", "--out", run)
        assert RECIPE_LINE in first.stdout.splitlines(), first.stdout
        assert (run / "final_views.txt").read_text() == "flip\n"

        resumed = finetune(program, "--resume", run, "--epochs", "2", "--sampling", "balanced",
                           "--batch-norm")
        assert RECIPE_LINE in resumed.stdout.splitlines(), resumed.stdout
        assert "  batch 20  " in line_starting(resumed.stdout, "device "), resumed.stdout
        assert (line_starting(resumed.stdout, "Training") ==
                line_starting(first.stdout, "Training")), resumed.stdout
        line_starting(resumed.stdout, "epoch 2/2 ")
        line_starting(resumed.stdout, "test-time augmentation flip (2 views) for the final scores")
        print(f"resumed with: {RECIPE_LINE}, batch 20, seed 5, final scores with --tta flip")

        plain = Path(folder) / "plain"
        finetune(program, "--epochs", "1", "--batch-size", "20", "--out", plain)
        refused = finetune(program, "--resume", plain, "--epochs", "2", "--batch-norm", status=1)
        expected = (f"error: --batch-norm is on, but the checkpoint in {plain / 'checkpoint'} has "
                    "off; leave --batch-norm out to resume with the checkpoint's")
        assert refused.stderr.strip() == expected, refused.stderr

        checkpoint = run / "checkpoint"
        refused = finetune(program, "--resume", run, "--epochs", "3", "--augment", "flip",
                           status=1)
        expected = (f"error: --augment is flip, but the checkpoint in {checkpoint} has crop 2, "
                    "flip; leave --augment out to resume with the checkpoint's")
        assert refused.stderr.strip() == expected, refused.stderr
        refused = finetune(program, "--resume", run, "--epochs", "3", "--batch-size", "25",
                           status=1)
        assert f"error: --batch-size is 25, but the checkpoint in {checkpoint} has 20;" \
            in refused.stderr, refused.stderr
        assert "read " not in refused.stdout, refused.stdout
        refused = finetune(program, "--resume", run, "--epochs", "3", "--dropout", "0.5",
                           status=1)
        expected = (f"error: --dropout is 0.5, but the checkpoint in {checkpoint} has 0.25; "
                    "leave --dropout out to resume with the checkpoint's")
        assert refused.stderr.strip() == expected, refused.stderr

        (run / "final_views.txt").write_bytes(b"crops=3\r\n")
        damaged = finetune(program, "--resume", run, "--epochs", "3", "--sampling", "balanced",
                           "--batch-norm", status=1)
        assert f'{run / "final_views.txt"}: holds "crops=3\\x0d", which is not a list of ' \
            in damaged.stderr, damaged.stderr
        assert "give --tta to replace it" in damaged.stderr, damaged.stderr
        assert "read " not in damaged.stdout, damaged.stdout

        (run / "final_views.txt").unlink()
        older = finetune(program, "--resume", run, "--epochs", "3", "--sampling", "balanced",
                         "--batch-norm")
        assert f"{run / 'final_views.txt'} is missing (a run of an older fvc-finetune): the " \
            "final scores take each image once; give --tta" in older.stdout, older.stdout
        assert "test-time augmentation" not in older.stdout, older.stdout
    print("ok")


if __name__ == "__main__":
    main()
