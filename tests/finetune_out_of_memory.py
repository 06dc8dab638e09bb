#!/usr/bin/env python3
"""Checks what fvc-finetune says when a batch does not fit in memory.

The run is limited in address space (`prlimit --as`) to what the program needs to start plus
a margin far below what a batch of 1,000 48x48 faces needs in VGG16, so the first training
batch fails to allocate. fvc-finetune must exit with status 6, name the device, the batch
size and a smaller one, and write no model. A run with a batch that fits under the same limit
must succeed, so the limit is not simply too low to do anything.

Usage: finetune_out_of_memory.py PATH_TO_FVC_FINETUNE
Needs only the standard library and util-linux's prlimit.
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path

from program_runs import run_checked, study_recipe

SKIPPED = 77
OUT_OF_MEMORY = 6
# Address space for the whole process: LibTorch's libraries and heap need about 1.5 GB of it
# before training; a batch of 10 needs well under 1 GB more, a batch of 1,000 several GB.
LIMIT_BYTES = 3 * 2**30


def finetune(program, out, batch_size, status):
    # float32: the memory a batch needs should not depend on the CPU this runs on.
    options = ["--synthetic", "1400", "--threads", "1", "--epochs", "1", "--precision", "float32",
               "--limit", str(max(100, batch_size)), "--batch-size", str(batch_size),
               "--out", out]
    return run_checked(["prlimit", f"--as={LIMIT_BYTES}", "--", program,
                        *study_recipe(options), *options], status)


def main():
    if shutil.which("prlimit") is None:
        print("skipped: prlimit (util-linux) is not installed")
        return SKIPPED
    program = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        too_big = Path(folder) / "too-big"
        refused = finetune(program, too_big, 1000, OUT_OF_MEMORY)
        error = refused.stderr.strip().splitlines()
        pattern = (r"error: cpu: out of memory training on batches of 1000 images \(.*"
                   r"can't allocate memory.*\); try a smaller batch_size, such as 500")
        assert re.fullmatch(pattern, error[0]), refused.stderr
        assert error[1] == ("start again with --batch-size 500, or free memory and run again"), \
            refused.stderr
        assert not (too_big / "weights.h5").exists()
        print(error[0])

        finetune(program, Path(folder) / "fits", 10, 0)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
