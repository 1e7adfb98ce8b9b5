"""Screenshot the Prefect UI page of a finished run's report artifact (headless Debian chromium).

    python scripts/ui_screenshot.py --out docs/prefect-report-artifact.png

Starts a local Prefect server in a temporary PREFECT_HOME (or uses --api-url), runs the pipeline on
the demo sample with a short training budget (skip with --no-run when the server already holds a
run), finds the newest artifact with the report key, waits until the page has loaded its figures,
and saves a PNG of the page down to the list of files (--cut-at): below it the report names this
machine's paths (the artifact store, the config's data files), which a picture kept in git must not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mner.headless_chromium import open_page  # noqa: E402
from mner.server import free_port, server_env, start_server, stop_server  # noqa: E402

FIGURE = "](data:image/png;base64,"  # how a figure sits in the markdown


def newest_artifact(api_url: str, key: str) -> dict:
    """The newest artifact with ``key`` (no flow/task-run filters: even empty ones hide flow-level artifacts)."""
    body = json.dumps({"artifacts": {"key": {"any_": [key]}}, "sort": "UPDATED_DESC", "limit": 1, "offset": 0}).encode()
    request = urllib.request.Request(f"{api_url}/artifacts/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.loads(response.read())
    if not found:
        raise SystemExit(f"no artifact with key {key!r} at {api_url}")
    return found[0]


def screenshot(url: str, out: Path, width: int, height: int, figures: int, cut_at: str) -> None:
    """Open ``url`` in headless chromium, wait for its ``figures`` PNG images, save the page above ``cut_at`` as a PNG."""
    with open_page(url, width, height) as page:
        loaded = page.png_images(figures)
        if len(loaded) < figures or not all(image["opaque"] == 1 for image in loaded):
            raise SystemExit(f"{url}: {figures} figure(s) expected, the page loaded {loaded}")
        top = page.top_of_text(cut_at) if cut_at else None
        if cut_at and top is None:
            raise SystemExit(f"{url}: no text {cut_at!r} to cut the picture at (--cut-at '' keeps the whole window)")
        page.screenshot(out, None if top is None else min(top - 8, height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "prefect-report-artifact.png")
    parser.add_argument("--api-url", help="an already running server; default: start one")
    parser.add_argument("--no-run", action="store_true", help="do not run the pipeline first")
    parser.add_argument("--key", default="twitter2015-sample-report")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1400)
    parser.add_argument("--cut-at", default="Files in the artifact store",
                        help="cut the picture above the first text starting so ('' keeps the whole window)")
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
        artifact = newest_artifact(api_url, args.key)
        url = f"{api_url.removesuffix('/api')}/artifacts/artifact/{artifact['id']}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(url, args.out, args.width, args.height, str(artifact["data"]).count(FIGURE), args.cut_at)
        print(f"saved {args.out} ({url})")
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    main()
