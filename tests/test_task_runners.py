"""Per-sample stages give the same results on the thread runner and on a local 2-worker Dask cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _merged(directory: str) -> dict[str, str]:
    return {split: (Path(directory) / f"{split}.jsonl").read_text(encoding="utf-8") for split in ("train", "dev", "test")}


def test_dask_and_threads_give_the_same_ocr_results(prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    results = {}
    for kind in ("threads", "dask"):
        overrides = {"artifacts_root": str(tmp_path / kind), "stage1.runner.kind": kind, "stage1.runner.max_workers": 2,
                     "stage1.runner.shard_size": 40, "stage1.caption.backend": "none"}
        out = pipeline(overrides=overrides, until="ocr")
        results[kind] = _merged(out["ocr"])
    assert results["threads"] == results["dask"]
    assert "Tower Bridge" in results["dask"]["train"] and "Larkin Square" in results["dask"]["dev"]
