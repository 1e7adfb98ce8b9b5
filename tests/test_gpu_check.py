"""The CPU side of benchmarks/gpu_check.sh: its dry run, the record it writes, and RESULTS.md's GPU section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
import gpu_check_report  # noqa: E402
import render_results  # noqa: E402

SCRIPT = PROJECT / "benchmarks" / "gpu_check.sh"
DDP_REASON = "two-process DDP over NCCL needs 2 GPUs; torch sees 1"
JUNIT = f"""<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0"
failures="1" skipped="1" tests="3" time="41.2"><testcase classname="tests.test_gpu" name="test_runtime_resolves_to_the_gpu_with_bf16"
time="0.412" /><testcase classname="tests.test_gpu" name="test_blip2_captions_on_the_gpu_in_bf16_and_fp16" time="3.1"><failure
message="AssertionError: assert {{'device': 'cuda', 'dtype': 'float16'}} == {{...}}&#10;second line">trace</failure></testcase><testcase
classname="tests.test_gpu" name="{gpu_check_report.DDP_TEST}" time="0.000"><skipped type="pytest.skip"
message="{DDP_REASON}">tests/test_gpu.py:150: {DDP_REASON}</skipped></testcase></testsuite></testsuites>"""
TRAINING_LINE = {"dataset": "twitter2017", "variant": "text+knowledge", "label": "gpu-check", "epochs": 4, "best_epoch": 3,
                 "train_seconds": 61.3, "train_sentences_per_second": 220.1, "peak_gpu_memory_mib": 2345.6,
                 "peak_rss_mib": 3000.0, "dev_f1": 0.85, "test_f1": 0.86, "wall_seconds": 95.0, "overrides": {},
                 "command": "python benchmarks/stage2.py --config x.yaml", "history": [{"epoch": 1}]}
ORIGIN = {"command": "bash benchmarks/gpu_check.sh", "commit": "abc1234", "date": "2026-11-29 10:00 UTC",
          "machine": "some CPU, 16 cores, 128 GiB, NVIDIA H200, torch 2.13.0+cu130"}


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=PROJECT)


def test_script_parses_and_its_dry_run_prints_every_step_and_runs_none(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    results = PROJECT / "benchmarks" / "results" / "gpu_check.jsonl"
    before = results.read_bytes() if results.exists() else None
    (tmp_path / "twitter2017").mkdir()
    done = _run_script("--dry-run", "--epochs", "2", "--data", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("1/4 preflight", "2/4 tests that need CUDA", "-m pytest tests/test_gpu.py -m gpu",
                     "3/4 Twitter-2017 [T;Z], 2 epochs", "--set train.precision=bf16", "--set train.device=cuda",
                     "--set train.epochs=2", f"#{tmp_path.resolve()}#g configs/twitter2017.yaml", "4/4 record", "benchmarks/gpu_check_report.py", "benchmarks/render_results.py",
                     "dry run: nothing was run"):
        assert expected in out, expected
    assert (results.read_bytes() if results.exists() else None) == before


def test_script_rejects_an_unknown_option_and_prints_help() -> None:
    bad = _run_script("--gpus", "2")
    assert bad.returncode == 2 and "unknown option: --gpus" in bad.stderr
    usage = _run_script("--help")
    assert usage.returncode == 0 and "--dry-run" in usage.stdout and "TORCH=" in usage.stdout


def test_record_from_junit_and_the_training_line(tmp_path: Path) -> None:
    (tmp_path / "tests.xml").write_text(JUNIT)
    cases = gpu_check_report.read_junit(tmp_path / "tests.xml")
    assert [c["outcome"] for c in cases] == ["passed", "failed", "skipped"]
    assert cases[1]["message"].startswith("AssertionError: assert") and "second line" not in cases[1]["message"]
    record = gpu_check_report.build_record(cases, 1, TRAINING_LINE, 0, ["NVIDIA H200 (sm_90)"], 200.0, ORIGIN)
    assert not record["ok"] and record["commit"] == "abc1234"
    assert (record["tests"]["passed"], record["tests"]["failed"], record["tests"]["skipped"]) == (1, 1, 1)
    assert record["training"]["peak_gpu_memory_mib"] == 2345.6 and "history" not in record["training"]
    assert record["ddp"] == {"outcome": "skipped", "reason": DDP_REASON, "gpus": 1}
    summary = "\n".join(gpu_check_report.summary_lines(record))
    assert f"DDP over NCCL: skipped: {DDP_REASON}" in summary and "220.1 sentences/s" in summary
    assert "FAILED test_blip2_captions_on_the_gpu_in_bf16_and_fp16" in summary

    passing = [c for c in cases if c["outcome"] != "failed"]
    assert gpu_check_report.build_record(passing, 0, TRAINING_LINE, 0, ["H200"], 1.0, ORIGIN)["ok"]
    assert not gpu_check_report.build_record([cases[2]], 0, TRAINING_LINE, 0, ["H200"], 1.0, ORIGIN)["ok"]  # all skipped
    timed_out = gpu_check_report.build_record(None, 124, None, 124, ["H200"], 480.0, ORIGIN)
    assert timed_out["tests"]["error"] == "pytest exit 124 (timed out)" and not timed_out["ok"]
    assert timed_out["training"]["error"] == "benchmarks/stage2.py exit 124 (timed out)"
    assert timed_out["ddp"]["outcome"] == "not run"
    assert "tests: pytest exit 124" in "\n".join(gpu_check_report.summary_lines(timed_out))


@pytest.mark.slow
def test_report_command_appends_a_line_with_provenance(tmp_path: Path) -> None:
    (tmp_path / "tests.xml").write_text(JUNIT)
    (tmp_path / "stage2.jsonl").write_text(json.dumps(TRAINING_LINE) + "\n")
    out = tmp_path / "gpu_check.jsonl"
    args = ["--junit", str(tmp_path / "tests.xml"), "--tests-exit", "1", "--stage2", str(tmp_path / "stage2.jsonl"),
            "--training-exit", "0", "--command", "bash benchmarks/gpu_check.sh --epochs 2", "--seconds", "12.5"]
    for _ in range(2):
        done = subprocess.run([sys.executable, "benchmarks/gpu_check_report.py", *args, "--out", str(out)],
                              capture_output=True, text=True, timeout=120, cwd=PROJECT)
        assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["command"] == "bash benchmarks/gpu_check.sh --epochs 2"
    assert lines[0]["commit"] and lines[0]["date"] and lines[0]["machine"] and lines[0]["wall_seconds"] == 12.5
    assert "GPU check FAILED" in done.stdout and DDP_REASON in done.stdout


def test_results_md_says_not_run_yet_without_the_file_and_shows_the_newest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_results, "RESULTS", tmp_path)
    monkeypatch.setattr(render_results, "OUT", tmp_path / "RESULTS.md")
    (tmp_path / "README.md").write_text("## Results\n\n| a |\n|---|\n", encoding="utf-8")
    monkeypatch.setattr(render_results, "README", tmp_path / "README.md")  # the renderer rewrites its headline table
    render_results.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## GPU check" in text and "Not run yet" in text

    (tmp_path / "tests.xml").write_text(JUNIT)
    cases = [c for c in gpu_check_report.read_junit(tmp_path / "tests.xml") if c["outcome"] != "failed"]
    old = gpu_check_report.build_record(None, 124, None, 124, ["NVIDIA H200 (sm_90)"], 480.0, ORIGIN)
    new = gpu_check_report.build_record(cases, 0, TRAINING_LINE, 0, ["NVIDIA H200 (sm_90)"], 190.0, ORIGIN)
    (tmp_path / "gpu_check.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    render_results.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Not run yet" not in text and "Newest of 2 run(s): **passed** in 190 s on NVIDIA H200 (sm_90)" in text
    assert "**220.1 sentences/s**" in text and "**2345.6 MiB**" in text and "test F1 86.00" in text
    assert f"DDP, two processes over NCCL: skipped ({DDP_REASON})." in text
    failed = render_results.gpu_section([old])
    assert any("pytest exit 124 (timed out)" in line for line in failed)
    assert any("benchmarks/stage2.py exit 124 (timed out)" in line for line in failed)
