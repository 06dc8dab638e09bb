"""What the program tests share: running a program and checking how it ended."""

import re
import subprocess


def study_recipe(options):
    """fvc-finetune's flags for the study's recipe, which these tests train with; none when
    `options` resume a run, which takes the recipe from its checkpoint."""
    return [] if "--resume" in [str(option) for option in options] else ["--recipe", "original"]


def run_checked(command, status=0):
    """Runs `command`; shows its output and fails when it exits with another status."""
    command = [str(part) for part in command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != status:
        print(result.stdout, result.stderr, sep="\n")
        raise AssertionError(f"{' '.join(command)}: exit status {result.returncode}, "
                             f"expected {status}")
    return result


def score_line(output, split):
    """The accuracy and loss a program printed for `split`, as one string."""
    found = re.search(rf"^{split} +(accuracy \S+ \(\d+/\d+\)  loss \S+)", output, re.M)
    assert found, f"no {split} accuracy line in:\n{output}"
    return found.group(1)
