"""Cut the demo sample's in-context examples out of PGIM's hand-written manual examples.

Usage: python data/make_examples.py [../shared/data/twitter2015] [data/sample]

Keeps, byte for byte (CRLF line endings as in the originals), the id/answer and id/entities
line pairs of ``manual_examples.txt`` and ``manual_examples_entities.txt`` whose image id is a
tweet of the sample's ``train.txt``. Every PGIM example is a train tweet, so these are all the
examples the sample can show in a prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path

FILES = ("manual_examples.txt", "manual_examples_entities.txt")


def train_ids(train: Path) -> set[str]:
    """Image ids of a CoNLL split (its ``IMGID:`` lines)."""
    lines = train.read_text(encoding="utf-8").splitlines()
    return {line.removeprefix("IMGID:").strip() for line in lines if line.startswith("IMGID:")}


def keep_pairs(data: bytes, ids: set[str], label: str) -> tuple[bytes, int]:
    """The id/value line pairs of ``data`` whose id is in ``ids`` (raw bytes), and how many."""
    lines = data.splitlines(keepends=True)
    if len(lines) % 2:
        raise ValueError(f"{label}: odd number of lines ({len(lines)}): expected id/value pairs")
    kept = [lines[k] + lines[k + 1] for k in range(0, len(lines), 2) if lines[k].decode().strip() in ids]
    return b"".join(kept), len(kept)


def main(source: Path, target: Path) -> None:
    """Write the sample's two manual-example files into ``target``."""
    ids = train_ids(target / "train.txt")
    for name in FILES:
        data, count = keep_pairs((source / "pgim" / name).read_bytes(), ids, str(source / "pgim" / name))
        (target / name).write_bytes(data)
        print(f"{target / name}: {count} examples")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0] if args else "../shared/data/twitter2015"), Path(args[1] if len(args) > 1 else "data/sample"))
