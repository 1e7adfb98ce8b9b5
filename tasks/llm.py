"""Stage ``llm``: ask an OpenAI-compatible LLM for each prompt's auxiliary knowledge Z.

``llm_shard`` reads rows ``[start:stop]`` of ``{split}.jsonl`` of a prompts output (rows
``{"id", "messages", ...}``) and writes ``results.jsonl``, one row per input row in order:
``{"id", "knowledge", "raw", "usage", "cached", "error"}``. ``knowledge`` is the answer with its
whitespace collapsed and its length capped at a word boundary; ``raw`` is the answer as received.
A failed sample gets ``knowledge``/``raw`` null and ``error: {"reason": ...}``; nothing is raised
or dropped. Answers are cached per sample (see :mod:`engine.llm_client`) as they arrive, so a
killed shard resumes with only the missing samples requested. A shard where a request failed
is published as incomplete: the next run computes it again, which asks
for exactly those samples; the merge fails the stage when more are missing than allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.answers import answer_rows
from engine.llm_client import LLMSettings
from engine.llm_server import server_problem
from mner.samples import read_jsonl, write_jsonl
from mner.store import StageRun
from tasks.common import read_prefect_secret, stage_logger, stage_task


def default_cache_dir(artifacts_root: str | Path) -> Path:
    """The per-sample answer cache of an artifact store: ``<root>/cache/llm``."""
    return Path(artifacts_root) / "cache" / "llm"


@stage_task("llm-shard")
def llm_shard(
    run: StageRun, prompts: dict[str, Any], split: str, start: int, stop: int, endpoint: str, model: str,
    runtime: dict[str, Any] | None = None, api_key_env: str = "OPENAI_API_KEY", api_key_secret: str | None = None, temperature: float = 0.0,
    max_tokens: int = 256, top_p: float = 1.0, seed: int | None = 0, concurrency: int = 4, rpm: int = 0,
    tpm: int = 0, timeout_s: float = 60.0, max_retries: int = 6, max_answer_chars: int = 1000,
    price_prompt_per_1k: float = 0.0, price_completion_per_1k: float = 0.0, cache_dir: str | None = None,
    artifacts_root: str = "artifacts",
) -> dict[str, Any]:
    """Ask the LLM for rows ``[start:stop]`` of ``{split}.jsonl`` of ``prompts``; write ``results.jsonl``.

    ``endpoint`` names the server in the keys (a URL, or e.g. ``llama.cpp:smollm2`` for a local
    server); ``runtime["base_url"]`` is where requests go this run (default: ``endpoint``). The
    runtime dict must not shape the output: the flow keeps it out of the stage key. A local
    server at that URL that dies fails the shard at once, naming the server and its log.
    """
    logger = stage_logger()
    base_url = (runtime or {}).get("base_url") or endpoint
    if not str(base_url).startswith(("http://", "https://")):
        raise ValueError(f"llm: no base URL to send requests to (endpoint {endpoint!r}, runtime {runtime!r})")
    source = Path(prompts["dir"]) / f"{split}.jsonl"
    rows = read_jsonl(source)[start:stop]
    settings = LLMSettings(
        base_url=base_url, model=model, endpoint=endpoint, api_key_env=api_key_env, api_key_secret=api_key_secret,
        temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed, concurrency=concurrency,
        rpm=rpm, tpm=tpm, timeout_s=timeout_s, max_retries=max_retries,
        price_prompt_per_1k=price_prompt_per_1k, price_completion_per_1k=price_completion_per_1k,
    )
    cache = Path(cache_dir) if cache_dir else default_cache_dir(artifacts_root)
    results, summary = answer_rows(rows, settings, cache, str(source), start + 1, max_answer_chars,
                                   endpoint_problem=lambda: server_problem(base_url), read_secret=read_prefect_secret)
    write_jsonl(run.work_dir / "results.jsonl", results)
    usage = summary["usage"]
    logger.info(
        "llm %s[%d:%d]: %d answered (%d cached), %d failed; %d requests, %d retries, %d+%d tokens, cost %.4f",
        split, start, stop, summary["answered"], usage["cached"], summary["failed"], usage["requests"],
        usage["retries"], usage["prompt_tokens"], usage["completion_tokens"], usage["cost"],
    )
    if summary["maybe_billed"]:
        logger.warning("llm %s[%d:%d]: %d requests timed out after they were sent; the server may have billed them, "
                       "and their tokens are not in the cost above", split, start, stop, summary["maybe_billed"])
    for failure in summary["failures"][:20]:
        logger.warning("llm: %s (%s): %s", failure["path"], failure["id"], failure["reason"])
    incomplete = {"retryable": summary["retryable"]} if summary["retryable"] else None
    return {"split": split, "start": start, "stop": stop, **summary, "incomplete": incomplete}
