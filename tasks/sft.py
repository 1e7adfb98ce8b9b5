"""Export (prompt, LLM answer) pairs as chat-format JSONL for supervised fine-tuning.

Each record is ``{"messages": [<the prompt's messages>..., {"role": "assistant", "content":
<knowledge>}]}``. A sample whose knowledge is missing (error set, or empty text) gets no record
and is listed, with the reason, in the summary; nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mner.samples import read_jsonl, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


def sft_records(prompts: Sequence[dict[str, Any]], knowledge: Sequence[dict[str, Any]],
                knowledge_path: str | Path = "knowledge") -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Chat records for the samples with an answer, and ``{"id", "reason"}`` for those without.

    ``prompts`` rows ``{"id", "messages", ...}`` and ``knowledge`` rows ``{"id", "knowledge",
    "error"}`` must match one to one by id, in order; a mismatch raises naming file:line.
    """
    if len(prompts) != len(knowledge):
        raise ValueError(f"{knowledge_path}: {len(knowledge)} knowledge rows for {len(prompts)} prompts")
    records: list[dict[str, Any]] = []
    without: list[dict[str, str]] = []
    for number, (prompt, answer) in enumerate(zip(prompts, knowledge), 1):
        if answer.get("id") != prompt["id"]:
            raise ValueError(f"{knowledge_path}:{number}: id {answer.get('id')!r} where the prompts have {prompt['id']!r}")
        text = str(answer.get("knowledge") or "").strip()
        error = answer.get("error")
        if error:
            reason = error.get("reason", error) if isinstance(error, dict) else error
            without.append({"id": prompt["id"], "reason": f"knowledge error: {reason}"})
        elif not text:
            without.append({"id": prompt["id"], "reason": "empty knowledge"})
        else:
            records.append({"messages": [*prompt["messages"], {"role": "assistant", "content": text}]})
    return records, without


@stage_task("sft")
def export_sft(run: StageRun, prompts: dict[str, Any], knowledge: dict[str, Any], splits: list[str],
               artifacts_root: str) -> dict[str, Any]:
    """Write ``{split}.jsonl`` chat records for each of ``splits`` (e.g. train, dev).

    The samples without an answer go to ``{split}.without_answer.jsonl`` (``{"id", "reason"}``)
    and are counted in the returned summary.
    """
    log = stage_logger()
    summary: dict[str, Any] = {}
    for split in splits:
        knowledge_path = Path(knowledge["dir"]) / f"{split}.jsonl"
        records, without = sft_records(read_jsonl(Path(prompts["dir"]) / f"{split}.jsonl"),
                                       read_jsonl(knowledge_path), knowledge_path)
        write_jsonl(run.work_dir / f"{split}.jsonl", records)
        write_jsonl(run.work_dir / f"{split}.without_answer.jsonl", without)
        summary[split] = {"records": len(records), "without_answer": len(without), "first_without": without[:20]}
        log.info("sft %s: %d records, %d samples without an answer", split, len(records), len(without))
    return summary
