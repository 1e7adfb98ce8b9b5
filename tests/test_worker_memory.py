"""The training worker's memory settings: the allocator it runs on and oneDNN's kernel cache, as the
worker process itself reports them (what is mapped into it, what its environment holds)."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from tests.conftest import SAMPLE

HAS_TCMALLOC = ctypes.util.find_library("tcmalloc_minimal") is not None


def _one_epoch_job(tmp_path: Path, **train: object) -> dict:
    from mner.config import ModelConfig, TrainConfig
    from mner.formats import read_conll
    from mner.samples import write_jsonl

    rows = [{"id": str(i), "tokens": s.tokens, "tags": s.tags, "knowledge": ""}
            for i, s in enumerate(read_conll(SAMPLE / "train.txt", repair=True).sentences[:4])]
    write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = TrainConfig(epochs=1, batch_size=2, num_threads=1, device="cpu", precision="fp32", **train)
    return {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "train.jsonl"),
            "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"],
            "model": ModelConfig(max_length=64).model_dump(mode="json"), "train": cfg.model_dump(mode="json"),
            "use_knowledge": False, "processes": 1}


def _worker_line(tmp_path: Path, job: dict) -> str:
    from engine.launcher import run_training_job

    work = tmp_path / "model"
    work.mkdir()
    lines: list[str] = []
    result = run_training_job(job, work, lines.append)
    assert result["epochs_run"] == 1 and result["history"][0]["peak_rss_mib_after_dev"] > 0
    return next(line for line in lines if line.startswith("allocator="))


@pytest.mark.skipif(not HAS_TCMALLOC, reason="libtcmalloc-minimal4 is not installed (make setup installs it as root)")
def test_auto_runs_the_worker_on_tcmalloc_with_a_small_kernel_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    line = _worker_line(tmp_path, _one_epoch_job(tmp_path))
    allocator, cache = line.split()
    assert "libtcmalloc_minimal.so" in allocator and Path(allocator.split("=", 1)[1]).is_file()
    assert cache == "onednn_primitive_cache=16"


def test_system_keeps_the_c_library_malloc_and_the_users_cache_setting_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "5")
    line = _worker_line(tmp_path, _one_epoch_job(tmp_path, allocator="system", onednn_cache_capacity=64))
    assert line == "allocator=libc onednn_primitive_cache=5"


def test_a_named_allocator_that_is_missing_fails_naming_the_package(monkeypatch) -> None:
    from engine import launcher

    monkeypatch.setitem(launcher.ALLOCATOR_LIBRARIES, "jemalloc", "no-such-allocator-injected-by-this-test")
    with pytest.raises(ValueError, match=r"train.allocator=jemalloc.*apt-get install libjemalloc2.*auto or system"):
        launcher.allocator_library("jemalloc")
    assert launcher.allocator_library("system") is None


@pytest.mark.skipif(not HAS_TCMALLOC, reason="libtcmalloc-minimal4 is not installed (make setup installs it as root)")
def test_a_distill_worker_without_train_settings_gets_their_defaults(tmp_path: Path, monkeypatch) -> None:
    from engine.launcher import run_training_job

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    job = {"kind": "distill", "pairs_file": str(tmp_path / "missing-pairs-injected-by-this-test.jsonl"),
           "base_model": str(tmp_path / "no-model"), "distill": {}, "processes": 1}
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="training process failed"):  # the job's files are missing: it stops early
        run_training_job(job, tmp_path, lines.append)
    line = next(line for line in lines if line.startswith("allocator="))
    assert "libtcmalloc_minimal.so" in line and line.endswith("onednn_primitive_cache=16")


@pytest.mark.skipif(not HAS_TCMALLOC, reason="libtcmalloc-minimal4 is not installed (make setup installs it as root)")
def test_an_allocator_the_user_preloads_already_is_not_preloaded_twice(monkeypatch) -> None:
    from engine.launcher import allocator_library, worker_environment

    library = allocator_library("auto")
    mine = f"/usr/lib/x86_64-linux-gnu/{library} libother-preload-of-this-test.so"
    monkeypatch.setenv("LD_PRELOAD", mine)
    assert worker_environment(None)["LD_PRELOAD"] == mine
    monkeypatch.setenv("LD_PRELOAD", "libother-preload-of-this-test.so")
    assert worker_environment(None)["LD_PRELOAD"] == f"{library} libother-preload-of-this-test.so"
    monkeypatch.delenv("LD_PRELOAD")
    assert worker_environment(None)["LD_PRELOAD"] == library
