#!/usr/bin/env python3
"""Prints the per-epoch table of docs/RESULTS.md from fvc-finetune output folders.

Usage: results_table.py REFERENCE_HISTORY_CSV LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]

Each RUN_FOLDER is an --out folder of fvc-finetune; its history.csv gives the columns. The
reference history (the study's seed_finetune_history.csv) stands in the first columns. A run
still in progress shows the epochs it has finished so far.
"""

import csv
import sys
from pathlib import Path


def read_history(path):
    with open(path, newline="") as file:
        return {int(row["epoch"]): row for row in csv.DictReader(file)}


def cell(history, epoch, column, digits=4):
    row = history.get(epoch)
    if row is None:
        return ""
    value = float(row[column])
    return f"{value:.{digits}f}" if column != "seconds" else f"{value:.0f}"


def main():
    if len(sys.argv) < 3 or any("=" not in arg for arg in sys.argv[2:]):
        sys.exit(__doc__)
    study = read_history(sys.argv[1])
    runs = []
    for arg in sys.argv[2:]:
        label, folder = arg.split("=", 1)
        history_path = Path(folder) / "history.csv"
        runs.append((label, read_history(history_path) if history_path.exists() else {}))

    header = ["epoch", "study acc", "study val_acc", "study s"]
    for label, _ in runs:
        header += [f"{label} acc", f"{label} val_acc", f"{label} s"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    last = max([16] + [max(h, default=0) for _, h in runs])
    for epoch in range(1, last + 1):
        row = [str(epoch), cell(study, epoch, "acc"), cell(study, epoch, "val_acc"),
               cell(study, epoch, "seconds")]
        for _, history in runs:
            row += [cell(history, epoch, "acc"), cell(history, epoch, "val_acc"),
                    cell(history, epoch, "seconds")]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
