"""Helpers the ``mner`` commands share: the store a command reads, ``--set`` overrides, a temporary Prefect server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import List, Optional

import typer


def store_root(root: Optional[Path]) -> Path:
    """``root``, or the store ``mner run`` writes to with the default config."""
    from mner.config import default_artifacts_root

    return root if root is not None else default_artifacts_root()


def temporary_server() -> "tuple[subprocess.Popen, int]":
    """Start Prefect's API on a free port as a child of this process and point this process at it.

    Returns (the server process, its port) without waiting for it: the caller imports the flows
    meanwhile, then waits with :func:`mner.server.wait_until_serving`. Prefect is pointed at the
    server before anything imports it. The server stops at exit, after Prefect has sent its last
    logs and states (Prefect drains its queues in threading's exit hooks, which run before ``atexit``'s).
    """
    import atexit

    from mner.server import free_port, server_env, start_server, stop_server

    home, port = os.environ["PREFECT_HOME"], free_port()
    server = start_server(home, port, Path(home) / "run-server.log", api_only=True, wait=False)
    atexit.register(stop_server, server, 3.0)
    os.environ.update({k: v for k, v in server_env(home, port).items() if k.startswith("PREFECT_")})
    return server, port


def checked_overrides(config: Optional[Path], set_: List[str]) -> dict:
    """``--set KEY=VALUE`` items as overrides, validated with the config before any work (exit 2 naming the field)."""
    import yaml

    from mner.config import load_config
    from mner.store import check_writable_root

    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            typer.echo(f"--set {item!r}: expected KEY=VALUE", err=True)
            raise typer.Exit(2)
        overrides[key] = yaml.safe_load(value)
    try:
        check_writable_root(load_config(config, overrides).artifacts_root)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return overrides
