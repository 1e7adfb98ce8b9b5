"""Per-sample stages run as shards mapped over a task runner, then merged into one output.

A shard stage processes rows ``[start, stop)`` of one split of a data output and writes
``results.jsonl`` (one record per row, in order, each with ``id`` and ``error``). Each shard is a
cached stage of its own, so a crash loses only the shards in flight, and a rerun recomputes only
what is missing. A shard whose samples failed in a way a new attempt may fix is published as
incomplete: its answers are kept, but the next run computes it again (asking only for what
failed). The merge stage concatenates the shards into ``{split}.jsonl`` and counts the per-sample
failures; with ``max_missing`` set it fails when more samples than that are without a result.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from mner.samples import SPLITS, read_jsonl, write_jsonl
from mner.store import MANIFEST, StageRun
from tasks.common import checked, run_stage, stage_logger, stage_task, submit_stage

_MERGE_TASKS: dict[str, Task] = {}
_MANIFEST_FIELDS = {"stage", "key", "inputs", "config", "code_version", "files", "timings", "created"}


def shard_ranges(count: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``size`` rows covering ``count`` rows."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def _merge(run: StageRun, shards: list[dict[str, Any]], artifacts_root: str,
           max_missing: int | None = None) -> dict[str, Any]:
    """Concatenate shard results per split, in row order; count samples and failures.

    With ``max_missing`` set, more failed samples than that fail the stage, naming how many and why.
    """
    by_split: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    shard_summaries = []
    for shard in sorted(shards, key=lambda s: (SPLITS.index(s["split"]), s["start"])):
        manifest = json.loads((Path(shard["output"]["dir"]) / MANIFEST).read_text(encoding="utf-8"))
        shard_summaries.append({k: v for k, v in manifest.items() if k not in _MANIFEST_FIELDS})
        rows = read_jsonl(Path(shard["output"]["dir"]) / "results.jsonl")
        if len(rows) != shard["stop"] - shard["start"]:
            raise ValueError(f"shard {shard['split']}[{shard['start']}:{shard['stop']}] of {shard['output']['dir']} "
                             f"holds {len(rows)} results for {shard['stop'] - shard['start']} rows")
        by_split[shard["split"]] += rows
    summary: dict[str, Any] = {}
    for split, rows in by_split.items():
        write_jsonl(run.work_dir / f"{split}.jsonl", rows)
        failures = [{"id": r["id"], **r["error"]} for r in rows if r.get("error")]
        summary[split] = {"samples": len(rows), "failed": len(failures), "failures": failures[:50]}
    counts = {"samples": {s: v["samples"] for s, v in summary.items()}, "failed": {s: v["failed"] for s, v in summary.items()}}
    summary["shards"] = shard_summaries  # what each shard's stage reported when it was computed
    (run.work_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    failed = sum(counts["failed"].values())
    if max_missing is not None and failed > max_missing:
        raise MissingSamplesError(run.stage, failed, max_missing, [f for s in SPLITS for f in summary[s]["failures"]])
    return counts


class MissingSamplesError(RuntimeError):
    """More samples of a per-sample stage are without a result than its allowance permits."""

    def __init__(self, stage: str, failed: int, allowed: int, failures: list[dict[str, Any]]) -> None:
        reasons = Counter(str(f.get("reason", "?")) for f in failures)
        listed = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(5))
        examples = ", ".join(str(f.get("id")) for f in failures[:10])
        super().__init__(
            f"{stage}: {failed} samples have no result, more than the {allowed} allowed; reasons: {listed}; "
            f"first ids: {examples}. Their finished neighbours are kept: run again to retry exactly these samples, "
            f"or raise the allowance (stage1.llm.max_missing) to go on without them.")
        self.failed, self.allowed = failed, allowed


def merge_task(stage: str) -> Task:
    """The cached stage that merges the shards of ``stage`` (one Prefect task per stage name)."""
    if stage not in _MERGE_TASKS:
        _MERGE_TASKS[stage] = stage_task(stage)(_merge)
    return _MERGE_TASKS[stage]


def map_shards(
    shard_task: Task,
    data: dict[str, Any],
    shard_size: int,
    refresh: bool = False,
    shard_params: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    input_name: str = "data",
    max_missing: int | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run ``shard_task`` over every shard of every split on the flow's task runner, then merge.

    ``data`` (passed to the shard task as ``input_name``) is the output whose ``{split}.jsonl``
    rows are the samples. ``shard_params(rows)`` may add parameters that depend on a shard's rows
    (image paths whose content must enter the shard's key). ``max_missing`` is the merge's
    allowance of samples without a result (None: report them, never fail). A progress artifact
    follows the shards as they finish.
    """
    stage = shard_task.stage_name.removesuffix("-shard")  # type: ignore[attr-defined]
    log = stage_logger()
    submitted = []
    for split in SPLITS:
        rows = read_jsonl(Path(data["dir"]) / f"{split}.jsonl")
        for start, stop in shard_ranges(len(rows), shard_size):
            extra = shard_params(rows[start:stop]) if shard_params else {}
            inputs = {input_name: data, "split": split, "start": start, "stop": stop}
            future = submit_stage(shard_task, refresh, **inputs, **extra, **params)
            submitted.append((future, {"split": split, "start": start, "stop": stop, "params": {**inputs, **extra, **params}}))
    progress_id = create_progress_artifact(0.0, key=f"{stage}-progress", description=f"{stage}: shards finished")
    placement = {id(future): where for future, where in submitted}
    shards, finished = [], 0
    for future in as_completed([future for future, _ in submitted]):
        where = placement[id(future)]
        output = checked(shard_task, future.result(), where["params"])
        shards.append({"split": where["split"], "start": where["start"], "stop": where["stop"], "output": output})
        finished += 1
        update_progress_artifact(progress_id, round(100 * finished / len(submitted), 1))
    log.info("%s: %d shards finished", stage, finished)
    shards.sort(key=lambda s: (SPLITS.index(s["split"]), s["start"]))  # completion order must not shape the key
    merge_params: dict[str, Any] = {"max_missing": max_missing} if max_missing is not None else {}
    return run_stage(merge_task(stage), refresh, shards=shards, artifacts_root=params["artifacts_root"], **merge_params)
