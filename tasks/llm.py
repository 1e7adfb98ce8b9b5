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

from engine.answer_cache import default_cache_dir
from engine.answers import answer_rows
from engine.llm_client import LLMSettings
from engine.llm_server import server_problem
from engine.generation_process import generation_process
from mner.config import LlmConfig
from mner.samples import read_jsonl, write_jsonl
from mner.store import StageRun
from tasks.common import read_prefect_secret, stage_logger, stage_task

NOT_SHARD_SETTINGS = frozenset({"base_url", "local_model", "n_parallel", "n_ctx", "shard_size", "max_missing"})


def shard_settings(llm: LlmConfig) -> dict[str, Any]:
    """The ``llm`` argument of :func:`llm_shard`: the ``stage1.llm`` section as JSON, less what is not the shard's.

    Left out: ``base_url`` and ``local_model`` (the key names the answering model by ``endpoint``: a
    local server's URL changes every run, a model's path may move; the transformers backend gets the
    path in ``runtime``), ``n_parallel`` and ``n_ctx`` (they start the local server),
    ``shard_size`` (the shard's bounds say it) and ``max_missing`` (the merge's).
    """
    return llm.model_dump(mode="json", exclude=set(NOT_SHARD_SETTINGS))


@stage_task("llm-shard")
def llm_shard(
    run: StageRun, prompts: dict[str, Any], split: str, start: int, stop: int, endpoint: str, llm: dict[str, Any],
    artifacts_root: str, runtime: dict[str, Any] | None = None, cache_dir: str | None = None,
) -> dict[str, Any]:
    """Ask the LLM for rows ``[start:stop]`` of ``{split}.jsonl`` of ``prompts``; write ``results.jsonl``.

    ``llm`` is :func:`shard_settings` of the config (backend, model, generation, limits, retries,
    prices, answer length): all of it enters the stage key. ``endpoint`` names the answering model
    in the keys (a URL, ``llama.cpp:<file>:<size>`` for a local server, ``transformers:<file>:<size>:<precision>``
    in process: see :func:`engine.llm_server.endpoint_identity`); ``runtime["base_url"]`` is where
    requests go this run (default: ``endpoint``), ``runtime["local_model"]`` the model the
    transformers backend loads (default SmolLM2; once per process). The runtime dict must not shape
    the output: the stage key leaves it out. A local server at that URL that dies fails the shard at
    once, naming the server and its log.
    """
    logger = stage_logger()
    missing = set(LlmConfig.model_fields) - NOT_SHARD_SETTINGS - set(llm)
    if missing:  # a value left to LlmConfig's default here would be missing from the stage key
        raise ValueError(f"llm: settings {sorted(missing)} not given; pass shard_settings(config.stage1.llm)")
    # shard_size is left out of the key (the bounds say it); the batch check against it was the config's, at load time
    config = LlmConfig.model_validate({**llm, "shard_size": max(stop - start, llm.get("batch_size", 1))})
    local = config.backend == "transformers"
    base_url = (runtime or {}).get("base_url") or endpoint
    if not local and not str(base_url).startswith(("http://", "https://")):
        raise ValueError(f"llm: no base URL to send requests to (endpoint {endpoint!r}, runtime {runtime!r})")
    source = Path(prompts["dir"]) / f"{split}.jsonl"
    rows = read_jsonl(source)[start:stop]
    generator = generation_process((runtime or {}).get("local_model"), config.precision) if local else None
    settings = LLMSettings.from_config(config, base_url, endpoint)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(artifacts_root)
    results, summary = answer_rows(rows, settings, cache, str(source), start + 1, config.max_answer_chars,
                                   endpoint_problem=lambda: server_problem(base_url), read_secret=read_prefect_secret,
                                   generator=generator, batch_size=config.batch_size)
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
