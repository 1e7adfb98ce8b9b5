"""Per-sample stages give the same results on the thread runner and on a local 2-worker Dask cluster,
and on Dask the shards really run in the cluster's worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _merged(directory: str) -> dict[str, str]:
    return {split: (Path(directory) / f"{split}.jsonl").read_text(encoding="utf-8") for split in ("train", "dev", "test")}


def test_dask_and_threads_give_the_same_ocr_results(prefect_harness, tmp_path: Path, monkeypatch) -> None:
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import pipeline

    # spies on the Dask runner (they record, then call the real methods): what was submitted to it, and,
    # just before its local cluster closes, how many tasks each worker process executed and its pid
    submitted: list[str] = []
    workers: dict[str, tuple[int, int]] = {}
    real_submit, real_exit = DaskTaskRunner.submit, DaskTaskRunner.__exit__

    def spying_submit(self, task, *args, **kwargs):
        submitted.append(task.name)
        return real_submit(self, task, *args, **kwargs)

    def spying_exit(self, *exc):
        if self._client is not None:
            workers.update(self._client.run(lambda dask_worker: (dask_worker.state.executed_count, os.getpid())))
        return real_exit(self, *exc)

    monkeypatch.setattr(DaskTaskRunner, "submit", spying_submit)
    monkeypatch.setattr(DaskTaskRunner, "__exit__", spying_exit)

    results = {}
    for kind in ("threads", "dask"):
        overrides = {"artifacts_root": str(tmp_path / kind), "stage1.runner.kind": kind, "stage1.runner.max_workers": 2,
                     "stage1.runner.shard_size": 40, "stage1.caption.backend": "none"}
        out = pipeline(overrides=overrides, until="ocr")
        results[kind] = _merged(out["ocr"])
    assert results["threads"] == results["dask"]
    assert "Tower Bridge" in results["dask"]["train"] and "Larkin Square" in results["dask"]["dev"]

    # only the Dask run went through the Dask runner: its 8 OCR shards (150/40 + 50/40 + 50/40), each executed
    # once by one of the two worker processes, none of them this one
    assert submitted == ["ocr-shard"] * 8, submitted
    assert len(workers) == 2 and sum(count for count, _ in workers.values()) == 8, workers
    assert os.getpid() not in {pid for _, pid in workers.values()}
