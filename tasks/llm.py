"""Stage ``llm``: ask an OpenAI-compatible LLM for each prompt's auxiliary knowledge Z.

``llm_shard`` reads rows ``[start:stop]`` of ``{split}.jsonl`` of a prompts output (rows
``{"id", "messages", ...}``) and writes ``results.jsonl``, one row per input row in order:
``{"id", "knowledge", "raw", "usage", "cached", "error"}``. ``knowledge`` is the answer with its
whitespace collapsed and its length capped at a word boundary; ``raw`` is the answer as received.
A failed sample gets ``knowledge``/``raw`` null and ``error: {"reason": ...}``; nothing is raised
or dropped. Answers are cached per sample (see :mod:`tasks.llm_client`) as they arrive, so a
killed shard resumes with only the missing samples requested. A shard where a request failed
is published as incomplete: the next run computes it again, which asks
for exactly those samples; the merge fails the stage when more are missing than allowed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from mner.config import LlmConfig
from mner.store import StageRun
from tasks.common import stage_logger, stage_task
from tasks.data import read_jsonl, write_jsonl
from tasks.llm_client import Completion, LLMSettings, complete_all
from tasks.llm_server import server_problem

_SPACE = re.compile(r"\s+")


def clean_answer(text: str, max_chars: int) -> str:
    """Collapse whitespace and cap the length at ``max_chars``, cutting at a word boundary."""
    text = _SPACE.sub(" ", text).strip()
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    boundary = cut.rfind(" ")
    return (cut[:boundary] if boundary > 0 else text[:max_chars]).rstrip()


def check_prompt_row(row: Any) -> str | None:
    """Why a prompt row cannot be sent (``None`` when it can): it needs a non-empty ``messages`` list."""
    if not isinstance(row, dict):
        return "row is not a JSON object"
    if row.get("error"):
        reason = row["error"].get("reason") if isinstance(row["error"], dict) else row["error"]
        return f"prompt stage failed: {reason}"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no 'messages' list"
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            return f"messages[{number}] needs string 'role' and 'content'"
    return None


def answer_rows(
    rows: list[dict[str, Any]], settings: LLMSettings, cache_dir: str | Path, source: str, first_line: int = 1,
    max_answer_chars: int = 1000, on_done: Callable[[int, Completion], None] | None = None,
    endpoint_problem: Callable[[], str | None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer prompt rows; (result rows in input order, summary). ``source`` and ``first_line`` name bad rows.

    ``endpoint_problem`` (see :class:`tasks.llm_client.LLMClient`) makes a dead endpoint raise at once.
    """
    problems = {i: check_prompt_row(row) for i, row in enumerate(rows)}
    sendable = [i for i, problem in problems.items() if problem is None]
    started = time.time()
    completions, usage = complete_all(settings, cache_dir, [rows[i]["messages"] for i in sendable], on_done,
                                      endpoint_problem)
    by_index = dict(zip(sendable, completions))
    results, failures, retryable = [], [], []
    for i, row in enumerate(rows):
        row_id = row.get("id") if isinstance(row, dict) else None
        done = by_index.get(i)
        reason = problems[i] or (done.error if done else None)
        if done and reason is None and not done.content.strip():  # type: ignore[union-attr]
            reason = "empty answer"
        result: dict[str, Any] = {
            "id": row_id, "knowledge": None, "raw": done.content if done else None,
            "usage": done.usage if done else {}, "cached": bool(done and done.cached), "error": None,
        }
        if reason is None:
            result["knowledge"] = clean_answer(done.content, max_answer_chars)  # type: ignore[union-attr, arg-type]
        else:
            result["error"] = {"reason": reason}
            failures.append({"id": row_id, "path": f"{source}:{first_line + i}", "reason": reason})
            if problems[i] is None and (done is None or done.error is not None):
                retryable.append(reason)
        results.append(result)
    summary = {
        "rows": len(rows), "answered": len(rows) - len(failures), "cached": usage["cached"],
        "failed": len(failures), "failures": failures, "retryable": len(retryable), "usage": usage,
        "maybe_billed": maybe_billed(usage), "seconds": round(time.time() - started, 3),
    }
    return results, summary


def maybe_billed(usage: dict[str, Any]) -> int:
    """Attempts that timed out after they were sent: the server may have answered, and billed, them.

    Their tokens never reached the client, so ``usage["cost"]`` (which counts the answers received)
    leaves them out; a run with retried timeouts may have cost more than it reports.
    """
    return int(usage.get("errors", {}).get("timeout", 0))


def default_cache_dir(artifacts_root: str | Path) -> Path:
    """The per-sample answer cache of an artifact store: ``<root>/cache/llm``."""
    return Path(artifacts_root) / "cache" / "llm"


NOT_SHARD_SETTINGS = frozenset({"base_url", "local_model", "n_parallel", "n_ctx", "shard_size", "max_missing"})


def shard_settings(llm: LlmConfig) -> dict[str, Any]:
    """The ``llm`` argument of :func:`llm_shard`: the ``stage1.llm`` section as JSON, less what is not the shard's.

    Left out: ``base_url`` and ``local_model`` (the key names the server by ``endpoint``: a local
    server's URL changes every run), ``n_parallel`` and ``n_ctx`` (they start the local server),
    ``shard_size`` (the shard's bounds say it) and ``max_missing`` (the merge's).
    """
    return llm.model_dump(mode="json", exclude=set(NOT_SHARD_SETTINGS))


@stage_task("llm-shard")
def llm_shard(
    run: StageRun, prompts: dict[str, Any], split: str, start: int, stop: int, endpoint: str, llm: dict[str, Any],
    artifacts_root: str, runtime: dict[str, Any] | None = None, cache_dir: str | None = None,
) -> dict[str, Any]:
    """Ask the LLM for rows ``[start:stop]`` of ``{split}.jsonl`` of ``prompts``; write ``results.jsonl``.

    ``llm`` is :func:`shard_settings` of the config (model, generation, limits, retries, prices,
    answer length): all of it enters the stage key. ``endpoint`` names the server in the keys (a
    URL, or e.g. ``llama.cpp:smollm2`` for a local server); ``runtime["base_url"]`` is where
    requests go this run (default: ``endpoint``). The runtime dict must not shape the output: the
    stage key leaves it out. A local server at that URL that dies fails the shard at once, naming
    the server and its log.
    """
    logger = stage_logger()
    base_url = (runtime or {}).get("base_url") or endpoint
    if not str(base_url).startswith(("http://", "https://")):
        raise ValueError(f"llm: no base URL to send requests to (endpoint {endpoint!r}, runtime {runtime!r})")
    source = Path(prompts["dir"]) / f"{split}.jsonl"
    rows = read_jsonl(source)[start:stop]
    missing = set(LlmConfig.model_fields) - NOT_SHARD_SETTINGS - set(llm)
    if missing:  # a value left to LlmConfig's default here would be missing from the stage key
        raise ValueError(f"llm: settings {sorted(missing)} not given; pass shard_settings(config.stage1.llm)")
    config = LlmConfig.model_validate(llm)
    settings = LLMSettings.from_config(config, base_url, endpoint)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(artifacts_root)
    results, summary = answer_rows(rows, settings, cache, str(source), start + 1, config.max_answer_chars,
                                   endpoint_problem=lambda: server_problem(base_url))
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


def usage_table_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per shard summary plus a total: rows, answered, cached, failed, requests, retries, tokens, cost,
    and ``maybe_billed`` (timed-out attempts the server may have billed; not in the cost)."""
    table = []
    for s in summaries:
        usage = s.get("usage", {})
        table.append({
            "shard": f"{s.get('split', '?')}[{s.get('start', '?')}:{s.get('stop', '?')}]",
            "rows": s.get("rows", 0), "answered": s.get("answered", 0), "cached": usage.get("cached", 0),
            "failed": s.get("failed", 0), "requests": usage.get("requests", 0), "retries": usage.get("retries", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
            "cost": usage.get("cost", 0.0), "maybe_billed": s.get("maybe_billed", maybe_billed(usage)),
        })
    if table:
        total: dict[str, Any] = {"shard": "total"}
        for name in table[0]:
            if name != "shard":
                total[name] = sum(row[name] for row in table)
        total["cost"] = round(total["cost"], 6)
        table.append(total)
    return table
