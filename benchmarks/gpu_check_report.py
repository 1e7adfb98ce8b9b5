"""Turn one run of benchmarks/gpu_check.sh into a line of benchmarks/results/gpu_check.jsonl.

    python benchmarks/gpu_check_report.py --junit TESTS.xml --tests-exit N --stage2 STAGE2.jsonl \
        --training-exit N --command "bash benchmarks/gpu_check.sh" --seconds S [--out FILE]

Reads pytest's JUnit XML of tests/test_gpu.py and the line benchmarks/stage2.py wrote for the
Twitter-2017 [T;Z] run, adds the command, commit, date, machine and the GPUs torch sees, appends
the record and prints a summary (the DDP line says why it was skipped, where it was). Exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.jsonl"
DDP_TEST = "test_two_nccl_ranks_train_one_step_and_agree"
TRAINING_FIELDS = (
    "dataset", "variant", "epochs", "best_epoch", "train_seconds", "train_sentences_per_second",
    "peak_gpu_memory_mib", "peak_rss_mib", "dev_f1", "test_f1", "wall_seconds", "overrides", "command",
)
TIMED_OUT = (124, 137)  # timeout(1)'s exit status, or a KILL after it


def read_junit(path: Path) -> list[dict[str, Any]]:
    """One dict per test case of a pytest JUnit XML file: name, outcome, seconds, message (skip reason or error)."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (found.get("message") or found.text or "").strip()
                break
        cases.append({"name": case.get("name", ""), "outcome": outcome,
                      "seconds": round(float(case.get("time") or 0.0), 2), "message": message.splitlines()[0] if message else ""})
    return cases


def tests_summary(cases: list[dict[str, Any]] | None, exit_code: int) -> dict[str, Any]:
    """Counts by outcome and the cases; without a report, why there is none."""
    if cases is None:
        why = "timed out" if exit_code in TIMED_OUT else "no JUnit report"
        return {"exit_code": exit_code, "error": f"pytest exit {exit_code} ({why})", "cases": []}
    count = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    return {"exit_code": exit_code, "passed": count["passed"], "failed": count["failed"], "errors": count["error"],
            "skipped": count["skipped"], "cases": cases}


def ddp_outcome(cases: list[dict[str, Any]] | None, gpus: int) -> dict[str, Any]:
    """What became of two-process DDP over NCCL: the outcome of its test and, for a skip or failure, the reason."""
    case = next((c for c in cases or [] if c["name"] == DDP_TEST), None)
    if case is None:
        return {"outcome": "not run", "reason": "its test did not report (see the tests' exit code)", "gpus": gpus}
    return {"outcome": case["outcome"], "reason": case["message"], "gpus": gpus}


def training_summary(stage2_line: dict[str, Any] | None, exit_code: int) -> dict[str, Any]:
    """The figures of the stage2.py line that the check reports; without a line, why there is none."""
    if stage2_line is None:
        why = "timed out" if exit_code in TIMED_OUT else "wrote no result line"
        return {"exit_code": exit_code, "error": f"benchmarks/stage2.py exit {exit_code} ({why})"}
    return {"exit_code": exit_code, **{k: stage2_line.get(k) for k in TRAINING_FIELDS}}


def last_json_line(path: Path) -> dict[str, Any] | None:
    """The last JSON line of ``path``, or None when the file is missing or empty."""
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def build_record(cases: list[dict[str, Any]] | None, tests_exit: int, stage2_line: dict[str, Any] | None,
                 training_exit: int, gpus: list[str], seconds: float, origin: dict[str, str]) -> dict[str, Any]:
    """The result line: provenance (``origin``), the GPUs, tests, the training run, DDP, and ``ok``.

    ``ok`` needs pytest's exit 0 with at least one test passed and none failed, and a training result line.
    """
    tests = tests_summary(cases, tests_exit)
    training = training_summary(stage2_line, training_exit)
    ran = "error" not in tests and tests["passed"] > 0 and not tests["failed"] + tests["errors"]
    ok = tests_exit == 0 and ran and "error" not in training
    return {**origin, "gpus": gpus, "ok": ok, "wall_seconds": round(seconds, 1), "tests": tests,
            "training": training, "ddp": ddp_outcome(cases, len(gpus))}


def summary_lines(record: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: tests, training figures, DDP."""
    tests, training, ddp = record["tests"], record["training"], record["ddp"]
    lines = [f"GPUs: {', '.join(record['gpus']) or 'none'}"]
    lines.append(f"tests: {tests['error']}" if "error" in tests else
                 f"tests: {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
                 f"{tests['skipped']} skipped")
    lines += [f"  {c['outcome'].upper()} {c['name']}: {c['message']}" for c in tests["cases"] if c["outcome"] != "passed"]
    if "error" in training:
        lines.append(f"training: {training['error']}")
    else:
        lines.append(f"training: {training['dataset']} {training['variant']}, {training['epochs']} epochs, "
                     f"{training['train_sentences_per_second']} sentences/s, peak GPU memory "
                     f"{training['peak_gpu_memory_mib']} MiB, dev F1 {training['dev_f1']}, test F1 {training.get('test_f1')}")
    lines.append(f"DDP over NCCL: {ddp['outcome']}" + (f": {ddp['reason']}" if ddp["reason"] else ""))
    lines.append("GPU check " + ("passed" if record["ok"] else "FAILED") + f" in {record['wall_seconds']} s")
    return lines


def visible_gpus() -> list[str]:
    """Names of the GPUs torch sees, with their compute capability (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())]


def main() -> None:
    """Parse arguments, build the record, append it, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--junit", type=Path, required=True)
    parser.add_argument("--tests-exit", type=int, required=True)
    parser.add_argument("--stage2", type=Path, required=True)
    parser.add_argument("--training-exit", type=int, required=True)
    parser.add_argument("--command", required=True, help="the check's command line, as typed")
    parser.add_argument("--seconds", type=float, required=True, help="the check's wall-clock seconds so far")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from harness import provenance  # imports the pipeline: only here, so the functions above stay light

    cases = read_junit(args.junit) if args.junit.exists() else None
    origin = provenance(args.command)
    record = build_record(cases, args.tests_exit, last_json_line(args.stage2), args.training_exit, visible_gpus(),
                          args.seconds, origin)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print("\n".join(summary_lines(record)))
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
