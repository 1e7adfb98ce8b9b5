"""The per-sample answer cache of the LLM client: answers survive a killed run, so a rerun asks only for the rest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class AnswerCache:
    """One JSON file per key under ``root/<key[:2]>/``, each written atomically and fsynced."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the answer for ``key`` lives."""
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or ``None`` when absent or unreadable (then it is asked again)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("content"), str) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` durably: temporary file, fsync, rename."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(record)}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0


def default_cache_dir(artifacts_root: str | Path) -> Path:
    """The per-sample answer cache of an artifact store: ``<root>/cache/llm``."""
    return Path(artifacts_root) / "cache" / "llm"
