"""The README's first two commands as a newcomer meets them: a fresh clone, `make demo`, `make test`, then `make demo`
again once the test suite's temporary folders are gone. Each step's wall time and outcome.

    python benchmarks/newcomer_order.py [--commit REV] [--keep]

The clone is of this checkout's committed HEAD (``--commit``: another commit of it, to measure two versions
on the same machine; uncommitted edits are in neither), into a new temporary folder (``--keep``: left there,
with each step's log, for a look afterwards), with ``../shared`` linked beside it when this checkout has one,
so that the tests which need the full benchmark run instead of skipping. `make` sets up a fresh ``.venv``
there with the system ``python3``; pip's wheel cache is whatever this machine has (llama-cpp-python compiles
from source on a cold one). The suite runs with ``--durations=0``, from which the row keeps each test
file's summed test time (the files are what ``tests/conftest.py``'s LONGEST_FIRST orders). Appends one row to
benchmarks/results/newcomer.jsonl.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, ROOT, append_rows, parse_args, provenance

RESULTS = RESULTS_DIR / "newcomer.jsonl"
SUITE_TEMP = "mner-test-"  # tests/conftest.py's prefix for the suite's Prefect home and artifact store
# what the suite and the demo must not inherit from the caller: they would point the clone at this checkout's state
CALLER_STATE = ("PREFECT_HOME", "PREFECT_API_URL", "MNER_ARTIFACTS_ROOT", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS")
DURATION = re.compile(r"^\s*([\d.]+)s (?:setup|call|teardown)\s+(tests/[^:]+)::")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
FAILED = re.compile(r"^(?:FAILED|ERROR) (tests/\S+?)(?: - (.*))?$")  # pytest's short summary (-ra)
TASK_STATE = re.compile(r"Task run '([\w-]+?)-[0-9a-f]{3}' - Finished in state (\w+)")


def run_step(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` in ``cwd``, its output to ``log``; its exit code, wall seconds and output."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    seconds = round(time.perf_counter() - started, 1)
    return {"rc": code, "seconds": seconds, "output": log.read_text(encoding="utf-8")}


def suite_outcome(output: str) -> dict[str, Any]:
    """The counts of pytest's last summary line, the tests that failed or erred with the first 300 characters of
    their message, and each test file's summed setup, call and teardown seconds (``--durations=0``), longest first."""
    summary = next((line for line in reversed(output.splitlines()) if COUNT.search(line) and " in " in line), "")
    counts = {word.rstrip("s") if word.startswith("error") else word: int(n) for n, word in COUNT.findall(summary)}
    per_file: Counter[str] = Counter()
    for line in output.splitlines():
        found = DURATION.match(line)
        if found:
            per_file[Path(found.group(2)).name] += float(found.group(1))
    failures = [{"test": found.group(1), "message": (found.group(2) or "")[:300]}
                for found in map(FAILED.match, output.splitlines()) if found]
    return {"counts": counts, "failures": failures,
            "file_seconds": {name: round(s, 1) for name, s in per_file.most_common()}}


def demo_outcome(output: str) -> dict[str, Any]:
    """How many of the demo's task runs were Cached, and the names of those that were not (``Completed`` ones
    included: a stage that recomputes on the second demo shows here)."""
    states = TASK_STATE.findall(output)
    return {"task_runs": len(states), "cached": sum(state == "Cached" for _, state in states),
            "not_cached": sorted({name for name, state in states if state != "Cached"})}


def suite_leftovers() -> list[str]:
    """The suite's temporary folders still in the temporary directory (tests/conftest.py removes its own at exit)."""
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob(f"{SUITE_TEMP}*"))


def main() -> None:
    """Clone, run the three steps, append the row, print a short summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="HEAD", help="the commit to clone (default HEAD)")
    parser.add_argument("--keep", action="store_true", help="keep the clone, its .venv and the steps' logs afterwards")
    args = parse_args(parser)
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.commit}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise SystemExit(f"--commit {args.commit}: not a commit of this checkout (git rev-parse finds none); name one "
                         "that `git log` lists")
    wanted = found.stdout.strip()
    load_before = round(os.getloadavg()[0], 2)  # the cores should be quiet: a timing beside other work says little
    origin = provenance()  # before the runs: the checkout may move on while they take their minutes
    work = Path(tempfile.mkdtemp(prefix="mner-newcomer-"))
    clone = work / "mner"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", wanted], cwd=clone, check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (work / "shared").symlink_to(shared.resolve())
    env = {k: v for k, v in os.environ.items() if k not in CALLER_STATE}
    path = os.environ.get("PATH", "")
    env["PATH"] = os.pathsep.join(p for p in path.split(os.pathsep) if not p.startswith(str(ROOT)))  # not our .venv
    steps: list[dict[str, Any]] = []
    try:
        steps.append(run_step(["make", "demo"], clone, env, work / "demo-1.log"))
        test_env = {**env, "PYTEST_ADDOPTS": "--durations=0 --durations-min=0.5"}
        steps.append(run_step(["make", "test"], clone, test_env, work / "test.log"))
        left = suite_leftovers()
        for name in left:
            shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)
        steps.append(run_step(["make", "demo"], clone, env, work / "demo-2.log"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # a failed test is named in the row, with its message
    names = ("first demo (setup included)", "make test", "second demo")
    row = {**origin, "clone_commit": head, "shared_data": shared.is_dir(), "suite_leftovers": left,
           "steps": [{"step": name, "rc": s["rc"], "seconds": s["seconds"]} for name, s in zip(names, steps)],
           "suite": suite_outcome(steps[1]["output"]), "second_demo": demo_outcome(steps[2]["output"]),
           "load_1min_before": load_before}
    append_rows(RESULTS, [row])
    for step in row["steps"]:
        print(f"{step['step']}: rc {step['rc']}, {step['seconds'] / 60:.1f} min")
    if args.keep:
        print(f"the clone and the steps' logs: {work}")
    print(f"suite: {row['suite']['counts']}; second demo: {row['second_demo']}; appended to {RESULTS}")


if __name__ == "__main__":
    main()
