"""Tests for ``mner data check``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from mner.formats import read_conll

RES = Path(__file__).resolve().parent / "resources" / "conll"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
runner = CliRunner()


def test_check_good_file() -> None:
    result = runner.invoke(app, ["data", "check", str(RES / "bom_crlf.txt")])
    assert result.exit_code == 0, result.output
    assert "tweets:   2" in result.output
    assert "PER 1" in result.output and "ORG 1" in result.output
    assert "BOM" in result.output and "CRLF" in result.output


def test_check_bad_files_report_file_and_line() -> None:
    good, bad = RES / "plain_space_sep.txt", RES / "duplicate_imgid.txt"
    result = runner.invoke(app, ["data", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert "tweets:   2" in result.output  # the good file is still summarised
    assert f"{bad}:9: duplicate IMGID:500 (first at line 1)" in result.output


def test_check_bad_continuation_then_repair(tmp_path: Path) -> None:
    path = RES / "bad_continuation.txt"
    strict = runner.invoke(app, ["data", "check", str(path)])
    assert strict.exit_code == 1
    assert f"{path}:4: I-LOC follows O" in strict.output
    assert f"{path}:10: I-ORG follows B-PER" in strict.output

    repaired = runner.invoke(app, ["data", "check", str(path), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired 2 tag(s)" in repaired.output

    out = tmp_path / "fixed.txt"
    written = runner.invoke(app, ["data", "check", str(path), "--write-repaired", str(out)])
    assert written.exit_code == 0, written.output
    fixed = read_conll(out)
    assert fixed.sentences[0].tags == ["O", "O", "B-LOC", "I-LOC"]
    assert [s.image_id for s in fixed.sentences] == ["300", "301"]


def test_write_repaired_to_folder_for_several_files(tmp_path: Path) -> None:
    paths = [str(RES / "bad_continuation.txt"), str(RES / "chinese_char.txt")]
    result = runner.invoke(app, ["data", "check", *paths, "--write-repaired", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_continuation.txt", "chinese_char.txt"]


def test_missing_file() -> None:
    result = runner.invoke(app, ["data", "check", str(RES / "nope.txt")])
    assert result.exit_code == 1
    assert "nope.txt:0: no such file" in result.output


def test_real_t15_needs_repair() -> None:
    path = DATA / "twitter2015" / "valid.txt"
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    assert runner.invoke(app, ["data", "check", str(path)]).exit_code == 1
    result = runner.invoke(app, ["data", "check", str(path), "--repair"])
    assert result.exit_code == 0 and "entities: 1594" in result.output
