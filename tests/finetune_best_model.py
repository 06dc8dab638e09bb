#!/usr/bin/env python3
"""Checks fvc-finetune's best model folder and --early-stopping, across --resume.

A first run on the built-in synthetic faces asks for 4 epochs with --early-stopping 1
--min-delta 0.99: no epoch can beat the first by 0.99, so the run must stop after epoch 2,
say so, and end with status 0. OUT/best/best.json must name the epoch with the best val_acc in
history.csv, and the final report must name it too; when it is not the last epoch, the program
scores the kept model and fails with status 3 unless it reproduces that epoch's val_acc.

--resume with the same settings (taken from the checkpoint) must train nothing and say why;
--resume with --early-stopping 0 must train the two epochs left, and best.json must then name
the best of all four. A --min-delta of 1 is refused by the option parser (status 2).

Usage: finetune_best_model.py PATH_TO_FVC_FINETUNE
Needs only the standard library.
"""

import csv
import json
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe


def finetune(program, *options, status=0):
    # A setting whose val_acc rises for three epochs and then stays: the first run's best is
    # its last epoch, the resumed run's is not, so both kinds of report are checked.
    return run_checked([program, *study_recipe(options), "--synthetic", "400", "--base-filters", "4", "--threads", "1",
                        "--batch-size", "40", *options], status)


def best_in_history(out):
    """The first epoch with the highest val_acc in OUT/history.csv, and the epoch count."""
    with open(out / "history.csv", newline="") as history:
        rows = list(csv.DictReader(history))
    best = max(rows, key=lambda row: float(row["val_acc"]))
    return int(best["epoch"]), len(rows)


def check_best_folder(output, out):
    best, epochs = best_in_history(out)
    saved = json.loads((out / "best" / "best.json").read_text())
    assert saved["epoch"] == best, (saved, best)
    assert (out / "best" / "weights.h5").is_file() and (out / "best" / "model.json").is_file()
    if best == epochs:
        expected = f"best epoch {best} of {epochs}, the last: {out / 'best'} holds the model"
    else:
        expected = f"best epoch {best} of {epochs}, kept in {out / 'best'}  PublicTest accuracy "
    assert expected in output, output
    return best


def main():
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        first = finetune(program, "--epochs", "4", "--early-stopping", "1", "--min-delta",
                         "0.99", "--out", out)
        assert "early stopping after epoch 2 of 4: val_acc " in first.stdout, first.stdout
        assert "epoch 3/4" not in first.stdout, first.stdout
        print(f"first run: best epoch {check_best_folder(first.stdout, out)} of 2")

        again = finetune(program, "--resume", out)
        assert "early stopping: the history ends at epoch 2 of 4: " in again.stdout, again.stdout
        assert "trained 0 epochs" in again.stdout, again.stdout
        check_best_folder(again.stdout, out)

        longer = finetune(program, "--resume", out, "--early-stopping", "0")
        assert "epoch 4/4" in longer.stdout, longer.stdout
        assert "early stopping" not in longer.stdout, longer.stdout
        resumed_best = check_best_folder(longer.stdout, out)
        assert resumed_best < 4, "the best is the last epoch: the kept model went unscored"
        print(f"resumed: best epoch {resumed_best} of 4")

        refused = finetune(program, "--min-delta", "1", "--out", Path(folder) / "other",
                           status=2)
        assert "--min-delta" in refused.stderr and "[0, 1)" in refused.stderr, refused.stderr
    print("ok")


if __name__ == "__main__":
    main()
