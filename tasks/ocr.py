"""Stage 1, item 2: the text written in each tweet image (OCR), one shard of a split per task.

The engines (RapidOCR, Tesseract, ModelScope) live in :mod:`engine.ocr`.
"""

from __future__ import annotations

from typing import Any

from engine.image_io import summarise
from engine.ocr import ocr_rows
from mner.samples import read_shard_samples, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


@stage_task("ocr-shard")
def ocr_shard(
    run: StageRun, data: dict[str, Any], split: str, start: int, stop: int, sources: dict[str, str],
    backend: str, min_score: float, artifacts_root: str,
) -> dict[str, Any]:
    """OCR rows ``[start:stop]`` of ``split`` into ``results.jsonl`` ({"id", "lines", "text", "error"} per row).

    ``sources`` maps row id -> image path (see :func:`engine.image_io.image_sources`). Returns the
    shard summary (rows, ok, failed, failed_by_kind, failures with id/path/reason, lines found).
    """
    log = stage_logger()
    samples = read_shard_samples(data, split, start, stop)
    results, items = ocr_rows(samples, sources, backend, min_score)
    write_jsonl(run.work_dir / "results.jsonl", results)
    found = sum(len(r["lines"]) for r in results if r["lines"])
    with_text = sum(1 for r in results if r["text"])
    summary = summarise(split, start, stop, items, backend=backend, lines=found, with_text=with_text)
    log.info("ocr %s[%d:%d] (%s): %d ok (%d with text), %d failed %s", split, start, stop, backend,
             summary["ok"], with_text, summary["failed"], summary["failed_by_kind"])
    return summary
