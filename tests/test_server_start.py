"""Local Prefect servers on one PREFECT_HOME: first starts at once, and a server that dies while starting.

Two ``mner run`` on a fresh home each start a temporary server. Both first starts register
Prefect's block types in the one SQLite database, and without the start lock one of them failed
on the unique slug (uvicorn exit 3), as it did in CI. These tests start real servers.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mner.server import free_port, start_server, wait_until_serving
from tests.conftest import PROJECT

_START_ONE = textwrap.dedent("""
    import sys
    from mner.server import free_port, start_server, stop_server
    home = sys.argv[1]
    server = start_server(home, free_port(), f"{home}/server-{sys.argv[2]}.log", api_only=True)
    print("healthy")
    stop_server(server, 3.0)
""")


def test_two_first_starts_on_one_fresh_home_both_serve(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    prefect = str(Path(sys.executable).with_name("prefect"))
    upgrade = subprocess.run([prefect, "server", "database", "upgrade", "-y"], env={**os.environ, "PREFECT_HOME": str(home)},
                             capture_output=True, text=True, timeout=600, check=False)
    assert upgrade.returncode == 0, upgrade.stderr  # tables exist, block types not yet registered: the racy state
    starts = [subprocess.Popen([sys.executable, "-c", _START_ONE, str(home), str(i)], cwd=PROJECT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [start.communicate(timeout=600) for start in starts]
    for start, (out, err) in zip(starts, outputs):
        assert start.returncode == 0 and out.strip() == "healthy", err[-3000:]


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    home, port = tmp_path / "prefect-home", free_port()
    with socket.socket() as taken:  # the port is held, so uvicorn cannot bind it and exits
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = start_server(home, port, home / "run-server.log", api_only=True, wait=False)
        with pytest.raises(RuntimeError, match="exited with code") as failure:
            wait_until_serving(server, port)
    message = str(failure.value)
    assert str(home / "run-server.log") in message and "address already in use" in message.lower(), message
    lock = os.open(home / ".server-start.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the failure: the next server may start
    finally:
        os.close(lock)
