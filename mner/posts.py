"""Posts to tag, read from files as a stream: JSONL, plain text (a post a line) or CoNLL (with or without tags).

A file is cut into shards of posts by byte ranges (:func:`scan_shards`): one pass over the file that
keeps nothing but each shard's range, first line and content hash, so memory does not grow with
the input. :func:`read_shard` reads one range back as posts. A line that cannot be a post (invalid
JSON, no text, an image that is not there) is returned as a post with ``problem`` set, never
dropped, so that it can be reported with its ``file:line``.

- JSONL: ``{"text": ..., "id": ..., "image": ..., "knowledge": ...}``, only ``text`` required;
  ``image`` is a path (absolute or relative to the file's folder) or an id under the images folder
  (``<id>``, ``<id>.jpg``).
- Plain text: one post per line (an empty line is an empty post).
- CoNLL: blocks separated by blank lines, an optional ``IMGID:<id>`` line, then one token per line,
  with or without a tag after it (the tag is ignored); the tokens are used as they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mner.formats import parse_token_line

FORMATS = ("jsonl", "text", "conll")
SHARD_SIZE = 1024  # posts per tag-shard; benchmarks/tag_throughput.py --shard-size measures a size
CONLL_SUFFIXES = (".conll", ".bio", ".iob")
_SNIFF_LINES = 50


@dataclass(frozen=True)
class ShardSpec:
    """A run of posts in one file: bytes ``[start, stop)``, the line it starts at, how many posts, their sha256."""

    file: str
    format: str
    start: int
    stop: int
    first_line: int
    posts: int
    sha256: str


@dataclass
class RawPost:
    """One post as read: its id and ``file:line``, raw ``text`` or given ``tokens``, image, inline knowledge, problem."""

    id: str
    where: str
    text: str | None = None
    tokens: list[str] | None = None
    image: str | None = None
    knowledge: str | None = None
    problem: str | None = None


def input_files(path: str | Path) -> list[Path]:
    """``path`` itself, or the files of the folder ``path`` (recursively, sorted, hidden ones left out)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder of posts")
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise FileNotFoundError(f"{path}: the folder holds no files of posts")
    return files


def detect_format(path: str | Path) -> str:
    """``jsonl`` for ``.jsonl``/``.json``; ``conll`` for ``.conll``/``.bio``/``.iob`` or a file whose first lines hold
    an ``IMGID:`` line or a tab; else ``text``."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix.lower() in CONLL_SUFFIXES:
        return "conll"
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            if number >= _SNIFF_LINES:
                break
            if line.startswith(("IMGID:", "\ufeffIMGID:")) or "\t" in line:
                return "conll"
    return "text"


def _starts_post(line: bytes, fmt: str, in_block: bool) -> bool:
    """Whether ``line`` starts a post: any line of a text file, a non-empty JSONL line, a CoNLL block's first line."""
    if fmt == "text":
        return True
    return bool(line.strip()) and not (fmt == "conll" and in_block)


def scan_shards(path: str | Path, fmt: str, shard_size: int) -> Iterator[ShardSpec]:
    """Shards of at most ``shard_size`` posts of one file, in order, from one streaming pass (hashed as read).

    Empty JSONL lines are not posts; in a text file every line is one (an empty one is rejected).
    """
    opened: tuple[int, int] | None = None  # (start byte, first line) of the shard being read
    posts, offset, in_block, digest = 0, 0, False, hashlib.sha256()
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if _starts_post(line, fmt, in_block):
                if opened is not None and posts == shard_size:
                    yield ShardSpec(str(path), fmt, opened[0], offset, opened[1], posts, digest.hexdigest())
                    opened = None
                if opened is None:
                    opened, posts, digest = (offset, number), 0, hashlib.sha256()
                posts += 1
            in_block = bool(line.strip())
            if opened is not None:
                digest.update(line)
            offset += len(line)
    if opened is not None:
        yield ShardSpec(str(path), fmt, opened[0], offset, opened[1], posts, digest.hexdigest())


def _range_lines(path: str | Path, start: int, stop: int) -> Iterator[str]:
    """The lines of bytes ``[start, stop)`` of a file, decoded as UTF-8 (a bad byte becomes U+FFFD), without terminators."""
    with open(path, "rb") as handle:
        handle.seek(start)
        while handle.tell() < stop:
            raw = handle.readline()
            if not raw:
                break
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n").removeprefix("\ufeff")


def read_shard(spec: ShardSpec, images: str | Path | None = None) -> Iterator[RawPost]:
    """The posts of one shard, in order; a bad one carries its ``problem``."""
    name = Path(spec.file).name
    lines = enumerate(_range_lines(spec.file, spec.start, spec.stop), spec.first_line)
    if spec.format == "jsonl":
        for number, line in lines:
            if line.strip():
                yield _jsonl_post(line, name, number, Path(spec.file).parent, images)
    elif spec.format == "text":
        for number, line in lines:
            post = RawPost(f"{name}:{number}", f"{spec.file}:{number}", text=line)
            post.problem = None if line.strip() else "empty post"
            yield post
    elif spec.format == "conll":
        yield from _conll_posts(lines, spec.file, images)
    else:
        raise ValueError(f"unknown input format {spec.format!r}; expected one of {FORMATS}")


def _jsonl_post(line: str, name: str, number: int, folder: Path, images: str | Path | None) -> RawPost:
    where = f"{folder / name}:{number}"
    try:
        row: Any = json.loads(line)
    except json.JSONDecodeError as err:
        return RawPost(f"{name}:{number}", where, problem=f"not valid JSON ({err.msg} at column {err.colno})")
    if not isinstance(row, dict):
        return RawPost(f"{name}:{number}", where, problem=f"a JSON {type(row).__name__}, not an object with \"text\"")
    post = RawPost(str(row.get("id") if row.get("id") is not None else f"{name}:{number}"), where,
                   text=row.get("text") if isinstance(row.get("text"), str) else None,
                   knowledge=row.get("knowledge") if isinstance(row.get("knowledge"), str) else None)
    if post.text is None:
        post.problem = "no \"text\" string"
    elif not post.text.strip():
        post.problem = "empty post"
    elif row.get("image"):
        post.image = find_image(str(row["image"]), folder, images)
        if post.image is None:
            post.problem = f"missing image {row['image']!r} (looked in {folder}" + (f" and {images})" if images else ")")
    return post


def find_image(name: str, folder: Path, images: str | Path | None) -> str | None:
    """The image file a post names: a path (absolute or relative to the input's folder), else ``<images>/<name>[.jpg]``."""
    candidates = [Path(name), folder / name]
    if images is not None:
        candidates += [Path(images) / name, Path(images) / f"{name}.jpg"]
    return next((str(c) for c in candidates if c.is_file()), None)


def _conll_posts(lines: Iterator[tuple[int, str]], path: str, images: str | Path | None) -> Iterator[RawPost]:
    name, tokens, image_id, start = Path(path).name, [], None, 0
    for number, line in [*lines, (0, "")]:
        if line.strip():
            if not start:
                start = number
            if line.strip().startswith("IMGID:") and not tokens and image_id is None:
                image_id = line.strip().removeprefix("IMGID:").strip()
                continue
            parsed = parse_token_line(line)
            tokens.append(parsed[0] if parsed else line.strip())
            continue
        if start:
            post = RawPost(image_id or f"{name}:{start}", f"{path}:{start}", tokens=tokens)
            if not tokens:
                post.problem = f"empty post (IMGID:{image_id} is followed by no tokens)"
            elif image_id and images is not None:
                post.image = find_image(image_id, Path(path).parent, images)
                if post.image is None:
                    post.problem = f"missing image {image_id}.jpg in {images}"
            yield post
        tokens, image_id, start = [], None, 0
