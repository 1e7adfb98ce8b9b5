"""Screenshot the Prefect UI page of a finished run's report artifact (headless Debian chromium).

    python scripts/ui_screenshot.py --out docs/prefect-report-artifact.png

Starts a local Prefect server in a temporary PREFECT_HOME (or uses --api-url), runs the pipeline on
the demo sample with a short training budget (skip with --no-run when the server already holds a
run), finds the newest artifact with the report key, and saves a PNG of its page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mner.server import free_port, server_env, start_server, stop_server  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def newest_artifact_id(api_url: str, key: str) -> str:
    """Id of the newest artifact with ``key`` (no flow/task-run filters: even empty ones hide flow-level artifacts)."""
    body = json.dumps({"artifacts": {"key": {"any_": [key]}}, "sort": "UPDATED_DESC", "limit": 1, "offset": 0}).encode()
    request = urllib.request.Request(f"{api_url}/artifacts/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.loads(response.read())
    if not found:
        raise SystemExit(f"no artifact with key {key!r} at {api_url}")
    return found[0]["id"]


def screenshot(url: str, out: Path, width: int, height: int, wait_ms: int) -> None:
    """Render ``url`` in headless chromium and save a PNG."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--virtual-time-budget={wait_ms}", f"--screenshot={out.resolve()}", url],
                       check=True, capture_output=True, timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "prefect-report-artifact.png")
    parser.add_argument("--api-url", help="an already running server; default: start one")
    parser.add_argument("--no-run", action="store_true", help="do not run the pipeline first")
    parser.add_argument("--key", default="twitter2015-sample-report")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time the page gets to load")
    args = parser.parse_args()

    server, home = None, tempfile.mkdtemp(prefix="mner-ui-")
    api_url = args.api_url
    if api_url is None:
        port = free_port()
        server = start_server(home, port)
        api_url = f"http://127.0.0.1:{port}/api"
        os.environ.update(server_env(home, port))
    try:
        if not args.no_run:
            artifacts = Path(home) / "artifacts"
            subprocess.run([sys.executable, "-m", "cli.main", "run", "--set", f"artifacts_root={artifacts}",
                            "--set", "train.epochs=2"], check=True, cwd=ROOT, env={**os.environ, "PREFECT_API_URL": api_url})
            time.sleep(2)
        artifact_id = newest_artifact_id(api_url, args.key)
        ui = api_url.removesuffix("/api")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(f"{ui}/artifacts/artifact/{artifact_id}", args.out, args.width, args.height, args.wait_ms)
        print(f"saved {args.out} ({ui}/artifacts/artifact/{artifact_id})")
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    main()
