"""Where a secret could leak during a test run, and a scan of each place.

The places: files under given roots (artifact store, llama.cpp server logs, ...), the Prefect
home and its result storage, the Prefect server's database file, and the run logs the Prefect
server holds (read through its API, ``POST /api/logs/filter``, after the client's log queue is
flushed). Used by the key-leak tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterable


def files_holding(secret: str, roots: Iterable[str | Path]) -> list[str]:
    """Every file under ``roots`` (a root may itself be a file; a missing root is skipped) whose bytes hold ``secret``."""
    needle = secret.encode()
    found = []
    for root in roots:
        root = Path(root)
        paths = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
        for path in paths:
            try:
                if path.is_file() and needle in path.read_bytes():
                    found.append(str(path))
            except OSError:  # a file removed while we scan (e.g. a SQLite journal)
                continue
    return list(dict.fromkeys(found))  # roots may nest (result storage inside the Prefect home)


def prefect_places() -> list[Path]:
    """Where the current Prefect settings keep state: the Prefect home, the local result storage,
    and the directory of the server's SQLite database (the test harness keeps it outside the home)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    places = [Path(settings.home), Path(settings.results.local_storage_path)]
    url = str(settings.server.database.connection_url.get_secret_value()
              if hasattr(settings.server.database.connection_url, "get_secret_value")
              else settings.server.database.connection_url or "")
    if url.startswith("sqlite") and ":///" in url:
        places.append(Path(url.split(":///", 1)[1]).parent)
    return places


def server_log_messages() -> list[str]:
    """Every run log message the current Prefect server holds, read through its API (``POST /api/logs/filter``).

    Logs still queued in this process are sent first, so what a run just logged is included.
    """
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    async def read() -> list[str]:
        await APILogHandler.aflush()
        messages: list[str] = []
        async with get_client() as client:
            while True:
                page = await client.read_logs(limit=200, offset=len(messages))
                messages.extend(log.message for log in page)
                if len(page) < 200:
                    return messages

    return asyncio.run(read())


def secret_leaks(secret: str, roots: Iterable[str | Path], prefect: bool = True) -> list[str]:
    """Every place among ``roots`` (and, with ``prefect``, the Prefect home, result storage, database and
    server-held run logs) that holds ``secret``; an empty list when it leaked nowhere."""
    found = files_holding(secret, [*roots, *(prefect_places() if prefect else [])])
    if prefect:
        found += [f"prefect server log: {m[:200]!r}" for m in server_log_messages() if secret in m]
    return found
