#!/usr/bin/env python3
"""Checks the scores per emotion and the test-time augmentation of fvc-finetune and fvc-evaluate.

fvc-finetune trains a narrow network for one epoch on the built-in synthetic faces with
--tta flip. Its final PublicTest and PrivateTest scores are then those of the image and its
mirror, while the check that the reloaded model reproduces the last validation accuracy
still passes. fvc-evaluate scores the saved model on PrivateTest with --tta flip and must
print fvc-finetune's PrivateTest line; without --tta and with --tta flip,crops=3 it writes
other scores.

For every run, each metrics_<split>.csv is recomputed here from the confusion_<split>.csv
beside it (precision, recall, F1 and support per emotion, macro, weighted and micro averages,
0 where a denominator is 0), and the table printed must show the same numbers.

Bad --tta values end either program with status 2 before any work, and the message names
--tta, the item refused and the words allowed.

Usage: evaluation_outputs.py FVC_FINETUNE FVC_EVALUATE
Needs only the standard library.
"""

import csv
import re
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, score_line

EMOTIONS = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
COMMON = ["--synthetic", "350", "--threads", "1"]
STUDY = ["--recipe", "original"]  # fvc-finetune trains with the study's recipe


def read_confusion(path):
    with open(path) as source:
        rows = list(csv.reader(source))
    assert rows[0] == [""] + EMOTIONS, f"{path}: header {rows[0]}"
    assert [row[0] for row in rows[1:]] == EMOTIONS, f"{path}: row names"
    return [[int(value) for value in row[1:]] for row in rows[1:]]


def read_probabilities(folder):
    """Every probability of predictions_privatetest.csv, row after row."""
    with open(folder / "predictions_privatetest.csv") as source:
        rows = list(csv.reader(source))[1:]
    return [float(value) for row in rows for value in row[3:]]


def ratio(a, b):
    return a / b if b else 0.0


def expected_metrics(confusion):
    """The rows metrics_<split>.csv must hold, computed from the confusion matrix."""
    total = sum(map(sum, confusion))
    rows = {}
    for k, name in enumerate(EMOTIONS):
        tp = confusion[k][k]
        predicted = sum(row[k] for row in confusion)
        support = sum(confusion[k])
        rows[name] = (ratio(tp, predicted), ratio(tp, support),
                      ratio(2 * tp, predicted + support), support)
    per_class = [rows[name] for name in EMOTIONS]
    rows["macro_avg"] = tuple(sum(r[i] for r in per_class) / 7 for i in range(3)) + (total,)
    rows["weighted_avg"] = tuple(ratio(sum(r[i] * r[3] for r in per_class), total)
                                 for i in range(3)) + (total,)
    accuracy = ratio(sum(confusion[k][k] for k in range(7)), total)
    rows["micro_avg"] = (accuracy, accuracy, accuracy, total)
    return rows


def check_metrics(folder, stem, output):
    confusion = read_confusion(folder / f"confusion_{stem}.csv")
    with open(folder / f"metrics_{stem}.csv") as source:
        written = list(csv.reader(source))
    assert written[0] == ["class", "precision", "recall", "f1", "support"], written[0]
    expected = expected_metrics(confusion)
    assert [row[0] for row in written[1:]] == list(expected), [row[0] for row in written[1:]]
    for row in written[1:]:
        want = expected[row[0]]
        assert all(abs(float(row[i + 1]) - want[i]) < 1e-6 for i in range(3)), (row, want)
        assert int(row[4]) == want[3], (row, want)
        # The printed table shows the same row with 4 decimals (micro_avg as accuracy).
        if row[0] == "micro_avg":
            shown = f"accuracy {want[0]:.4f} {want[3]}"
        else:
            shown = f"{row[0]} {want[0]:.4f} {want[1]:.4f} {want[2]:.4f} {want[3]}"
        assert shown in re.sub(" +", " ", output), f"no table line '{shown}' in:\n{output}"
    return expected["micro_avg"][0]


def check_refused(program, extra, value):
    refused = run_checked([program, *extra, "--tta", value], 2)
    message = refused.stderr
    assert message.startswith(f"--tta: '{value.split(',')[-1]}' is not one of flip, crops or "
                              "crops=PIXELS (PIXELS 1..47, 2 when left out)"), message


def main():
    finetune, evaluate = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run = folder / "run"
        trained = run_checked([finetune, *STUDY, *COMMON, "--base-filters", "4", "--epochs", "2",
                               "--batch-size", "25", "--lr", "3e-4", "--tta", "flip", "--out",
                               run])
        assert "test-time augmentation flip (2 views) for the final scores" in trained.stdout, \
            trained.stdout
        assert "reloaded model reproduces the final val_acc" in trained.stdout, trained.stdout
        for split in ("publictest", "privatetest"):
            accuracy = check_metrics(run, split, trained.stdout)
            print(f"fvc-finetune --tta flip: {split} accuracy {accuracy:.4f}, metrics agree")
        finetune_score = score_line(trained.stdout, "PrivateTest")

        model = ["--model", run / "model.json", "--weights", run / "weights.h5"]
        scores = {}
        for tta in (None, "flip", "flip,crops=3"):
            out = folder / f"evaluate-{tta or 'plain'}"
            options = ["--tta", tta] if tta else []
            scored = run_checked([evaluate, *model, *COMMON, "--split", "PrivateTest",
                                  *options, "--out", out])
            announced = "test-time augmentation" in scored.stdout
            assert announced == (tta is not None), scored.stdout
            check_metrics(out, "privatetest", scored.stdout)
            assert (out / "predictions_privatetest.csv").exists()
            scores[tta] = score_line(scored.stdout, "PrivateTest")
            print(f"fvc-evaluate --tta {tta}: {scores[tta]}")
        assert "flip, crops 3 (10 views)" in scored.stdout, scored.stdout
        assert scores["flip"] == finetune_score, (scores["flip"], finetune_score)
        # A network this little trained predicts nearly the same for every image, and may
        # predict the same classes with and without the views, but not the same probabilities.
        plain = read_probabilities(folder / "evaluate-plain")
        for tta in ("flip", "flip,crops=3"):
            viewed = read_probabilities(folder / f"evaluate-{tta}")
            difference = max(abs(a - b) for a, b in zip(viewed, plain))
            print(f"--tta {tta}: largest probability change {difference:.2e}")
            assert difference > 0, f"--tta {tta} left the probabilities as they were"

        for value in ("mirror", "flip,crops=0", "crops=48", "crops=2.5", "flip,crops=x"):
            check_refused(evaluate, [*model, *COMMON], value)
        check_refused(finetune, [*STUDY, *COMMON, "--out", folder / "refused"], "flip,rotate")
        assert not (folder / "refused").exists()
    print("ok")


if __name__ == "__main__":
    main()
