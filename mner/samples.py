"""Sample records on disk: split names and JSON-lines reading and writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPLITS = ("train", "dev", "test")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a bad line raises ``ValueError`` naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    return rows


def read_shard_rows(data: dict[str, Any], split: str, start: int, stop: int) -> list[dict[str, Any]]:
    """Rows ``[start:stop]`` of ``{split}.jsonl`` of ``data``: the samples a shard stage works on."""
    if start < 0 or stop < start:
        raise ValueError(f"bad shard bounds start={start} stop={stop} for split {split!r}")
    return read_jsonl(Path(data["dir"]) / f"{split}.jsonl")[start:stop]
