"""Content-addressed artifact store: one directory per stage output, named by a hash of its inputs.

Layout: ``<root>/<stage>/<key>/`` holds the stage's files and ``manifest.json`` (inputs, config,
code version, sha256 of every file, timings). A stage works in ``<key>.partial/`` (which survives a
crash, so a long stage can resume from what it left there) and is published by an atomic rename
once its manifest is written; a directory without a valid manifest is never returned as a result.

Concurrency: computing a key holds an exclusive lock on ``<root>/.locks/<stage>/<key>.lock`` (``flock``;
released by the kernel if the process dies), so two runs never share a work directory: the second
waits, then finds the first one's output. Publishing onto an existing output (a refresh) swaps the
new directory into place atomically, so a crash mid-refresh leaves the old output intact.

Identity: ``<root>/.store-id`` is a random id written when the store is first used; it enters
every Prefect cache key, so a record made for one store is never replayed in another (nor in a
store deleted and made again at the same path).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mner.codeversion import code_version

__all__ = ["ArtifactStore", "StageOutput", "StageRun", "code_version", "sha256_file", "sha256_json", "write_json_atomic"]

MANIFEST = "manifest.json"
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # a manifest's "created": local time with its UTC offset
STORE_ID = ".store-id"
LOCKS = ".locks"
_CHUNK = 1 << 20
_REPLACED = ".replaced-"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of a JSON-serialisable value in canonical form (sorted keys, paths as strings)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_writable_root(root: str | Path) -> None:
    """Fail at once, naming the setting, when the artifact root cannot be created or written."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"artifacts_root: cannot create or write {root} ({exc.strerror or exc}); "
                         "set artifacts_root (or $MNER_ARTIFACTS_ROOT) to a writable folder") from exc


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class StageOutput:
    """What a stage hands to the next one: where its files are and their hashes (never the data)."""

    stage: str
    key: str
    dir: str
    files: dict[str, str]

    def path(self, name: str) -> Path:
        """Absolute path of one of the stage's files."""
        return Path(self.dir) / name

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as persisted by Prefect."""
        return {"stage": self.stage, "key": self.key, "dir": self.dir, "files": dict(self.files)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageOutput":
        """Inverse of :meth:`to_dict`."""
        return cls(data["stage"], data["key"], data["dir"], dict(data["files"]))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where that is unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def replace_dir(new: Path, final: Path) -> None:
    """Put directory ``new`` at ``final``; an existing ``final`` is replaced atomically and then deleted.

    Where the filesystem cannot swap atomically, the old directory is first renamed aside
    (``<name>.replaced-*``), which :meth:`ArtifactStore.load` recovers if a crash falls between the
    two renames.
    """
    if not final.exists():
        os.rename(new, final)
        return
    if _exchange(new, final):
        shutil.rmtree(new)
        return
    aside = final.with_name(f"{final.name}{_REPLACED}{os.getpid()}-{time.time_ns()}")
    os.rename(final, aside)
    os.rename(new, final)
    shutil.rmtree(aside)


@dataclass
class StageRun:
    """A stage being computed: write files into :attr:`work_dir`, then :meth:`publish`.

    The caller holds the key's lock (:meth:`ArtifactStore.lock`) from :meth:`ArtifactStore.begin`
    to :meth:`publish`, so the work directory belongs to this run alone.
    """

    store: "ArtifactStore"
    stage: str
    key: str
    inputs: dict[str, str]
    config: dict[str, Any]
    code: str
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def work_dir(self) -> Path:
        """The ``.partial`` directory, kept across crashes until publication."""
        return self.store.stage_dir(self.stage, self.key).with_name(self.key + ".partial")

    def publish(self, extra: dict[str, Any] | None = None) -> StageOutput:
        """Hash every file, write the manifest, and move the work dir into place atomically.

        ``extra`` holds manifest fields of the stage's own; ``extra["incomplete"]`` (truthy) marks
        an output that is kept, so its finished parts are not lost, but is computed again by the
        next run instead of being returned as a result (see :meth:`ArtifactStore.load`).
        """
        files = {
            str(p.relative_to(self.work_dir)): sha256_file(p)
            for p in sorted(self.work_dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        self.timings.setdefault("total_s", round(time.time() - self.started, 3))
        manifest = {
            "stage": self.stage,
            "key": self.key,
            "inputs": self.inputs,
            "config": self.config,
            "code_version": self.code,
            "files": files,
            "timings": self.timings,
            "created": time.strftime(CREATED_FORMAT),
            "run_id": uuid.uuid4().hex,
            **(extra or {}),
        }
        write_json_atomic(self.work_dir / MANIFEST, manifest)
        final = self.store.stage_dir(self.stage, self.key)
        replace_dir(self.work_dir, final)
        return StageOutput(self.stage, self.key, str(final), files)


class ArtifactStore:
    """The artifact store rooted at ``root`` (default ``artifacts/`` in the project)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    @property
    def identity(self) -> str:
        """This store's id, written once when the store is first used (a new store gets a new id)."""
        path = self.root / STORE_ID
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            pass
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{STORE_ID}.tmp{os.getpid()}-{time.time_ns()}")
        tmp.write_text(uuid.uuid4().hex, encoding="utf-8")
        try:
            os.link(tmp, path)  # fails if another process wrote it first: theirs is the id
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text(encoding="utf-8").strip()

    @staticmethod
    def key_for(stage: str, inputs: dict[str, str], config: dict[str, Any], code: str) -> str:
        """The stage key: a hash of input content hashes, the config and the code version."""
        return sha256_json({"stage": stage, "inputs": inputs, "config": config, "code": code})[:20]

    def stage_dir(self, stage: str, key: str) -> Path:
        """Where a stage output with this key lives (whether or not it exists)."""
        return self.root / stage / key

    def contains(self, path: str | Path) -> bool:
        """Whether ``path`` lies inside this store."""
        return Path(path).resolve().is_relative_to(self.root)

    @contextmanager
    def lock(self, stage: str, key: str, on_wait: Any = None) -> Iterator[None]:
        """Hold the exclusive lock of ``stage``/``key``; ``on_wait(path)`` is called once if another run holds it."""
        path = self.root / LOCKS / stage / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(path)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_manifest(self, directory: Path) -> dict[str, Any] | None:
        try:
            return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _recover(self, stage: str, key: str) -> None:
        """Put back an output renamed aside by a refresh that crashed before the new one was in place."""
        final = self.stage_dir(stage, key)
        if final.exists():
            return
        for aside in sorted(final.parent.glob(f"{key}{_REPLACED}*"), reverse=True):
            if self._read_manifest(aside) is not None:
                os.rename(aside, final)
                return

    def load(self, stage: str, key: str, verify: bool = True, complete: bool = True) -> StageOutput | None:
        """The published output for ``key``, or ``None`` if it is missing, incomplete or fails verification.

        With ``verify`` every file's sha256 is checked against the manifest, so a deleted or
        corrupted file makes the stage recompute instead of feeding bad data downstream. With
        ``complete`` an output published as incomplete (some samples failed) counts as missing.
        """
        self._recover(stage, key)
        directory = self.stage_dir(stage, key)
        manifest = self._read_manifest(directory)
        if manifest is None or (complete and manifest.get("incomplete")):
            return None
        files: dict[str, str] = manifest.get("files", {})
        if verify:
            for name, digest in files.items():
                path = directory / name
                if not path.is_file() or sha256_file(path) != digest:
                    return None
        return StageOutput(stage, key, str(directory), files)

    def holds(self, output: dict[str, Any]) -> bool:
        """Whether ``output`` (a stage output as a dict) is exactly what this store now holds under its key.

        An output published as incomplete is held too: it is what the run made, and the next run
        computes it again.
        """
        stage, key = output.get("stage"), output.get("key")
        if not stage or not key or Path(output.get("dir", "")) != self.stage_dir(stage, key):
            return False
        found = self.load(stage, key, complete=False)
        return found is not None and found.files == output.get("files")

    def manifest(self, output: StageOutput) -> dict[str, Any]:
        """The manifest of a published output."""
        return json.loads(Path(output.dir, MANIFEST).read_text(encoding="utf-8"))

    def entries(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Published outputs (optionally of one stage): stage, key, created, file count, bytes, dir, incomplete, manifest."""
        found = []
        for manifest_path in sorted(self.root.glob(f"{stage or '*'}/*/{MANIFEST}")):
            directory = manifest_path.parent
            if directory.name.endswith(".partial") or _REPLACED in directory.name:
                continue
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            files = manifest.get("files", {})
            size = sum((directory / name).stat().st_size for name in files if (directory / name).is_file())
            found.append({"stage": directory.parent.name, "key": directory.name, "created": manifest.get("created", ""),
                          "files": len(files), "bytes": size, "dir": str(directory),
                          "incomplete": bool(manifest.get("incomplete")), "manifest": manifest})
        return found

    def find(self, stage: str, key_prefix: str) -> Path:
        """The directory of the one published output of ``stage`` whose key starts with ``key_prefix``."""
        matches = [e["dir"] for e in self.entries(stage) if e["key"].startswith(key_prefix)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} outputs of stage {stage!r} match key {key_prefix!r} under {self.root}")
        return Path(matches[0])

    def begin(self, stage: str, inputs: dict[str, str], config: dict[str, Any], code: str,
              fresh: bool = False) -> StageRun:
        """Start (or resume) computing a stage in its ``.partial`` work dir; ``fresh`` empties it first.

        Call it holding :meth:`lock` for the key.
        """
        key = self.key_for(stage, inputs, config, code)
        run = StageRun(self, stage, key, inputs, config, code)
        if fresh and run.work_dir.exists():
            shutil.rmtree(run.work_dir)
        run.work_dir.mkdir(parents=True, exist_ok=True)
        return run
