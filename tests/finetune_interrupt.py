#!/usr/bin/env python3
"""Checks that SIGINT and SIGTERM stop fvc-finetune without losing any work.

A reference run trains a narrow network for several epochs on the built-in synthetic faces.
Two more runs of the same recipe are each sent one signal (SIGINT, then SIGTERM) once their
first epoch's checkpoint is on disk. Each must finish its batch, write a checkpoint, say how to
go on and exit with status 4 (the signal may land inside epoch 2 or between epochs, so the
stop line varies); `--resume` must then end with the reference run's history and
PrivateTest probabilities, digit for digit, and leave no temporary file behind.

Usage: finetune_interrupt.py PATH_TO_FVC_FINETUNE
Needs only the standard library.
"""

import csv
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from program_runs import run_checked, study_recipe

EPOCHS = 8
INTERRUPTED = 4
NOTICE = "stopping after this batch and writing a checkpoint"


def recipe(*options):
    return [*study_recipe(options), "--synthetic", "300", "--base-filters", "2", "--threads", "1",
            "--batch-size", "10", "--seed", "7", "--epochs", str(EPOCHS), *options]


def history_without_times(run):
    """history.csv's rows without the seconds column, which differs between any two runs."""
    with open(run / "history.csv", newline="") as file:
        return [{key: value for key, value in row.items() if key != "seconds"}
                for row in csv.DictReader(file)]


def wait_for(path, process, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended with status {process.returncode} before "
                                 f"{path} appeared:\n{process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.01)


def interrupt(program, run, signal_number):
    """Starts a run, sends `signal_number` once epoch 1's checkpoint exists, and returns the
    run's output after checking that it stopped as asked."""
    process = subprocess.Popen([program, *recipe("--out", run)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(run / "checkpoint" / "checkpoint.json", process)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    name = signal.Signals(signal_number).name
    assert process.returncode == INTERRUPTED, (
        f"{name}: exit status {process.returncode}, expected {INTERRUPTED}\n{stdout}\n{stderr}")
    assert NOTICE in stderr, stderr
    assert f"stopped on request; continue with --resume {run}" in stderr, stderr
    stopped = [line for line in stdout.splitlines() if line.startswith("stopped ")]
    assert stopped, stdout
    finished = len(history_without_times(run))
    assert 1 <= finished < EPOCHS, f"{name}: {finished} epochs in history.csv"
    print(f"{name}: {stopped[0]}")
    return stdout


def main():
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference"
        run_checked([program, *recipe("--out", reference)])
        expected_history = history_without_times(reference)
        expected_predictions = (reference / "predictions_privatetest.csv").read_text()
        assert len(expected_history) == EPOCHS, expected_history

        for signal_number in (signal.SIGINT, signal.SIGTERM):
            run = Path(folder) / signal.Signals(signal_number).name
            interrupt(program, run, signal_number)
            resumed = run_checked([program, *recipe("--resume", run)])
            assert f"epoch {EPOCHS}/{EPOCHS} " in resumed.stdout, resumed.stdout
            assert history_without_times(run) == expected_history, (
                f"{run}: history after resuming differs from the uninterrupted run's")
            assert (run / "predictions_privatetest.csv").read_text() == expected_predictions
            leftovers = sorted(path.name for path in run.rglob("*.tmp-*"))
            assert not leftovers, leftovers
    print("ok")


if __name__ == "__main__":
    main()
