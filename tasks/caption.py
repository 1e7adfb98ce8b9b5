"""Stage 1, item 1: a caption per tweet image, one shard of a split per task.

The captioners (PGIM's file, BLIP-2, LAVIS) live in :mod:`engine.captioners`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.captioners import caption_rows
from engine.image_io import summarise
from mner.pgim import CAPTIONS_FIX, check_aligned
from mner.samples import SPLITS, read_jsonl, read_shard_samples, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


@stage_task("caption-shard")
def caption_shard(
    run: StageRun, data: dict[str, Any], split: str, start: int, stop: int, sources: dict[str, str],
    backend: str, model: str, batch_size: int, max_new_tokens: int, dtype: str, artifacts_root: str,
) -> dict[str, Any]:
    """Caption rows ``[start:stop]`` of ``split`` into ``results.jsonl`` ({"id", "caption", "error"} per row).

    ``sources``: row id -> image path for ``blip2``/``lavis``; ``{"captions": <file>}`` for ``file``.
    Returns the shard summary (rows, ok, failed, failed_by_kind, failures with id/path/reason).
    """
    log = stage_logger()
    samples = read_shard_samples(data, split, start, stop)
    results, items, info = caption_rows(samples, sources, backend, model, batch_size, max_new_tokens, dtype)
    write_jsonl(run.work_dir / "results.jsonl", results)
    summary = summarise(split, start, stop, items, backend=backend, **info)
    log.info("caption %s[%d:%d] (%s): %d ok, %d failed %s", split, start, stop, backend,
             summary["ok"], summary["failed"], summary["failed_by_kind"])
    return summary


def check_caption_file(captions: dict[str, Any], path: str, min_share: float) -> None:
    """Fail, naming the file and the first posts without one, when the ``file`` backend's captions (the merged
    ``caption`` output) cover less than ``min_share`` of a split's posts: the file belongs to other data."""
    for split in SPLITS:
        rows = read_jsonl(Path(captions["dir"]) / f"{split}.jsonl")
        check_aligned(path, split, len(rows), [str(r["id"]) for r in rows if r.get("caption") is None], min_share,
                      "a caption", CAPTIONS_FIX)
