#!/usr/bin/env python3
"""Checks fvc-finetune's optimisation flags: recorded by a run, used again by --resume.

A first run trains a narrow network for two epochs on the built-in synthetic faces with SGD, a
cosine schedule after a warm-up, label smoothing and the first block frozen for one epoch. Its
log must name the recipe and the schedule, show each epoch's learning rates and say when the
block thaws. --resume of that run takes the flags from its checkpoint; a flag that contradicts
the checkpoint ends the program with status 1 before any data is read, naming the flag and both
values, and so does --epochs under the cosine schedule. Flags out of range are refused by
the option parser (status 2); --momentum without --optimizer sgd, schedule flags that do not fit
together, and float16 on the CPU, by the program (status 1), before any data is read.

Usage: finetune_optimisation.py PATH_TO_FVC_FINETUNE
Needs only the standard library.
"""

import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

RECIPE = ("optimizer sgd (Nesterov momentum 0.8) with weight decay (L2) 0.001 on kernels and "
          "dense weights; label smoothing 0.1; backbone block 1 frozen for 1 epoch")
FLAGS = ["--optimizer", "sgd", "--momentum", "0.8", "--weight-decay", "0.001", "--lr", "0.01",
         "--schedule", "cosine", "--warmup-epochs", "0.5", "--min-lr", "0.0001",
         "--label-smoothing", "0.1", "--freeze-blocks", "1", "--freeze-epochs", "1"]


def finetune(program, *options, status=0):
    return run_checked([program, *study_recipe(options), "--synthetic", "100", "--base-filters", "2", "--threads", "1",
                        "--batch-size", "20", *options], status)


def lines_starting(output, start):
    return [line for line in output.splitlines() if line.startswith(start)]


def main():
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        first = finetune(program, "--epochs", "2", *FLAGS, "--out", run)
        assert RECIPE in first.stdout.splitlines(), first.stdout
        schedule = lines_starting(first.stdout, "schedule cosine: learning rate rising from ")
        assert schedule and "then along a cosine to 0.0001 over" in schedule[0], first.stdout
        assert len(lines_starting(first.stdout, "epoch 1/2: learning rate from ")) == 1
        assert "epoch 2: backbone block 1 trains again" in first.stdout, first.stdout

        # The finished run resumes with the recorded recipe (a flag given with the recorded
        # value is accepted) and has nothing left to do but the final scoring.
        resumed = finetune(program, "--resume", run, "--optimizer", "sgd")
        assert "resumed from " in resumed.stdout, resumed.stdout
        assert "epoch 3/" not in resumed.stdout, resumed.stdout

        checkpoint = run / "checkpoint"
        refused = finetune(program, "--resume", run, "--schedule", "onecycle", status=1)
        assert refused.stderr.strip() == (
            f"error: --schedule is onecycle, but the checkpoint in {checkpoint} has cosine; "
            "leave --schedule out to resume with the checkpoint's"), refused.stderr
        assert "read " not in refused.stdout, refused.stdout
        refused = finetune(program, "--resume", run, "--label-smoothing", "0.2", status=1)
        assert "error: --label-smoothing is 0.2, but the checkpoint in" in refused.stderr
        refused = finetune(program, "--resume", run, "--epochs", "3", status=1)
        assert refused.stderr.strip() == (
            f"error: --epochs is 3, but the checkpoint in {checkpoint} has a cosine schedule "
            "spread over 2 epochs; leave --epochs out to resume with the checkpoint's"), \
            refused.stderr

        refused = finetune(program, "--momentum", "0.5", "--out", Path(folder) / "m", status=1)
        assert refused.stderr.strip() == (
            "error: --momentum is for --optimizer sgd, but the optimizer is adam; leave "
            "--momentum out"), refused.stderr
        refused = finetune(program, "--min-lr", "0.01", "--schedule", "cosine", status=1)
        assert refused.stderr.strip() == "error: --min-lr is 0.01, expected at most --lr (0.001)"
        refused = finetune(program, "--epochs", "2", "--warmup-epochs", "3", status=1)
        assert refused.stderr.strip() == (
            "error: --warmup-epochs is 3, expected at most --epochs (2)"), refused.stderr
        finetune(program, "--weight-decay", "1", status=2)
        finetune(program, "--freeze-blocks", "2", status=2)  # needs --freeze-epochs
        refused = finetune(program, "--precision", "float16", "--device", "cpu", status=1)
        assert refused.stderr.strip() == (
            "error: --precision float16 needs a CUDA device, but --device cpu gives cpu; use "
            "--precision bfloat16 there"), refused.stderr
    print("ok")


if __name__ == "__main__":
    main()
