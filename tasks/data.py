"""Stages that read the benchmark: validate the CoNLL splits, then join PGIM knowledge and captions.

Both write one JSON-lines file per split (``train.jsonl``, ``dev.jsonl``, ``test.jsonl``), a
record per sentence: ``id`` (IMGID or position), ``image_id`` (or null), ``source`` (file:line),
``tokens``, ``tags``, and after the join ``knowledge`` and ``caption``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from mner import formats, pgim
from mner.samples import SPLITS, Sample, read_jsonl, read_samples, write_samples
from mner.store import StageRun
from mner.tags import iob2_spans
from tasks.common import stage_logger, stage_task


def iter_splits(output: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """(split, path) for each split file of a data-stage output."""
    for split in SPLITS:
        yield split, Path(output["dir"]) / f"{split}.jsonl"


def split_statistics(samples: list[Sample]) -> dict[str, Any]:
    """Sentences, tokens and entities per type of one split."""
    types: Counter[str] = Counter(span.type for sample in samples for span in iob2_spans(sample.tags or []))
    return {
        "sentences": len(samples),
        "tokens": sum(len(sample.tokens) for sample in samples),
        "entities": sum(types.values()),
        "entities_per_type": dict(sorted(types.items())),
    }


@stage_task("load")
def load_splits(run: StageRun, sources: dict[str, str], repair_bio: bool, artifacts_root: str) -> dict[str, Any]:
    """Read and validate the train/dev/test CoNLL files (all errors reported with file and line)."""
    log = stage_logger()
    stats: dict[str, Any] = {}
    for split in SPLITS:
        conll = formats.read_conll(sources[split], repair=repair_bio)
        write_samples(run.work_dir / f"{split}.jsonl", conll.sentences)
        stats[split] = {**split_statistics(conll.sentences), "notes": conll.notes, "repaired_tags": conll.repaired_tags}
        log.info("%s: %s", split, stats[split])
    (run.work_dir / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    return {"stats": stats}


def _merged_field(output: dict[str, Any] | None, split: str, field: str) -> dict[str, str]:
    """``id -> field`` from the merged output of a per-sample stage (errors count as empty)."""
    if output is None:
        return {}
    return {r["id"]: r.get(field) or "" for r in read_jsonl(Path(output["dir"]) / f"{split}.jsonl")}


@stage_task("knowledge")
def join_knowledge(
    run: StageRun,
    data: dict[str, Any],
    sources: dict[str, str],
    artifacts_root: str,
    captions: dict[str, Any] | None = None,
    stage1_knowledge: dict[str, Any] | None = None,
    knowledge_source: str = "llm",
    answer_form: str = "full",
    min_aligned_share: float = 0.0,
) -> dict[str, Any]:
    """Attach the knowledge Z and the image caption to every sentence.

    Z comes from the stage-1 knowledge output (the ``llm`` or ``retrieved`` stage, named by
    ``knowledge_source``: rows ``{"id", "knowledge"}``) when given, otherwise from PGIM's released files in
    ``sources`` (aligned by position and token equality: a sentence with no block gets an empty Z
    and is listed in the report, never a shifted alignment; a file that aligns with less than ``min_aligned_share`` of
    a split's sentences fails the stage, naming them). Z is cut to ``answer_form``
    (:func:`mner.pgim.answer_in_form`); every sample left without Z is
    listed by id in ``alignment.json`` (``without_knowledge``) and counted in the log. Captions come from the stage-1
    caption output when given, otherwise from ``sources["captions"]``.
    """
    log = stage_logger()
    caption_file = pgim.read_captions(sources["captions"]) if sources.get("captions") and captions is None else {}
    report: dict[str, Any] = {}
    for split, path in iter_splits(data):
        samples = read_samples(path)
        knowledge_path = sources.get(f"knowledge_{split}")
        if stage1_knowledge is not None:
            answers = _merged_field(stage1_knowledge, split, "knowledge")
            texts = [answers.get(s.id, "") for s in samples]
            report[split] = {"source": knowledge_source}
        elif knowledge_path:
            alignment = pgim.read_knowledge(knowledge_path, samples)
            log.info("%s knowledge: %s", split, alignment.report())
            pgim.check_aligned(knowledge_path, split, len(samples), [samples[i].id for i, _ in alignment.missing],
                               min_aligned_share, "knowledge", f"set dataset.knowledge_{split} to the knowledge file of "
                               f"dataset.{split} (PGIM's format: each post's tokens, then {pgim.EOS} and its knowledge)")
            texts = alignment.knowledge
            report[split] = {"source": "file", "missing": [list(m) for m in alignment.missing], "extra": alignment.extra}
        else:
            texts = [""] * len(samples)
            report[split] = {"source": None, "missing": "no knowledge file", "extra": []}
        texts = [pgim.answer_in_form(text, answer_form) for text in texts]
        report[split]["without_knowledge"] = [s.id for s, text in zip(samples, texts) if not text.strip()]
        if report[split]["without_knowledge"]:
            missing = report[split]["without_knowledge"]
            log.warning("%s: %d of %d samples have no knowledge Z (first ids: %s); see alignment.json",
                        split, len(missing), len(samples), ", ".join(missing[:10]))
        if sources.get("captions") and captions is None:
            pgim.check_aligned(sources["captions"], split, len(samples),
                               [s.id for s in samples if (s.image_id or "") not in caption_file], min_aligned_share,
                               "a caption", pgim.CAPTIONS_FIX)
        split_captions = _merged_field(captions, split, "caption")
        for sample, text in zip(samples, texts):
            sample.knowledge = text
            sample.caption = split_captions.get(sample.id, "") if captions is not None else caption_file.get(sample.image_id or "", "")
        report[split]["without_caption"] = sum(1 for s in samples if not s.caption)
        write_samples(run.work_dir / f"{split}.jsonl", samples)
    (run.work_dir / "alignment.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return {"alignment": report}
