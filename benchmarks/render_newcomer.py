"""RESULTS.md section for benchmarks/newcomer_order.py: the README's first commands from a fresh clone, in the newcomer's
order, and where the test suite's time goes."""

from __future__ import annotations

from harness import closing, cpu, head

SUITE_GOAL_MINUTES = 15  # issue 34: `make test` on the 2-core machine
SLOWEST_FILES = 12  # the test files shown per run, longest first


def newcomer_section(rows: list[dict]) -> list[str]:
    """Each run's step times and outcomes, then the newest run's slowest test files."""
    if not rows:
        return []
    md = ["## The newcomer's order: `make demo`, `make test`, `make demo` from a fresh clone", "",
          "A fresh clone of the commit named, a fresh `.venv`, the steps in this order; the suite's temporary folders "
          "are deleted",
          f"before the second demo. The goal for `make test` is under {SUITE_GOAL_MINUTES} minutes on the 2-core "
          "machine. Load is the 1-minute load average before the clone.", ""]
    md += head("| clone | first demo, setup included (min) | make test (min) | tests | second demo (min) | "
               "second demo's task runs Cached | load | CPU | date |")
    for r in rows:
        demo, test, again = r["steps"]
        counts = ", ".join(f"{n} {word}" for word, n in r["suite"]["counts"].items())
        failed_steps = [s["step"] for s in r["steps"] if s["rc"] != 0]
        cached = f"{r['second_demo']['cached']} of {r['second_demo']['task_runs']}"
        if r["second_demo"]["not_cached"]:
            cached += f" (not: {', '.join(r['second_demo']['not_cached'])})"
        md.append(f"| {r['clone_commit']} | {demo['seconds'] / 60:.1f} | **{test['seconds'] / 60:.1f}** | {counts}"
                  + (f"; **failed step: {', '.join(failed_steps)}**" if failed_steps else "") +
                  f" | {again['seconds'] / 60:.1f} | {cached} | {r['load_1min_before']} | {cpu(r)} | {r['date']} |")
    failed_tests = [f"- {r['clone_commit']} ({r['date']}): `{f['test']}` failed" + (f": {f['message']}" if f["message"] else "")
                    for r in rows for f in r["suite"].get("failures", [])]
    md += ["", "Tests that failed:", "", *failed_tests] if failed_tests else []
    newest = rows[-1]
    md += ["", f"The newest run's slowest test files (summed setup, call and teardown of their tests, from "
               f"`--durations=0`; three workers run files side by side, so the sum of all files exceeds the wall time):",
           "", *head("| test file | seconds |")]
    md += [f"| {name} | {seconds:.0f} |" for name, seconds in list(newest["suite"]["file_seconds"].items())[:SLOWEST_FILES]]
    return md + closing(rows)
