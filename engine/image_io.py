"""Image loading and validation shared by the per-image stage-1 stages (captioning, OCR).

Every image is opened and fully decoded with PIL before any backend sees it, so a missing,
empty, truncated or non-image file becomes a per-sample error (``{"reason", "kind"}``) instead of
a crash deep inside a model. The shard helpers here read a shard's rows, resolve each row's image
path from ``sources`` and summarise the results in the shape every stage-1 shard returns.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, UnidentifiedImageError

from mner.samples import Sample

# kinds of per-sample failure, as counted in a shard summary
MISSING = "missing"
EMPTY = "empty"
NOT_IMAGE = "not_image"
CORRUPT = "corrupt"
NO_IMAGE = "no_image"
NO_SOURCE = "no_source"
BACKEND = "backend_error"


class BadImage(Exception):
    """An image that cannot be used; ``kind`` is one of the module's failure kinds."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def error(self) -> dict[str, str]:
        """The per-sample ``error`` record."""
        return {"reason": self.reason, "kind": self.kind}


class BackendUnavailable(RuntimeError):
    """A backend whose optional package or program is not installed (a setup error, not per sample)."""


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode ``path`` as an RGB image; raise :class:`BadImage` saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadImage(MISSING, f"image file not found: {path}") from None
    except OSError as exc:
        raise BadImage(MISSING, f"image file unreadable: {path} ({exc.strerror or exc})") from None
    if size == 0:
        raise BadImage(EMPTY, f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
    except UnidentifiedImageError:
        raise BadImage(NOT_IMAGE, f"not an image file (PIL cannot identify it): {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(CORRUPT, f"image too large to decode safely: {path} ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL reports truncated JPEGs as OSError, broken PNG chunks as SyntaxError/ValueError
        raise BadImage(CORRUPT, f"truncated or corrupt image: {path} ({exc})") from None


@dataclass
class ShardItem:
    """One row of a shard: its id, the image id, the resolved path (or None) and any early error."""

    id: str
    image_id: str | None
    path: str | None
    error: dict[str, str] | None = None


def image_sources(samples: Sequence[Sample], image_dir: str | Path) -> dict[str, str]:
    """``{sample id: <image_dir>/<image_id>.jpg}`` for the samples that have an image id.

    This is the ``sources`` argument of the image stages: every image's content enters the
    stage key, and a file that does not exist hashes as "missing" (the stage then reports it).
    """
    image_dir = Path(image_dir)
    return {str(s.id): str(image_dir / f"{s.image_id}.jpg") for s in samples if s.image_id}


def shard_items(samples: Sequence[Sample], sources: dict[str, str]) -> list[ShardItem]:
    """Resolve each sample's image path from ``sources`` (keyed by sample id); samples without one get an error."""
    items = []
    for sample in samples:
        row_id, image_id = str(sample.id), sample.image_id
        path = sources.get(row_id)
        item = ShardItem(row_id, image_id, path)
        if path is None:
            if not image_id:
                item.error = {"reason": f"tweet {row_id} has no image (image_id is null)", "kind": NO_IMAGE}
            else:
                item.error = {"reason": f"no image path for row {row_id} (image {image_id}.jpg) in sources",
                              "kind": NO_SOURCE}
        items.append(item)
    return items


def summarise(split: str, start: int, stop: int, items: list[ShardItem], **extra: Any) -> dict[str, Any]:
    """The shard summary: row counts, counts per failure kind, and every failure with id/path/reason."""
    kinds = Counter(item.error["kind"] for item in items if item.error)
    failures = [{"id": i.id, "path": i.path, "reason": i.error["reason"], "kind": i.error["kind"]}
                for i in items if i.error]
    return {
        "split": split,
        "start": start,
        "stop": stop,
        "rows": len(items),
        "ok": len(items) - len(failures),
        "failed": len(failures),
        "failed_by_kind": dict(sorted(kinds.items())),
        "failures": failures,
        **extra,
    }
