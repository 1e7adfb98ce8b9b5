"""The artifact store: keys, atomic publication, verification of files."""

from __future__ import annotations

import json
from pathlib import Path

from mner.store import ArtifactStore, code_version
import mner.tags


def test_publish_then_load_and_detect_corruption(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    run = store.begin("demo", {"data": "abc"}, {"lr": 1}, "v1")
    assert run.work_dir.name.endswith(".partial")
    (run.work_dir / "out.txt").write_text("hello")
    output = run.publish({"note": "x"})
    assert not run.work_dir.exists()
    manifest = json.loads(Path(output.dir, "manifest.json").read_text())
    assert manifest["inputs"] == {"data": "abc"} and manifest["config"] == {"lr": 1}
    assert manifest["code_version"] == "v1" and "out.txt" in manifest["files"] and manifest["note"] == "x"
    assert store.load("demo", output.key) == output
    Path(output.dir, "out.txt").write_text("tampered")
    assert store.load("demo", output.key) is None
    Path(output.dir, "out.txt").unlink()
    assert store.load("demo", output.key) is None


def test_key_changes_with_inputs_config_and_code() -> None:
    base = ArtifactStore.key_for("s", {"a": "1"}, {"x": 1}, "c")
    assert base == ArtifactStore.key_for("s", {"a": "1"}, {"x": 1}, "c")
    assert base != ArtifactStore.key_for("s", {"a": "2"}, {"x": 1}, "c")
    assert base != ArtifactStore.key_for("s", {"a": "1"}, {"x": 2}, "c")
    assert base != ArtifactStore.key_for("s", {"a": "1"}, {"x": 1}, "d")
    assert len(code_version([mner.tags])) == 16


def test_artifacts_cli_lists_and_shows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mner.cli import app

    store = ArtifactStore(tmp_path)
    run = store.begin("train", {}, {"lr": 2}, "v1")
    (run.work_dir / "history.json").write_text('{"best": 1}')
    output = run.publish()
    store.begin("train", {}, {"lr": 3}, "v1")  # an unfinished (.partial) output is not listed
    runner = CliRunner()
    listed = runner.invoke(app, ["artifacts", "ls", "--root", str(tmp_path)])
    assert listed.exit_code == 0 and listed.output.count("\n") == 1 and output.key in listed.output
    shown = runner.invoke(app, ["artifacts", "show", "train", output.key[:6], "--root", str(tmp_path)])
    assert shown.exit_code == 0 and json.loads(shown.output)["config"] == {"lr": 2}
    file = runner.invoke(app, ["artifacts", "show", "train", output.key, "--file", "history.json", "--root", str(tmp_path)])
    assert json.loads(file.output) == {"best": 1}
    missing = runner.invoke(app, ["artifacts", "show", "train", "zzz", "--root", str(tmp_path)])
    assert missing.exit_code == 1 and "0 outputs of stage 'train'" in missing.output
