"""The artifact store: keys, atomic publication, verification of files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import mner.store
import mner.tags
from mner.store import ArtifactStore, code_version


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

    from cli.main import app

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



def test_artifacts_ls_defaults_to_the_store_mner_run_writes(tmp_path: Path, monkeypatch) -> None:
    """Without --root, ``artifacts ls`` reads the default config's root, whatever the current folder."""
    from typer.testing import CliRunner

    from cli.main import app
    from mner.config import PipelineConfig

    monkeypatch.setenv("MNER_ARTIFACTS_ROOT", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    run = ArtifactStore(PipelineConfig().artifacts_root).begin("train", {}, {"lr": 2}, "v1")
    output = run.publish()
    listed = CliRunner().invoke(app, ["artifacts", "ls"])
    assert listed.exit_code == 0 and output.key in listed.output

def _publish(store: ArtifactStore, text: str, fresh: bool = False, extra: dict | None = None):
    run = store.begin("demo", {"data": "abc"}, {"lr": 1}, "v1", fresh=fresh)
    (run.work_dir / "out.txt").write_text(text)
    return run.publish(extra)


def test_refresh_replaces_the_output_atomically_and_a_crash_keeps_the_old_one(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    old = _publish(store, "old")
    old_run = json.loads(Path(old.dir, "manifest.json").read_text())["run_id"]

    run = store.begin("demo", {"data": "abc"}, {"lr": 1}, "v1", fresh=True)  # a refresh that crashes mid-way
    (run.work_dir / "out.txt").write_text("half")
    (run.work_dir / "stale.txt").write_text("left by the crashed refresh")
    assert store.load("demo", old.key) == old and Path(old.dir, "out.txt").read_text() == "old"

    new = _publish(store, "new", fresh=True)  # starts from an empty work dir: nothing of the crashed one is published
    assert new.dir == old.dir and set(new.files) == {"out.txt"} and not Path(new.dir, "stale.txt").exists()
    assert Path(new.dir, "out.txt").read_text() == "new" and store.load("demo", new.key) == new
    assert json.loads(Path(new.dir, "manifest.json").read_text())["run_id"] != old_run
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [new.key]  # no leftovers


def test_a_rename_failing_mid_refresh_keeps_the_old_output(tmp_path: Path, monkeypatch) -> None:
    """Where the old output is renamed aside before the new one moves in, a failure between the two loses nothing."""
    store = ArtifactStore(tmp_path)
    old = _publish(store, "old")
    real_rename, renames = os.rename, []

    def rename_failing_the_second_time(source, target) -> None:  # fault injector: the new output never moves in
        renames.append(source)
        if len(renames) == 2:
            raise OSError(errno.EIO, "injected: rename failed", str(source))
        real_rename(source, target)

    monkeypatch.setattr(mner.store, "_exchange", lambda a, b: False)  # as on a filesystem without RENAME_EXCHANGE
    monkeypatch.setattr(mner.store.os, "rename", rename_failing_the_second_time)
    with pytest.raises(OSError, match="injected"):
        _publish(store, "new", fresh=True)
    monkeypatch.undo()
    assert renames == [Path(old.dir), Path(old.dir).with_name(old.key + ".partial")]  # the old one went aside first
    assert store.load("demo", old.key) == old and Path(old.dir, "out.txt").read_text() == "old"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [old.key, old.key + ".partial"]  # the new one kept


def test_an_output_moved_aside_by_a_crashed_swap_is_recovered(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    output = _publish(store, "kept")
    Path(output.dir).rename(Path(output.dir).with_name(output.key + ".replaced-1-2"))  # crash between the renames
    assert store.load("demo", output.key) == output


def test_an_incomplete_output_is_kept_but_not_returned(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    output = _publish(store, "partial answers", extra={"incomplete": {"retryable": 3}})
    assert store.load("demo", output.key) is None
    assert store.load("demo", output.key, complete=False) == output
    assert store.entries("demo")[0]["incomplete"] is True
    assert store.holds(output.to_dict())  # what the run made, returned as such; the next run computes it again


def test_store_identity_is_stable_and_new_for_a_new_store(tmp_path: Path) -> None:
    first = ArtifactStore(tmp_path / "a").identity
    assert first == ArtifactStore(tmp_path / "a").identity and len(first) == 32
    assert ArtifactStore(tmp_path / "b").identity != first
    import shutil

    shutil.rmtree(tmp_path / "a")
    assert ArtifactStore(tmp_path / "a").identity != first  # deleted and made again at the same path


def test_holds_accepts_only_what_this_store_has(tmp_path: Path) -> None:
    a, b = ArtifactStore(tmp_path / "a"), ArtifactStore(tmp_path / "b")
    in_a, in_b = _publish(a, "x"), _publish(b, "x")
    assert a.holds(in_a.to_dict()) and not a.holds(in_b.to_dict())
    stale = {**in_a.to_dict(), "files": {"out.txt": "0" * 64}}
    assert not a.holds(stale)


LOCK_HOLDER = """
import sys, time
from mner.store import ArtifactStore
with ArtifactStore(sys.argv[1]).lock("demo", "k"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    open(sys.argv[3], "w").write("first done")
"""


def test_a_second_run_waits_for_the_first_holder_of_a_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    marker = tmp_path / "marker"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path), "2", str(marker)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert holder.stdout.readline().strip() == "locked"
    waited = []
    with ArtifactStore(tmp_path).lock("demo", "k", on_wait=waited.append):
        seen = marker.read_text() if marker.exists() else None
    holder.wait(30)
    assert waited and seen == "first done"
    with ArtifactStore(tmp_path).lock("demo", "k", on_wait=waited.append):  # free now: no wait
        pass
    assert len(waited) == 1
