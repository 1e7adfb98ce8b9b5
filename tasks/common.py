"""Turn a stage's compute function into a cached Prefect task backed by the artifact store.

A stage's key is a hash of (stage name, code version, content hashes of its inputs, its config).
The code version covers the stage's module and every project module it imports, transitively
(:mod:`mner.codeversion`). The same key names the output directory in the artifact store; the
Prefect cache record's key adds the store's identity, so a new flow run with unchanged inputs
gets Cached for every stage of *its* store, while a change of code or config that shapes the
output gives a new key. A replayed record is checked against the store before it is used: one
whose files are missing, changed or outside the store is computed again, never returned.
``refresh`` recomputes even when the store holds the output, and publishes the new output in
its place atomically. Parameters are read as follows:

- a dict with ``stage``/``key``/``dir``/``files`` (an upstream :class:`StageOutput`) enters the
  key by the hashes of its files;
- ``sources`` (name -> path) enters the key by the sha256 of each file's content (a missing or
  unreadable file by the word "missing", so the stage itself reports it);
- ``artifacts_root`` (where the store lives), ``runtime`` (values of this run only, such as the
  URL of a local server on a random port) and ``recompute`` (the refresh flag) do not enter the key;
- everything else is configuration and enters the key as JSON.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

from prefect import Task, task
from prefect.exceptions import MissingContextError
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from mner.codeversion import code_version
from mner.store import ArtifactStore, sha256_file, sha256_json

_OUTPUT_KEYS = {"stage", "key", "dir", "files"}
_NOT_IN_KEY = {"artifacts_root", "runtime", "recompute"}


def _is_output(value: Any) -> bool:
    return isinstance(value, dict) and _OUTPUT_KEYS <= set(value)


def _content_hash(path: str | None) -> str:
    if not path:
        return ""
    try:
        return sha256_file(path)
    except OSError:
        return "missing"


def _canonical(value: Any) -> Any:
    """Config value with every nested stage output replaced by its content hash (paths drop out)."""
    if _is_output(value):
        return {"output": sha256_json(value["files"])}
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def key_parts(params: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Split task parameters into input content hashes and configuration (see module doc)."""
    inputs: dict[str, str] = {}
    config: dict[str, Any] = {}
    for name, value in sorted(params.items()):
        if name in _NOT_IN_KEY:
            continue
        if _is_output(value):
            inputs[name] = sha256_json(value["files"])
        elif name == "sources":
            for source, path in sorted((value or {}).items()):
                inputs[f"sources.{source}"] = _content_hash(path)
        else:
            config[name] = _canonical(value)
    return inputs, config


def read_prefect_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (for an API key named by ``api_key_secret``)."""
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get())


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a task or flow, a plain logger outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mner")


def stage_task(stage: str) -> Callable[[Callable[..., Any]], Task]:
    """Decorate ``compute(run, **params)`` into a cached Prefect task named ``stage``.

    ``compute`` writes its files into ``run.work_dir`` and may return extra manifest fields. The
    task returns the published output as a dict (paths plus content hashes, never data). Its
    code version covers ``compute``'s module and every project module that module imports.
    """

    def decorate(compute: Callable[..., Any]) -> Task:
        code = code_version([inspect.getmodule(compute)])  # type: ignore[list-item]
        signature = inspect.signature(compute)
        params = list(signature.parameters.values())[1:]
        if "artifacts_root" not in {p.name for p in params}:
            raise TypeError(f"{compute.__qualname__} needs an artifacts_root parameter")
        flag = inspect.Parameter("recompute", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)

        def body(*args: Any, **kwargs: Any) -> dict[str, Any]:
            bound = body.__signature__.bind(*args, **kwargs)  # type: ignore[attr-defined]
            bound.apply_defaults()
            kwargs = dict(bound.arguments)
            recompute = bool(kwargs.pop("recompute"))
            store = ArtifactStore(kwargs["artifacts_root"])
            inputs, config = key_parts(kwargs)
            key = store.key_for(stage, inputs, config, code)
            log = stage_logger()
            with store.lock(stage, key, lambda path: log.info("%s %s: waiting for the run that holds %s", stage, key, path)):
                done = None if recompute else store.load(stage, key)
                if done is not None:
                    return done.to_dict()
                run = store.begin(stage, inputs, config, code, fresh=recompute)
                extra = compute(run, **kwargs)
                return run.publish(extra).to_dict()

        def cache_key(_context: Any, parameters: dict[str, Any]) -> str:
            store = ArtifactStore(parameters["artifacts_root"])
            return f"mner-{stage}-{stage_key(stage_fn, parameters)}-{store.identity}"

        body.__signature__ = signature.replace(parameters=[*params, flag])  # type: ignore[attr-defined]
        body.__name__, body.__qualname__, body.__doc__ = compute.__name__, compute.__qualname__, compute.__doc__
        body.__module__ = compute.__module__
        stage_fn = task(
            name=stage,
            cache_key_fn=cache_key,
            persist_result=True,
            result_serializer="json",
            cache_result_in_memory=False,
        )(body)
        stage_fn.stage_name = stage  # type: ignore[attr-defined]
        stage_fn.code_version = code  # type: ignore[attr-defined]
        return stage_fn

    return decorate


def stage_key(stage_fn: Task, params: dict[str, Any]) -> str:
    """The store key a stage task computes for ``params`` (defaults filled in, as the task itself does)."""
    bound = stage_fn.fn.__signature__.bind(**params)  # type: ignore[attr-defined]
    bound.apply_defaults()
    inputs, config = key_parts(dict(bound.arguments))
    return ArtifactStore.key_for(stage_fn.stage_name, inputs, config, stage_fn.code_version)  # type: ignore[attr-defined]


def _prepared(stage_fn: Task, refresh: bool, params: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """The task and parameters for one call: a refresh (or an output this store lacks) bypasses Prefect's record."""
    store = ArtifactStore(params["artifacts_root"])
    if refresh or store.load(stage_fn.stage_name, stage_key(stage_fn, params)) is None:  # type: ignore[attr-defined]
        stage_fn = stage_fn.with_options(refresh_cache=True)
    return stage_fn, {**params, "recompute": refresh}


def checked(stage_fn: Task, result: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``result`` if this run's store holds exactly it; otherwise the stage is run again, bypassing Prefect's record.

    A replayed record can name files that are gone, changed since, or in another store: those are
    never returned.
    """
    store = ArtifactStore(params["artifacts_root"])
    if store.holds(result):
        return result
    stage_logger().warning("%s: the cached record names %s, which this store (%s) does not hold as recorded; "
                           "computing it again", stage_fn.stage_name, result.get("dir"), store.root)  # type: ignore[attr-defined]
    again = stage_fn.with_options(refresh_cache=True)(**params, recompute=False)
    if not store.holds(again):
        raise RuntimeError(f"{stage_fn.stage_name}: output {again.get('dir')} is not in the store {store.root}")  # type: ignore[attr-defined]
    return again


def run_stage(stage_fn: Task, refresh: bool = False, **params: Any) -> dict[str, Any]:
    """Call a stage task, recomputing when asked (``refresh``) or when its stored output is gone, corrupt or incomplete.

    Prefect alone would replay a cache record whose files were deleted; checking the store first
    turns that into a fresh run under the same key, and checking the result after turns a stale
    record into one as well.
    """
    task_fn, call = _prepared(stage_fn, refresh, params)
    return checked(stage_fn, task_fn(**call), params)


def submit_stage(stage_fn: Task, refresh: bool = False, **params: Any) -> PrefectFuture:
    """Like :func:`run_stage`, but submitted to the flow's task runner; returns the future.

    Pass the future's result through :func:`checked` before using it.
    """
    task_fn, call = _prepared(stage_fn, refresh, params)
    return task_fn.submit(**call)
