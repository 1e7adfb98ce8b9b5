"""LLM answers: checking prompt rows, asking for them, cleaning answers, usage tables."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from engine.llm_client import Completion, LLMSettings, SecretReader, complete_all
from engine.local_generate import BatchGenerator, complete_local

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
    endpoint_problem: Callable[[], str | None] | None = None, read_secret: SecretReader | None = None,
    generator: BatchGenerator | None = None, batch_size: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer prompt rows; (result rows in input order, summary). ``source`` and ``first_line`` name bad rows.

    With a ``generator`` the answers are generated on this machine, ``batch_size`` prompts at a time;
    else they are asked of ``settings.base_url``: ``endpoint_problem`` (see
    :class:`engine.llm_client.LLMClient`) makes a dead endpoint raise at once, ``read_secret`` reads a
    named API-key secret.
    """
    problems = {i: check_prompt_row(row) for i, row in enumerate(rows)}
    sendable = [i for i, problem in problems.items() if problem is None]
    prompts = [rows[i]["messages"] for i in sendable]
    started = time.time()
    if generator is not None:
        completions, usage = complete_local(settings, cache_dir, prompts, generator, batch_size, on_done)
    else:
        completions, usage = complete_all(settings, cache_dir, prompts, on_done, endpoint_problem, read_secret)
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
