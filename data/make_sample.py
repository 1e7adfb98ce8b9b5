"""Cut the bundled demo sample out of the Twitter-2015 benchmark and PGIM's released files.

Usage: python data/make_sample.py [../shared/data/twitter2015] [data/sample]

Takes the first 150 train, 50 valid and 50 test tweets, their PGIM knowledge blocks (raw,
CRLF kept, so the sample exercises the same importer as the full files) and their captions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SIZES = {"train": 150, "valid": 50, "test": 50}


def blocks(data: bytes) -> list[bytes]:
    """Blank-line separated blocks of a file, line endings kept inside each block."""
    return [b for b in re.split(rb"(?:\r?\n){2,}", data) if b.strip()]


def main(source: Path, target: Path) -> None:
    """Write the sample splits, knowledge files and captions into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    ids: set[str] = set()
    for split, size in SIZES.items():
        tweets = blocks((source / f"{split}.txt").read_bytes())[:size]
        ids |= {t.split(b"\n", 1)[0].decode().removeprefix("IMGID:").strip() for t in tweets}
        (target / f"{split}.txt").write_bytes(b"\n\n".join(tweets) + b"\n\n")
        knowledge = blocks((source / "pgim" / f"knowledge_{split}.txt").read_bytes())[:size]
        (target / f"knowledge_{split}.txt").write_bytes(b"\r\n\r\n".join(knowledge) + b"\r\n\r\n")
    captions = [
        line for line in (source / "pgim" / "blip2_captions.txt").read_text(encoding="utf-8").splitlines()
        if line.split(".jpg", 1)[0] in ids
    ]
    (target / "blip2_captions.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0] if args else "../shared/data/twitter2015"), Path(args[1] if len(args) > 1 else "data/sample"))
