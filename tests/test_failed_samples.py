"""Samples whose LLM requests failed are not cached as done: the run fails naming them, the rerun asks exactly them.

A small cut of the demo sample goes through stage 1 with the real llama.cpp server (SmolLM2) behind a
fault-injecting proxy that fails every request for three chosen tweets, then recovers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fault_injection import FaultInjectingProxy
from tests.conftest import SAMPLE
from tests.test_llm_client import llama_logs, llama_url, needs_llama  # noqa: F401 - the module's llama.cpp server fixtures

pytestmark = [pytest.mark.slow, needs_llama]
SIZES = {"train.txt": 8, "valid.txt": 4, "test.txt": 4}


def _cut(source: Path, target: Path, count: int) -> list[str]:
    """The first ``count`` tweets of a CoNLL file into ``target``; returns their texts."""
    blocks = source.read_text(encoding="utf-8").strip().split("\n\n")[:count]
    target.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return [" ".join(line.split("\t")[0] for line in block.splitlines()[1:]) for block in blocks]


def _cut_examples(target: Path) -> dict[str, str]:
    """The first two manual examples (whose tweets are in the first train tweets) into ``target``."""
    paths = {}
    for name, key in (("manual_examples.txt", "dataset.examples"), ("manual_examples_entities.txt", "dataset.examples_entities")):
        lines = (SAMPLE / name).read_text(encoding="utf-8").splitlines()[:4]
        (target / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[key] = str(target / name)
    return paths


def _stage1_overrides(root: Path, data: Path, base_url: str, **extra: object) -> dict[str, object]:
    """Stage 1 on the cut in ``data``: no OCR, zero-shot prompts, short answers from the LLM at ``base_url``."""
    return {
        "artifacts_root": str(root), "dataset.name": "twitter2015-sample", "dataset.train": str(data / "train.txt"),
        "dataset.dev": str(data / "valid.txt"), "dataset.test": str(data / "test.txt"),
        "dataset.captions": str(SAMPLE / "blip2_captions.txt"), "stage1.knowledge.backend": "llm", "stage1.ocr.backend": "none",
        "stage1.prompt.n_examples": 0, **_cut_examples(data), "stage1.llm.base_url": base_url,
        "stage1.llm.max_tokens": 12, "stage1.llm.shard_size": 4, "stage1.llm.timeout_s": 60, **extra,
    }


def _rows(directory: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_failed_samples_fail_the_stage_and_are_asked_again(prefect_harness, llama_url, tmp_path: Path) -> None:  # noqa: F811
    from flows.pipeline import pipeline

    data = tmp_path / "data"
    data.mkdir()
    texts = {name: _cut(SAMPLE / name, data / name, count) for name, count in SIZES.items()}
    doomed = [texts["train.txt"][1], texts["train.txt"][5], texts["test.txt"][2]]

    def picks(messages) -> bool:
        return any(f"Text: {text}\n" in m["content"] for m in messages or [] for text in doomed)

    root = tmp_path / "artifacts"
    with FaultInjectingProxy(llama_url, fail_when=picks) as proxy:
        overrides = _stage1_overrides(root, data, proxy.base_url, **{"stage1.llm.max_retries": 1})
        failed = pipeline(overrides=overrides, until="knowledge", return_state=True)
        assert failed.is_failed(), failed
        assert "3 samples have no result, more than the 0 allowed" in failed.message, failed.message
        assert len(proxy.picked) == 3 and all(n == 2 for n in proxy.picked.values())  # asked, retried once, given up
        assert not (root / "knowledge").exists()  # nothing downstream ran on the missing knowledge
        answered_first = sum(proxy.upstream_ok.values())
        assert answered_first == 16 - 3

        proxy.fail_when = None  # the server recovers
        proxy.reset()
        done = pipeline(overrides=overrides, until="knowledge", return_state=True)
        assert done.is_completed(), done
        assert sum(proxy.upstream_ok.values()) == 3 and proxy.calls == 3  # exactly the failed ones, once each

    knowledge_dir = next(d for d in (root / "knowledge").iterdir())
    alignment = json.loads((knowledge_dir / "alignment.json").read_text())
    for split in ("train", "dev", "test"):
        assert alignment[split]["without_knowledge"] == [], split
        assert all(r["knowledge"] for r in _rows(knowledge_dir, split)), split


def test_an_allowance_lets_the_run_go_on_and_lists_the_samples(prefect_harness, llama_url, tmp_path: Path) -> None:  # noqa: F811
    from flows.pipeline import pipeline

    data = tmp_path / "data"
    data.mkdir()
    texts = {name: _cut(SAMPLE / name, data / name, count) for name, count in SIZES.items()}
    doomed = texts["valid.txt"][0]
    root = tmp_path / "artifacts"

    def picks(messages) -> bool:
        return any(f"Text: {doomed}\n" in m["content"] for m in messages or [])

    with FaultInjectingProxy(llama_url, fail_when=picks) as proxy:
        overrides = _stage1_overrides(root, data, proxy.base_url,
                                      **{"stage1.llm.max_retries": 0, "stage1.llm.max_missing": 1})
        state = pipeline(overrides=overrides, until="knowledge", return_state=True)
        assert state.is_completed(), state
        (asked_for_doomed,) = proxy.picked  # the one prompt the proxy failed
        knowledge_dir = Path(state.result()["knowledge"])
        alignment = json.loads((knowledge_dir / "alignment.json").read_text())
        dev = _rows(knowledge_dir, "dev")
        assert alignment["dev"]["without_knowledge"] == [dev[0]["id"]] and dev[0]["knowledge"] == ""
        assert alignment["train"]["without_knowledge"] == [] == alignment["test"]["without_knowledge"]

        proxy.fail_when = None  # the server recovers: the rerun asks again for the sample let through, and only it
        proxy.reset()
        rerun = pipeline(overrides=overrides, until="knowledge", return_state=True)
        assert rerun.is_completed(), rerun
        assert proxy.calls == 1 and dict(proxy.upstream_ok) == {asked_for_doomed: 1}, (proxy.calls, proxy.upstream_ok)

    rerun_dir = Path(rerun.result()["knowledge"])
    assert rerun_dir != knowledge_dir  # new knowledge, so a new key
    alignment = json.loads((rerun_dir / "alignment.json").read_text())
    dev = _rows(rerun_dir, "dev")
    assert all(alignment[split]["without_knowledge"] == [] for split in ("train", "dev", "test")), alignment
    assert dev[0]["id"] == _rows(knowledge_dir, "dev")[0]["id"] and dev[0]["knowledge"], dev[0]
