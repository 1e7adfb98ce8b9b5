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
