#!/usr/bin/env python3
"""Checks what fvc-finetune does when its output folder's disk is full.

The disk is a small tmpfs mounted in a private mount namespace (`unshare -m`), so nothing
outside this test sees it; where mounting is not allowed the test reports itself skipped
(status 77).

1. On a disk too small for two checkpoints the run is refused before the first batch, with
   status 1 and a message naming the folder, the free space and the space needed.
2. On a disk that fills up after epoch 1's checkpoint, the next write fails: status 1, a
   message naming the file and the cause, and the checkpoint of epoch 1 left whole. Once the
   space is freed, `--resume` ends with the history of a run that never met a full disk.

Usage: finetune_full_disk.py PATH_TO_FVC_FINETUNE
Needs only the standard library, root (or a user namespace) for the mount, and util-linux.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from program_runs import run_checked, study_recipe

SKIPPED = 77
INSIDE = "FVC_TEST_PRIVATE_MOUNTS"
EPOCHS = 6


def recipe(*options):
    return [*study_recipe(options), "--synthetic", "300", "--base-filters", "2", "--threads", "1",
            "--batch-size", "10", "--seed", "3", "--epochs", str(EPOCHS), *options]


def rerun_in_private_mount_namespace():
    """Runs this script again where its mounts are its own; returns that run's status."""
    if shutil.which("unshare") is None:
        print("skipped: unshare (util-linux) is not installed")
        return SKIPPED
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                             *sys.argv], env={**os.environ, INSIDE: "1"})
    if result.returncode not in (0, SKIPPED):
        probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
        if probe.returncode != 0:
            print(f"skipped: no private mount namespace here: {probe.stderr.decode().strip()}")
            return SKIPPED
    return result.returncode


def mount_tmpfs(folder, size):
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                            capture_output=True, text=True)
    return result.returncode == 0


def history_without_times(run):
    with open(run / "history.csv", newline="") as file:
        return [{key: value for key, value in row.items() if key != "seconds"}
                for row in csv.DictReader(file)]


def refused_before_training(program, disk):
    run = disk / "run"
    refused = run_checked([program, *recipe("--out", run)], status=1)
    pattern = (rf"error: {re.escape(str(run / 'checkpoint'))}: 0\.\d MB free, but two "
               r"checkpoints of this model need about \d+\.\d MB; free some space or choose "
               r"another folder")
    assert re.fullmatch(pattern, refused.stderr.strip()), refused.stderr
    assert "epoch 1/" not in refused.stdout, refused.stdout
    print(refused.stderr.strip())


def fill_when_exists(path, filler, process, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"the run ended early:\n{process.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.005)
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(bytes(1 << 16))
                file.flush()
        except OSError:
            pass  # the disk is full


def filled_during_training(program, disk, expected_history):
    run = disk / "run"
    filler = disk / "filler"
    process = subprocess.Popen([program, *recipe("--out", run)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    fill_when_exists(run / "checkpoint" / "checkpoint.json", filler, process)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, f"status {process.returncode}\n{stdout}\n{stderr}"
    error = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, stderr
    assert re.match(rf"error: {re.escape(str(run))}/\S+: .*No space left on device", error[0]), \
        error[0]
    hint = (f"the last checkpoint in {run / 'checkpoint'} is whole; once that is fixed, "
            f"continue with --resume {run}")
    assert hint in stderr, stderr
    print(error[0])

    filler.unlink()
    resumed = run_checked([program, *recipe("--resume", run)])
    assert f"epoch {EPOCHS}/{EPOCHS} " in resumed.stdout, resumed.stdout
    assert history_without_times(run) == expected_history, "history differs after resuming"
    leftovers = sorted(path.name for path in run.rglob("*.tmp-*"))
    assert not leftovers, leftovers


def main():
    if os.environ.get(INSIDE) != "1":
        return rerun_in_private_mount_namespace()
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        try:
            if not mount_tmpfs(root / "small", "300k"):
                print("skipped: cannot mount a tmpfs here")
                return SKIPPED
            refused_before_training(program, root / "small")

            reference = root / "reference"
            run_checked([program, *recipe("--out", reference)])
            assert mount_tmpfs(root / "filling", "20m")
            filled_during_training(program, root / "filling", history_without_times(reference))
        finally:
            # Unmounted before the temporary folder is removed, which cannot remove a mount.
            for disk in ("small", "filling"):
                subprocess.run(["umount", "--lazy", root / disk], capture_output=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
