#!/usr/bin/env python3
"""Takes one model through every file form fvc's programs read and write.

fvc-finetune trains a narrow network for one epoch on a small FER2013-style CSV
of random images and scores its reloaded copy on PrivateTest. fvc-convert then
turns its model.json and weights.h5 into a model.save file and a TorchScript
archive, and the model.save file back into JSON plus weights. fvc-evaluate must
score both copies exactly as fvc-finetune scored the original: the same
accuracy and loss line and the same probabilities for every image. When torch
imports, the TorchScript archive must give those probabilities too.

It also checks the exit statuses of the combinations the programs refuse:
2 for options, 1 for a file that cannot be read.

Usage: programs_round_trip.py FVC_FINETUNE FVC_CONVERT FVC_EVALUATE
Needs only the standard library; torch is used when present.
"""

import csv
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SPLIT_SIZES = {"Training": 60, "PublicTest": 20, "PrivateTest": 30}
# The programs print probabilities with about 8 significant digits, and each copy
# computes in float32 from the same values, so they agree far closer than this.
TOLERANCE = 1e-6
# TorchScript runs the layers in its own order of operations.
TORCHSCRIPT_TOLERANCE = 1e-5


def write_random_csv(path, rng):
    with open(path, "w", newline="") as out:
        out.write("emotion,pixels,Usage\n")
        for usage, count in SPLIT_SIZES.items():
            for _ in range(count):
                pixels = " ".join(str(rng.randrange(256)) for _ in range(48 * 48))
                out.write(f"{rng.randrange(7)},{pixels},{usage}\n")


def run(command, expected_status, what):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if result.returncode != expected_status:
        print(result.stdout, result.stderr, sep="\n")
        raise AssertionError(f"{what}: exit status {result.returncode}, expected {expected_status}")
    return result


def score_line(output, what):
    """'accuracy 0.1333 (4/30)  loss 1.9459' from a program's PrivateTest line."""
    found = re.search(r"^PrivateTest +(accuracy \S+ \(\d+/\d+\)  loss \S+)", output, re.M)
    assert found, f"{what}: no PrivateTest accuracy line in:\n{output}"
    return found.group(1)


def read_predictions(path):
    with open(path) as source:
        rows = list(csv.reader(source))
    assert rows[0][:3] == ["row", "emotion", "predicted"], f"{path}: header {rows[0]}"
    return [[float(value) for value in row[3:]] for row in rows[1:]]


def largest_difference(left, right):
    assert len(left) == len(right), f"{len(left)} rows against {len(right)}"
    return max(abs(a - b) for row_a, row_b in zip(left, right) for a, b in zip(row_a, row_b))


def check_torchscript(archive, data, expected):
    try:
        import torch
    except ImportError:
        print("torch does not import here: the TorchScript archive was written but not run")
        return
    with open(data) as source:
        pixels = [[float(v) for v in row["pixels"].split()]
                  for row in csv.DictReader(source) if row["Usage"] == "PrivateTest"]
    images = (torch.tensor(pixels) / 255.0).reshape(-1, 1, 48, 48).repeat(1, 3, 1, 1)
    with torch.no_grad():
        probabilities = torch.jit.load(str(archive))(images).tolist()
    difference = largest_difference(probabilities, expected)
    print(f"TorchScript archive: largest probability difference {difference:.2e}")
    assert difference < TORCHSCRIPT_TOLERANCE, f"TorchScript disagrees by {difference}"


def main():
    finetune, convert, evaluate = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = folder / "random.csv"
        write_random_csv(data, random.Random(20170501))
        common = ["--data", data, "--threads", "1"]

        trained = run([finetune, *common, "--epochs", "1", "--batch-size", "20",
                       "--base-filters", "2", "--out", folder / "run"], 0, "fvc-finetune")
        expected_score = score_line(trained.stdout, "fvc-finetune")

        # The same run from an HDF5 cache: written the first time, read the second, same scores.
        cache = folder / "random.h5"
        for status in ("wrote", "loaded"):
            cached = run([finetune, *common, "--cache", cache, "--epochs", "1", "--batch-size",
                          "20", "--base-filters", "2", "--out", folder / "cached"], 0,
                         "fvc-finetune --cache")
            assert f"cache: {status} {cache}" in cached.stdout, cached.stdout
            assert score_line(cached.stdout, "fvc-finetune --cache") == expected_score
        expected = read_predictions(folder / "run" / "predictions_privatetest.csv")
        parameters = int(re.search(r"parameters (\d+)", trained.stdout).group(1))

        json_in = ["--model", folder / "run" / "model.json",
                   "--weights", folder / "run" / "weights.h5"]
        converted = run([convert, *json_in, "--summary", "--to-model", folder / "model.h5",
                         "--torchscript", folder / "model.pt"], 0, "fvc-convert to model.save")
        assert f"Total params: {parameters:,}\n" in converted.stdout, converted.stdout
        for path in ("model.h5", "model.pt"):
            assert f"wrote {folder / path}: " in converted.stdout, converted.stdout
        run([convert, "--model", folder / "model.h5", "--to-json", folder / "back.json",
             "--to-weights", folder / "back.h5"], 0, "fvc-convert back to JSON and weights")

        for form, model in (("model.save", ["--model", folder / "model.h5"]),
                            ("JSON and weights", ["--model", folder / "back.json",
                                                  "--weights", folder / "back.h5"])):
            out = folder / f"evaluate-{form.split()[0]}"
            scored = run([evaluate, *model, *common, "--split", "PrivateTest", "--out", out], 0,
                         f"fvc-evaluate on {form}")
            score = score_line(scored.stdout, f"fvc-evaluate on {form}")
            assert score == expected_score, f"{form}: '{score}', fvc-finetune '{expected_score}'"
            difference = largest_difference(read_predictions(out / "predictions_privatetest.csv"),
                                            expected)
            print(f"{form}: {score}; largest probability difference {difference:.2e}")
            assert difference < TOLERANCE, f"{form}: probabilities disagree by {difference}"
        check_torchscript(folder / "model.pt", data, expected)

        run([convert, *json_in], 2, "fvc-convert without an output")
        run([convert, "--model", folder / "run" / "model.json", "--to-model", folder / "x.h5"], 2,
            "fvc-convert writing a JSON model without weights")
        run([convert, *json_in, "--to-json", folder / "x.json"], 2,
            "fvc-convert --to-json without --to-weights")
        run([convert, "--model", folder / "model.h5", "--weights", folder / "back.h5",
             "--summary"], 2, "fvc-convert with --weights for a model.save file")
        summarised = run([convert, "--model", folder / "run" / "model.json", "--summary"], 0,
                         "fvc-convert summarising a JSON model")
        assert "Glorot-initialised" in summarised.stdout, summarised.stdout
        unreadable = run([convert, "--model", folder / "run" / "weights.h5", "--summary"], 1,
                         "fvc-convert on a save_weights file")
        assert unreadable.stderr.startswith("error: "), unreadable.stderr
        assert not (folder / "x.h5").exists() and not (folder / "x.json").exists()
        run([evaluate, "--model", folder / "run" / "model.json", *common,
             "--out", folder / "evaluate-refused"], 2,
            "fvc-evaluate on a JSON model without weights")
    print("ok")


if __name__ == "__main__":
    main()
