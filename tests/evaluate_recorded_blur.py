#!/usr/bin/env python3
"""Checks that a model trained with fvc-finetune --scored-blur carries the blur to fvc-evaluate.

fvc-finetune trains a narrow network for one epoch on the built-in synthetic faces with
--scored-blur 2. Its model.json must record "fvc_scored_image_blur": 2, and fvc-evaluate, told
nothing of the blur, must print fvc-finetune's PrivateTest line. With --blur 0 it scores the
faces as they are, says so, and prints another line. Resuming the run with another
--scored-blur is refused, naming the flag, before any work; so are a blur of NaN or above 8.

Usage: evaluate_recorded_blur.py FVC_FINETUNE FVC_EVALUATE
Needs only the standard library.
"""

import csv
import json
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, score_line

COMMON = ["--synthetic", "300", "--threads", "1", "--precision", "float32"]


def read_probabilities(folder):
    """The probability columns of predictions_privatetest.csv, row after row."""
    with open(folder / "predictions_privatetest.csv") as source:
        return [row[3:] for row in csv.reader(source)][1:]


def main():
    finetune, evaluate = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run = folder / "run"
        trained = run_checked([finetune, "--recipe", "original", *COMMON, "--base-filters", "4",
                               "--epochs", "1", "--batch-size", "30", "--lr", "3e-4",
                               "--scored-blur", "2", "--out", run])
        assert "scored images blurred (Gaussian, sigma 2 pixels)" in trained.stdout, trained.stdout
        with open(run / "model.json") as source:
            assert json.load(source)["fvc_scored_image_blur"] == 2, "model.json records no blur"

        model = ["--model", run / "model.json", "--weights", run / "weights.h5"]
        recorded = run_checked([evaluate, *model, *COMMON, "--out", folder / "recorded"])
        assert ", scored-image blur 2)" in recorded.stdout, recorded.stdout
        assert score_line(recorded.stdout, "PrivateTest") == \
            score_line(trained.stdout, "PrivateTest"), (recorded.stdout, trained.stdout)
        print("fvc-evaluate:", score_line(recorded.stdout, "PrivateTest"))

        sharp = run_checked([evaluate, *model, *COMMON, "--blur", "0", "--out", folder / "sharp"])
        assert "scoring with --blur 0 instead" in sharp.stdout, sharp.stdout
        # A network this little trained may give the same accuracy either way, but not the
        # same probabilities.
        blurred_probabilities = read_probabilities(folder / "recorded")
        sharp_probabilities = read_probabilities(folder / "sharp")
        assert blurred_probabilities != sharp_probabilities, "--blur 0 changed nothing"
        assert blurred_probabilities == read_probabilities(run), \
            "fvc-evaluate's probabilities differ from fvc-finetune's"
        print("fvc-evaluate --blur 0:", score_line(sharp.stdout, "PrivateTest"))

        for program, flag in ((evaluate, "--blur"), (finetune, "--scored-blur")):
            for value in ("nan", "9"):
                refused = run_checked([program, flag, value], 2)
                assert refused.stderr.startswith(
                    f"{flag}: value {value} is not a number in [0, 8]"), refused.stderr

        refused = run_checked([finetune, *COMMON, "--resume", run, "--scored-blur", "1"], 1)
        assert "--scored-blur is 1, but the checkpoint in" in refused.stderr, refused.stderr
        assert "has 2; leave --scored-blur out" in refused.stderr, refused.stderr
    print("ok")


if __name__ == "__main__":
    main()
