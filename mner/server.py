"""Start and stop a local Prefect server as a child process (SQLite in PREFECT_HOME by default).

No Prefect import: the server is the ``prefect server start`` command (or, for one ``mner run``,
the API alone under uvicorn, as Prefect's own temporary server), checked over HTTP. It is started
with :func:`mner.processes.spawn`, so it dies with the process that started it. A
PostgreSQL database is used instead when PREFECT_API_DATABASE_CONNECTION_URL is set
(``postgresql+asyncpg://user:password@host:5432/prefect``).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mner import processes


def prefect_defaults(home: str | Path | None = None) -> None:
    """Embedded defaults for a local run: Prefect state in ``home`` (default: the project's .prefect), no analytics.

    Values already in the environment win.
    """
    from mner import PROJECT_ROOT

    os.environ.setdefault("PREFECT_HOME", str(home or PROJECT_ROOT / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a first start migrates a fresh SQLite database: on 2 busy cores that can pass Prefect's 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_env(home: str | Path, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server and its clients: this PREFECT_HOME, this API URL, no analytics."""
    env = dict(os.environ if base is None else base)
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")
    return env


_STARTING: dict[int, tuple[int, Path, int]] = {}  # server pid -> (locked descriptor, log file, its size at start)


def _log_errors(log_file: Path | None, since: int = 0, most: int = 12) -> str:
    """The error lines ``log_file`` gained after byte ``since``, as a message suffix ('' when there are none)."""
    if log_file is None or not log_file.exists():
        return ""
    with open(log_file, "rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    errors = [line for line in lines if "ERROR" in line or "Error:" in line or "Exception:" in line][:most]
    return f"; from its log {log_file}:\n" + "\n".join(errors) if errors else f"; see its log {log_file}"


def wait_healthy(api_url: str, timeout: float = 120.0, process: subprocess.Popen | None = None,
                 log_file: Path | None = None, log_start: int = 0) -> None:
    """Block until ``<api_url>/health`` answers; raise if ``process`` exits or time runs out.

    A server that exits is reported with the error lines its ``log_file`` gained after ``log_start``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {process.returncode} before it was ready"
                               + _log_errors(log_file, log_start))
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no Prefect server answered at {api_url} within {timeout:.0f} s")


def start_server(home: str | Path, port: int, log_file: str | Path | None = None,
                 api_only: bool = False, wait: bool = True) -> subprocess.Popen:
    """Start a Prefect server on 127.0.0.1:``port`` as a child of this process and wait until it is healthy.

    ``api_only`` runs the API without the UI and the CLI wrapper (what Prefect's own temporary
    server runs; quicker to start): enough for one ``mner run``. With ``wait=False`` the caller
    does other work while the server starts, then calls :func:`wait_until_serving` itself.

    Servers on one ``home`` start one at a time (a lock file there, held until this one is healthy):
    two first starts on a fresh database both register Prefect's block types, and one of them
    fails on the unique slug.
    """
    Path(home).mkdir(parents=True, exist_ok=True)
    lock = os.open(Path(home) / ".server-start.lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = server_env(home, port)
    if api_only:
        command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
        env.update(PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1")
    else:
        prefect = Path(sys.executable).with_name("prefect")
        command = [str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", "127.0.0.1",
                   "--port", str(port)]
    log_path = Path(log_file or Path(home) / "server.log")
    log_start = log_path.stat().st_size if log_path.exists() else 0
    try:
        with open(log_path, "ab") as log:
            process = processes.spawn(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except BaseException:
        os.close(lock)
        raise
    _STARTING[process.pid] = (lock, log_path, log_start)
    if wait:
        wait_until_serving(process, port)
    return process


def wait_until_serving(process: subprocess.Popen, port: int) -> None:
    """Block until the server ``process`` started on ``port`` is healthy; stop it and raise if it never is.

    Either way the start lock of its PREFECT_HOME is released, so the next server there may start.
    """
    lock, log_file, log_start = _STARTING.pop(process.pid, (None, None, 0))
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api", process=process, log_file=log_file, log_start=log_start)
    except BaseException:
        stop_server(process)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def stop_server(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop the server by its PID (its whole process group): SIGTERM, then SIGKILL after ``timeout``."""
    processes.stop(process, grace_s=timeout)
