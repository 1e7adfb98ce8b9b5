"""Content-addressed artifact store: one directory per stage output, named by a hash of its inputs.

Layout: ``<root>/<stage>/<key>/`` holds the stage's files and ``manifest.json`` (inputs, config,
code version, sha256 of every file, timings). A stage works in ``<key>.partial/`` (which survives a
crash, so a long stage can resume from what it left there) and is published by an atomic rename
once its manifest is written; a directory without a valid manifest is never returned as a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


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


def code_version(modules: Iterable[ModuleType]) -> str:
    """A short hash of the source files of ``modules``: changes whenever their code changes."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


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


@dataclass
class StageRun:
    """A stage being computed: write files into :attr:`work_dir`, then :meth:`publish`."""

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
        """Hash every file, write the manifest, and rename the work dir into place atomically."""
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
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        write_json_atomic(self.work_dir / MANIFEST, manifest)
        final = self.store.stage_dir(self.stage, self.key)
        if final.exists():
            shutil.rmtree(final)
        os.replace(self.work_dir, final)
        return StageOutput(self.stage, self.key, str(final), files)


class ArtifactStore:
    """The artifact store rooted at ``root`` (default ``artifacts/`` in the project)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    @staticmethod
    def key_for(stage: str, inputs: dict[str, str], config: dict[str, Any], code: str) -> str:
        """The stage key: a hash of input content hashes, the config and the code version."""
        return sha256_json({"stage": stage, "inputs": inputs, "config": config, "code": code})[:20]

    def stage_dir(self, stage: str, key: str) -> Path:
        """Where a stage output with this key lives (whether or not it exists)."""
        return self.root / stage / key

    def load(self, stage: str, key: str, verify: bool = True) -> StageOutput | None:
        """The published output for ``key``, or ``None`` if it is missing or fails verification.

        With ``verify`` every file's sha256 is checked against the manifest, so a deleted or
        corrupted file makes the stage recompute instead of feeding bad data downstream.
        """
        directory = self.stage_dir(stage, key)
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files: dict[str, str] = manifest.get("files", {})
        if verify:
            for name, digest in files.items():
                path = directory / name
                if not path.is_file() or sha256_file(path) != digest:
                    return None
        return StageOutput(stage, key, str(directory), files)

    def manifest(self, output: StageOutput) -> dict[str, Any]:
        """The manifest of a published output."""
        return json.loads(Path(output.dir, MANIFEST).read_text(encoding="utf-8"))

    def entries(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Published outputs (optionally of one stage): stage, key, created, file count, bytes."""
        found = []
        for manifest_path in sorted(self.root.glob(f"{stage or '*'}/*/{MANIFEST}")):
            directory = manifest_path.parent
            if directory.name.endswith(".partial"):
                continue
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            files = manifest.get("files", {})
            size = sum((directory / name).stat().st_size for name in files if (directory / name).is_file())
            found.append({"stage": directory.parent.name, "key": directory.name, "created": manifest.get("created", ""),
                          "files": len(files), "bytes": size, "dir": str(directory)})
        return found

    def find(self, stage: str, key_prefix: str) -> Path:
        """The directory of the one published output of ``stage`` whose key starts with ``key_prefix``."""
        matches = [e["dir"] for e in self.entries(stage) if e["key"].startswith(key_prefix)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} outputs of stage {stage!r} match key {key_prefix!r} under {self.root}")
        return Path(matches[0])

    def begin(self, stage: str, inputs: dict[str, str], config: dict[str, Any], code: str) -> StageRun:
        """Start (or resume) computing a stage; its ``.partial`` work dir is created if needed."""
        key = self.key_for(stage, inputs, config, code)
        run = StageRun(self, stage, key, inputs, config, code)
        run.work_dir.mkdir(parents=True, exist_ok=True)
        return run
