"""An async client for OpenAI-compatible chat endpoints: limits, retries, a per-sample cache, usage.

One :class:`LLMClient` sends chat completions to ``settings.base_url`` through the ``openai`` SDK
(with the SDK's own retries off, so every retry is ours and is counted). Requests run under a
concurrency limit and a sliding-window requests/tokens-per-minute limit; 429, 5xx, timeouts,
connection errors and malformed bodies are retried with exponential backoff and jitter.

Every answer is written to the cache as soon as it arrives: one JSON file per key
(``<cache_dir>/<key[:2]>/<key>.json``, written to a temporary file, fsynced, renamed), so a
killed run loses at most the requests in flight and a rerun asks only for the missing samples.
The key is the sha256 of (endpoint identity, model, messages hash, generation parameters), where
the identity is ``settings.endpoint`` (e.g. ``llama.cpp:<model file>`` for a local server, whose
port changes per run) or else the base URL; the API key never enters it, nor any file, log line or error this module produces.

Before every attempt the client checks that it may go on: when the process is stopping
(:func:`mner.processes.stop_requested`, set by Ctrl-C) or ``endpoint_problem()`` names a reason
(a local server that died), it raises :class:`EndpointGone` instead of retrying, which fails the
stage at once; the answers already cached are kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import openai

from engine.answer_cache import AnswerCache
from engine.llm_limits import RateLimiter, estimate_tokens
from mner import processes
from mner.config import LlmConfig
from mner.store import sha256_json

log = logging.getLogger("mner.llm")
T = TypeVar("T")
NO_KEY = "sk-no-key"  # sent when no key is configured (a local server ignores it)


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to ask. No defaults here: :meth:`from_config` takes every value from ``stage1.llm``."""

    base_url: str
    endpoint: str | None  # what the cache key names the server by (None: base_url)
    model: str
    api_key_env: str
    api_key_secret: str | None
    temperature: float
    max_tokens: int
    top_p: float
    seed: int | None
    concurrency: int
    rpm: int
    tpm: int
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    price_prompt_per_1k: float
    price_completion_per_1k: float

    @classmethod
    def from_config(cls, llm: LlmConfig, base_url: str, endpoint: str | None) -> "LLMSettings":
        """Settings from the ``stage1.llm`` section; ``base_url`` is where requests go this run."""
        return cls(base_url, endpoint, **{f.name: getattr(llm, f.name) for f in fields(cls)[2:]})

    @property
    def identity(self) -> str:
        """The endpoint's stable name: ``endpoint`` when given (a local server's URL changes per run), else the URL."""
        return (self.endpoint or self.base_url).rstrip("/")

    def generation(self) -> dict[str, Any]:
        """The generation parameters that shape an answer (and enter the cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p, "seed": self.seed}


@dataclass
class Usage:
    """Counters for one client: HTTP attempts, retries, cache hits, tokens, failures by kind."""

    requests: int = 0
    succeeded: int = 0
    retries: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self, settings: LLMSettings) -> dict[str, Any]:
        """JSON form with ``cost``: the new (non-cached) tokens at the configured per-1k prices."""
        cost = (self.prompt_tokens * settings.price_prompt_per_1k + self.completion_tokens * settings.price_completion_per_1k) / 1000
        return {**asdict(self), "cost": round(cost, 6)}


@dataclass
class Completion:
    """One sample's outcome: the answer text (or ``None``) and where it came from."""

    key: str
    content: str | None
    usage: dict[str, int]
    cached: bool
    attempts: int = 0
    error: str | None = None
    finish_reason: str | None = None


class RetryableError(Exception):
    """A failure worth another attempt (rate limit, server error, timeout, malformed body)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class FatalError(Exception):
    """A failure that another attempt would repeat (bad request, authentication, not found)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


SecretReader = Callable[[str], str]


def resolve_api_key(env_name: str | None, secret_name: str | None, read_secret: SecretReader | None = None) -> str | None:
    """The API key: the secret ``secret_name`` read by ``read_secret`` when named, else the environment variable.

    The engine knows no secret store; the Prefect stages pass a reader of Prefect Secret blocks.
    """
    if secret_name:
        if read_secret is None:
            raise ValueError(f"api_key_secret {secret_name!r} is set, but nothing here can read secrets: run it "
                             "as a Prefect stage (which reads Secret blocks), or set api_key_env instead")
        return read_secret(secret_name)
    return os.environ.get(env_name or "") or None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def cache_key(settings: LLMSettings, messages: Sequence[dict[str, Any]]) -> str:
    """sha256 of (endpoint identity, model, messages hash, generation parameters): never the API key."""
    return sha256_json({
        "endpoint": settings.identity,
        "model": settings.model,
        "messages": sha256_json(list(messages)),
        "generation": settings.generation(),
    })


def cache_record(settings: LLMSettings, key: str, content: str, usage: dict[str, int], finish: str | None) -> dict[str, Any]:
    """What the answer cache stores for one answer: the answer, its usage, and what asked for it."""
    return {
        "key": key, "content": content, "usage": usage, "finish_reason": finish,
        "model": settings.model, "endpoint": settings.identity, "generation": settings.generation(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_body(text: str) -> tuple[str, dict[str, int], str | None]:
    """(content, usage, finish_reason) of a chat-completion body; ``RetryableError`` when malformed."""
    try:
        body = json.loads(text)
        choice = body["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise RetryableError("malformed", f"malformed response body ({type(err).__name__})") from None
    if not isinstance(content, str):
        raise RetryableError("malformed", "malformed response body (content is not text)")
    raw_usage = body.get("usage") or {}
    usage = {name: int(raw_usage.get(name) or 0) for name in ("prompt_tokens", "completion_tokens")}
    return content, usage, choice.get("finish_reason")


def _classify(err: BaseException) -> RetryableError | FatalError:
    """Map an SDK or transport exception onto a retryable or fatal error (message without secrets)."""
    if isinstance(err, (RetryableError, FatalError)):
        return err
    if isinstance(err, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)):
        return RetryableError("timeout", "request timed out")
    if isinstance(err, openai.APIConnectionError):
        return RetryableError("connection", "connection error")
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        if status in (408, 409, 429) or status >= 500:
            header = err.response.headers.get("retry-after")
            try:
                retry_after = float(header) if header is not None else None
            except ValueError:
                retry_after = None
            return RetryableError(str(status), f"HTTP {status}", retry_after)
        return FatalError(str(status), f"HTTP {status}: {type(err).__name__}: {err.message}")
    if isinstance(err, openai.APIResponseValidationError):
        return RetryableError("malformed", "malformed response body")
    return FatalError(type(err).__name__, f"{type(err).__name__}: {err}")


class EndpointGone(RuntimeError):
    """The endpoint cannot answer any more (its local server died or was stopped) or the run is stopping."""


class LLMClient:
    """Chat completions with a concurrency limit, rate limits, retries, a cache and usage counters.

    Use as ``async with LLMClient(settings, cache_dir) as client: await client.complete_many(...)``.
    The key comes from ``api_key`` or else :func:`resolve_api_key` (environment variable only); a named
    secret is resolved before the event loop starts (as :func:`complete_all` does). ``endpoint_problem()``,
    when given, says why the endpoint cannot answer any more (None while it can).
    """

    def __init__(
        self, settings: LLMSettings, cache_dir: str | Path, api_key: str | None = None, rng: random.Random | None = None,
        endpoint_problem: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self._endpoint_problem = endpoint_problem
        self.cache = AnswerCache(cache_dir)
        self.usage = Usage()
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        self._limiter = RateLimiter(settings.rpm, settings.tpm)
        self._inflight: dict[str, asyncio.Future[Completion]] = {}
        self._api_key = api_key or resolve_api_key(settings.api_key_env, settings.api_key_secret)
        if not self._api_key:
            log.info("no API key in %s; sending a placeholder (fine for a local server)", settings.api_key_env)
        self._sdk = openai.AsyncOpenAI(
            api_key=self._api_key or NO_KEY, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s,
        )

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._sdk.close()

    async def complete(self, messages: Sequence[dict[str, Any]]) -> Completion:
        """The answer to one prompt: from the cache, from an identical request in flight, or asked."""
        key = cache_key(self.settings, messages)
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.cached += 1
            return Completion(key, hit["content"], hit.get("usage", {}), True, 0, None, hit.get("finish_reason"))
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._ask(key, messages)
            future.set_result(result)
            return result
        except BaseException as err:
            if isinstance(err, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(err)
                future.exception()  # mark retrieved: a waiter may not exist
            raise
        finally:
            del self._inflight[key]

    async def complete_many(
        self, prompts: Sequence[Sequence[dict[str, Any]]], on_done: Callable[[int, Completion], None] | None = None,
    ) -> list[Completion]:
        """Answers to many prompts, in order; ``on_done(index, completion)`` as each one finishes."""

        async def one(index: int, messages: Sequence[dict[str, Any]]) -> Completion:
            result = await self.complete(messages)
            if on_done:
                on_done(index, result)
            return result

        return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(prompts))))

    async def _ask(self, key: str, messages: Sequence[dict[str, Any]]) -> Completion:
        settings = self.settings
        tokens = estimate_tokens(messages, settings.max_tokens)
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self._semaphore:
                    self._raise_if_gone()
                    await self._limiter.acquire(tokens)
                    self.usage.requests += 1
                    content, usage, finish = await asyncio.wait_for(self._request(messages), settings.timeout_s)
            except EndpointGone:
                raise
            except Exception as raw:  # noqa: BLE001 - every failure is classified below
                err = _classify(raw)
                self.usage.errors[err.kind] = self.usage.errors.get(err.kind, 0) + 1
                reason = redact(str(err), self._api_key)
                if isinstance(err, FatalError) or attempts > settings.max_retries:
                    self.usage.failed += 1
                    if isinstance(err, RetryableError):
                        reason = f"{reason} (gave up after {attempts} attempts)"
                    log.warning("LLM request %s failed: %s", key[:12], reason)
                    return Completion(key, None, {}, False, attempts, reason)
                self._raise_if_gone()
                self.usage.retries += 1
                delay = self._backoff(attempts, err.retry_after)
                log.debug("LLM request %s: %s; retry %d in %.2fs", key[:12], reason, attempts, delay)
                await asyncio.sleep(delay)
                continue
            self.usage.succeeded += 1
            self.usage.prompt_tokens += usage["prompt_tokens"]
            self.usage.completion_tokens += usage["completion_tokens"]
            self.cache.put(key, cache_record(settings, key, content, usage, finish))
            return Completion(key, content, usage, False, attempts, None, finish)

    def _raise_if_gone(self) -> None:
        """Raise :class:`EndpointGone` when the run is stopping or the endpoint can no longer answer."""
        if processes.stop_requested():
            raise EndpointGone("the run is stopping (interrupted); answers so far are cached")
        problem = self._endpoint_problem() if self._endpoint_problem else None
        if problem:
            raise EndpointGone(problem)

    async def _request(self, messages: Sequence[dict[str, Any]]) -> tuple[str, dict[str, int], str | None]:
        settings = self.settings
        extra: dict[str, Any] = {} if settings.seed is None else {"seed": settings.seed}
        raw = await self._sdk.chat.completions.with_raw_response.create(
            model=settings.model, messages=list(messages), temperature=settings.temperature,  # type: ignore[arg-type]
            max_tokens=settings.max_tokens, top_p=settings.top_p, **extra,
        )
        return parse_body(raw.http_response.text)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is honoured up to the cap."""
        cap = self.settings.backoff_max_s
        delay = min(cap, self.settings.backoff_base_s * 2 ** (attempt - 1))
        delay = self._rng.uniform(delay / 2, delay)
        return min(cap, max(delay, retry_after or 0.0))


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, in a fresh thread when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def complete_all(
    settings: LLMSettings, cache_dir: str | Path, prompts: Sequence[Sequence[dict[str, Any]]],
    on_done: Callable[[int, Completion], None] | None = None, endpoint_problem: Callable[[], str | None] | None = None,
    read_secret: SecretReader | None = None,
) -> tuple[list[Completion], dict[str, Any]]:
    """Answers to ``prompts`` (in order) and the usage dict (with cost), from synchronous code.

    ``read_secret`` reads ``settings.api_key_secret`` when it is set. Raises :class:`EndpointGone` when
    ``endpoint_problem()`` names a reason or the run is stopping.
    """
    api_key = resolve_api_key(settings.api_key_env, settings.api_key_secret, read_secret)

    async def go() -> tuple[list[Completion], dict[str, Any]]:
        async with LLMClient(settings, cache_dir, api_key, endpoint_problem=endpoint_problem) as client:
            results = await client.complete_many(prompts, on_done)
            return results, client.usage.to_dict(settings)

    return run_sync(go)
