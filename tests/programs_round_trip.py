#!/usr/bin/env python3
"""Takes one model through every file form fvc's programs read and write.

fvc-finetune trains a narrow network for one epoch on a small FER2013-style CSV
of random images and scores its reloaded copy on PrivateTest. fvc-convert then
turns its model.json and weights.h5 into a model.save file and a TorchScript
archive, and the model.save file back into JSON plus weights. fvc-evaluate must
score both copies exactly as fvc-finetune scored the original: the same
accuracy and loss line and the same probabilities for every image. When torch
imports, the TorchScript archive must give those probabilities too, both from
images prepared by hand and through its own preprocess method.

A second run uses --preprocessing vggface_means: model.json records it, and
fvc-evaluate and the TorchScript archive must prepare the images that way
unasked to reproduce the scores. A third adds --batch-norm and --dropout: the
programs must say so, and the model.save copy and the TorchScript archive must
reproduce its scores with the moving statistics and without dropout. A resume that names another preprocessing and
a start from a broken --init-weights file are refused, the latter without
leaving an empty output folder.

It also checks the exit statuses of the combinations the programs refuse:
2 for options, 1 for a file that cannot be read.

Usage: programs_round_trip.py FVC_FINETUNE FVC_CONVERT FVC_EVALUATE
Needs only the standard library; torch is used when present.
"""

import csv
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from program_runs import study_recipe

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
    command = [str(part) for part in command]
    if Path(command[0]).name == "fvc-finetune":
        command[1:1] = study_recipe(command)
    result = subprocess.run(command, capture_output=True, text=True)
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


def check_torchscript(archive, data, expected, preprocessing):
    try:
        import torch
    except ImportError:
        print("torch does not import here: the TorchScript archive was written but not run")
        return
    with open(data) as source:
        pixels = [[float(v) for v in row["pixels"].split()]
                  for row in csv.DictReader(source) if row["Usage"] == "PrivateTest"]
    pixels = torch.tensor(pixels).reshape(-1, 48, 48)
    module = torch.jit.load(str(archive))
    assert module.preprocessing == preprocessing, module.preprocessing
    with torch.no_grad():
        inputs = {"its preprocess method": module.preprocess(pixels.to(torch.uint8))}
        if preprocessing == "unit_range":
            inputs["pixels / 255"] = (pixels / 255.0).unsqueeze(1).repeat(1, 3, 1, 1)
        for how, images in inputs.items():
            difference = largest_difference(module(images).tolist(), expected)
            print(f"TorchScript archive, {preprocessing} by {how}: largest probability "
                  f"difference {difference:.2e}")
            assert difference < TORCHSCRIPT_TOLERANCE, f"TorchScript disagrees by {difference}"


def main():
    finetune, convert, evaluate = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = folder / "random.csv"
        write_random_csv(data, random.Random(20170501))
        # float32: the TorchScript archive and h5py's reading are compared with fvc-evaluate's
        # probabilities to 1e-5, closer than bfloat16 scoring comes.
        common = ["--data", data, "--threads", "1", "--precision", "float32"]

        trained = run([finetune, *common, "--epochs", "1", "--batch-size", "20",
                       "--base-filters", "2", "--out", folder / "run"], 0, "fvc-finetune")
        expected_score = score_line(trained.stdout, "fvc-finetune")

        # The same run from an HDF5 cache: written the first time, read the second, same scores.
        cache = folder / "random.h5"
        for status in ("wrote", "loaded"):
            cached = run([finetune, *common, "--cache", cache, "--epochs", "1", "--batch-size",
                          "20", "--base-filters", "2", "--out", folder / f"cached-{status}"], 0,
                         "fvc-finetune --cache")
            assert f"cache: {status} {cache}" in cached.stdout, cached.stdout
            assert score_line(cached.stdout, "fvc-finetune --cache") == expected_score
        again = run([finetune, *common, "--epochs", "1", "--out", folder / "run"], 1,
                    "fvc-finetune into a folder holding a run")
        assert "already holds a run" in again.stderr and "--resume" in again.stderr, again.stderr
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
            if form == "model.save":
                cached = run([evaluate, *model, *common, "--cache", folder / "random.h5",
                              "--split", "PrivateTest", "--out", out], 0,
                             "fvc-evaluate --cache")
                assert f"cache: loaded {folder / 'random.h5'}" in cached.stdout, cached.stdout
                assert score_line(cached.stdout, "fvc-evaluate --cache") == expected_score
            difference = largest_difference(read_predictions(out / "predictions_privatetest.csv"),
                                            expected)
            print(f"{form}: {score}; largest probability difference {difference:.2e}")
            assert difference < TOLERANCE, f"{form}: probabilities disagree by {difference}"
        check_torchscript(folder / "model.pt", data, expected, "unit_range")

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
        check_vggface_means(finetune, convert, evaluate, folder, common)
        check_batch_norm_dropout(finetune, convert, evaluate, folder, common)
        check_refused_starts(finetune, folder, common)
    print("ok")


def check_vggface_means(finetune, convert, evaluate, folder, common):
    run_folder = folder / "vgg"
    trained = run([finetune, *common, "--epochs", "1", "--batch-size", "20", "--base-filters",
                   "2", "--preprocessing", "vggface_means", "--out", run_folder], 0,
                  "fvc-finetune --preprocessing vggface_means")
    assert "preprocessing vggface_means" in trained.stdout, trained.stdout
    expected_score = score_line(trained.stdout, "fvc-finetune --preprocessing vggface_means")
    expected = read_predictions(run_folder / "predictions_privatetest.csv")
    with open(run_folder / "model.json") as source:
        recorded = json.load(source).get("fvc_preprocessing")
    assert recorded == "vggface_means", f"model.json records {recorded!r}"

    converted = run([convert, "--model", run_folder / "model.json", "--weights",
                     run_folder / "weights.h5", "--to-model", run_folder / "model.h5",
                     "--torchscript", run_folder / "model.pt"], 0, "fvc-convert vggface_means")
    assert "preprocessing vggface_means" in converted.stdout, converted.stdout
    out = folder / "evaluate-vgg"
    scored = run([evaluate, "--model", run_folder / "model.h5", *common, "--split",
                  "PrivateTest", "--out", out], 0, "fvc-evaluate on vggface_means")
    assert "preprocessing vggface_means" in scored.stdout, scored.stdout
    score = score_line(scored.stdout, "fvc-evaluate on vggface_means")
    assert score == expected_score, f"vggface_means: '{score}', fvc-finetune '{expected_score}'"
    difference = largest_difference(read_predictions(out / "predictions_privatetest.csv"),
                                    expected)
    print(f"vggface_means: {score}; largest probability difference {difference:.2e}")
    assert difference < TOLERANCE, f"vggface_means: probabilities disagree by {difference}"
    check_torchscript(run_folder / "model.pt", common[1], expected, "vggface_means")

    refused = run([finetune, *common, "--epochs", "2", "--resume", run_folder,
                   "--preprocessing", "unit_range"], 1, "resume with another preprocessing")
    assert "--preprocessing is unit_range, but the checkpoint in" in refused.stderr, \
        refused.stderr
    assert "has vggface_means; leave --preprocessing out" in refused.stderr, refused.stderr


def check_batch_norm_dropout(finetune, convert, evaluate, folder, common):
    run_folder = folder / "bn"
    trained = run([finetune, *common, "--epochs", "1", "--batch-size", "20", "--base-filters",
                   "2", "--batch-norm", "--dropout", "0.3", "--out", run_folder], 0,
                  "fvc-finetune --batch-norm --dropout")
    assert "batch normalisation; dropout 0.3" in trained.stdout.splitlines(), trained.stdout
    expected_score = score_line(trained.stdout, "fvc-finetune --batch-norm --dropout")
    expected = read_predictions(run_folder / "predictions_privatetest.csv")

    converted = run([convert, "--model", run_folder / "model.json", "--weights",
                     run_folder / "weights.h5", "--to-model", run_folder / "model.h5",
                     "--torchscript", run_folder / "model.pt"], 0, "fvc-convert --batch-norm")
    assert "13 BatchNormalization layers, dropout 0.3" in converted.stdout, converted.stdout
    out = folder / "evaluate-bn"
    scored = run([evaluate, "--model", run_folder / "model.h5", *common, "--split",
                  "PrivateTest", "--out", out], 0, "fvc-evaluate on --batch-norm --dropout")
    assert "batch_norm on, dropout 0.3" in scored.stdout, scored.stdout
    score = score_line(scored.stdout, "fvc-evaluate on --batch-norm --dropout")
    assert score == expected_score, f"batch norm: '{score}', fvc-finetune '{expected_score}'"
    difference = largest_difference(read_predictions(out / "predictions_privatetest.csv"),
                                    expected)
    print(f"batch norm and dropout: {score}; largest probability difference {difference:.2e}")
    assert difference < TOLERANCE, f"batch norm: probabilities disagree by {difference}"
    check_torchscript(run_folder / "model.pt", common[1], expected, "unit_range")


def check_refused_starts(finetune, folder, common):
    broken = folder / "broken.h5"
    broken.write_bytes(b"not HDF5")
    out = folder / "never-made"
    refused = run([finetune, *common, "--epochs", "1", "--init-weights", broken, "--out", out], 1,
                  "fvc-finetune from a broken --init-weights file")
    assert str(broken) in refused.stderr, refused.stderr
    assert not out.exists(), f"{out} was made for a run that never started"


if __name__ == "__main__":
    main()
