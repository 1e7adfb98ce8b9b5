"""The whole stage 1 on 8 posts per split of the demo sample with the real local llama.cpp server (SmolLM2)
and real RapidOCR, then stage 2 consuming its knowledge; a rerun replays from the cache; the API key leaks nowhere."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tests.secret_scan import secret_leaks
from tests.stage_checks import published_run_ids
from tests.tiny_sample import write_tiny_sample

pytestmark = pytest.mark.slow
PER_SPLIT = 8
SECRET = "sk-test-SECRET-stage1-7731"


def _rows(directory: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (Path(directory) / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def completion_requests(log_root: Path) -> int:
    """Chat-completion requests the llama.cpp servers under ``log_root`` answered, from their access log lines."""
    return sum(log.read_text(encoding="utf-8", errors="replace").count('"POST /v1/chat/completions ')
               for log in log_root.rglob("llama-server-*.log"))



def test_stage1_with_local_llm_feeds_stage2(prefect_harness, tmp_path: Path, monkeypatch, caplog, capfd) -> None:
    from flows.pipeline import pipeline

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    temp = tmp_path / "tmp"  # the flow's temporary files, the llama.cpp servers' logs among them, land here
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    root = tmp_path / "artifacts"
    overrides = {**write_tiny_sample(tmp_path / "data", per_split=PER_SPLIT),
                 "artifacts_root": str(root), "stage1.knowledge.backend": "llm", "stage1.prompt.n_examples": 0,
                 "stage1.llm.max_tokens": 16, "stage1.llm.n_parallel": 2, "stage1.llm.concurrency": 2,
                 "stage1.llm.shard_size": 4, "variants": ["text+knowledge"], "train.epochs": 1,
                 "train.max_train_sentences": 40, "model.max_length": 128}
    state = pipeline(overrides=overrides, return_state=True)
    assert state.is_completed(), state

    llm_dir = next(d for d in (root / "llm").iterdir() if not d.name.endswith(".partial"))
    joined_dir = next(d for d in (root / "knowledge").iterdir() if not d.name.endswith(".partial"))
    for split in ("train", "dev", "test"):
        answers = _rows(str(llm_dir), split)
        assert len(answers) == PER_SPLIT and all(a["knowledge"] and a["error"] is None for a in answers), split
        joined = _rows(str(joined_dir), split)
        assert [r["knowledge"] for r in joined] == [a["knowledge"] for a in answers]
    ocr_dir = next(d for d in (root / "ocr").iterdir() if not d.name.endswith(".partial"))
    assert any("Tower Bridge" in (r["text"] or "") for r in _rows(str(ocr_dir), "train"))
    prompts_dir = next(d for d in (root / "prompts").iterdir() if not d.name.endswith(".partial"))
    assert all(r["example_ids"] == [] and r["messages"][-1]["role"] == "user" for r in _rows(str(prompts_dir), "dev"))
    sft_dir = next(d for d in (root / "sft").iterdir() if not d.name.endswith(".partial"))
    record = json.loads((sft_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in record["messages"]][-1] == "assistant"
    scores = json.loads(next((root / "evaluate").iterdir()).joinpath("scores.json").read_text())
    assert 0.0 <= scores["test"]["f1"] <= 1.0

    asked = completion_requests(temp)
    assert asked >= 3 * PER_SPLIT  # every sample was asked once (more only where a request was retried)
    published = published_run_ids(root)
    cached_answers = sorted(p.name for p in (root / "cache" / "llm").rglob("*.json"))
    assert len(cached_answers) == 3 * PER_SPLIT

    # the rerun asks nothing: no request reaches the llama.cpp servers, no output is computed again
    again = pipeline(overrides=overrides, return_state=True)
    assert again.is_completed() and again.result() == state.result()
    assert completion_requests(temp) == asked
    assert published_run_ids(root) == published
    assert sorted(p.name for p in (root / "cache" / "llm").rglob("*.json")) == cached_answers

    # the key is nowhere: not in the store, the llama.cpp logs, Prefect's home, results, database or run logs
    assert not secret_leaks(SECRET, [root, temp])
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text


def test_predict_asks_the_local_llm(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from tests.test_training import run_tiny

    run_tiny(tmp_path / "model", epochs=1)
    text = "Larkin Square is busy tonight"
    result = CliRunner().invoke(app, ["predict", "--run", str(tmp_path / "model"), "--text", text, "--llm",
                                      "--image", str(SAMPLE / "images" / "123765.jpg"),
                                      "--artifacts-root", str(tmp_path / "artifacts")])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output[result.output.index("{"):])
    assert answer["knowledge"] and answer["tokens"] == text.split()
    assert "Larkin Square" in answer["ocr"]
