"""``prefect deployment run 'mner-tag/default'`` against a served pipeline: the files and the UI artifacts it makes.

A real ``prefect server start`` on a free loopback port with a temporary PREFECT_HOME, ``mner serve
--no-server`` registering the deployments, and the stock Prefect CLI: one run of ``mner-pipeline/train``
trains a tiny text-only tagger, one run of ``mner-tag/default`` tags 20 posts with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mner.server import free_port, server_env, start_server, stop_server
from tests.conftest import PROJECT
from tests.tag_models import read_rows, sample_posts, tiny_training, write_posts

pytestmark = pytest.mark.slow


def _prefect(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=PROJECT)


def _run(env: dict[str, str], name: str, params: dict) -> str:
    """``prefect deployment run NAME --params JSON --watch``; the flow run's id."""
    done = _prefect(env, "deployment", "run", name, "--params", json.dumps(params), "--watch", "--watch-interval", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line.split("UUID:")[1].strip() for line in done.stdout.splitlines() if "UUID:" in line)


def _artifacts(api_url: str, keys: list[str]) -> dict[str, dict]:
    """The newest artifact of each key, with its data."""
    response = httpx.post(f"{api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": keys}}, "limit": 50,
                                                                "sort": "CREATED_DESC"}, timeout=30)
    response.raise_for_status()
    newest: dict[str, dict] = {}
    for artifact in response.json():
        newest.setdefault(artifact["key"], artifact)
    return newest


def test_a_deployment_run_of_mner_tag_writes_the_files_and_the_ui_artifacts(tmp_path: Path) -> None:
    home, port = tmp_path / "prefect-home", free_port()
    home.mkdir()
    server = start_server(home, port)
    env = {**server_env(home, port), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with open(home / "serve.log", "wb") as log:
        serving = subprocess.Popen([str(Path(sys.executable).with_name("mner")), "serve", "--no-server"], cwd=PROJECT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _prefect(env, "deployment", "inspect", "mner-tag/default", timeout=60).returncode != 0:
            assert time.monotonic() < deadline, "deployment mner-tag/default did not appear"
            time.sleep(2)
        root = tmp_path / "store"
        _run(env, "mner-pipeline/train", {"overrides": {**tiny_training(tmp_path / "data", root), "variants": ["text"]}})
        posts = write_posts(tmp_path / "in", sample_posts(20))["posts.jsonl"]
        _run(env, "mner-tag/default", {"input": str(posts), "model": "twitter2015-sample/text", "conll": True,
                                       "output": str(tmp_path / "out"), "overrides": {"artifacts_root": str(root)}})

        tagged = read_rows(tmp_path / "out" / "tagged.jsonl")
        assert [row["id"] for row in tagged] == [f"p{i}" for i in range(20)]
        assert (tmp_path / "out" / "tagged.conll").read_text(encoding="utf-8").count("IMGID:") == 20
        found = _artifacts(env["PREFECT_API_URL"], ["mner-tag-summary", "mner-tag-posts"])
        assert set(found) == {"mner-tag-summary", "mner-tag-posts"}, found
        rows = json.loads(found["mner-tag-summary"]["data"])
        by_what = {(r["what"], r["name"]): r["value"] for r in rows}
        assert by_what[("posts", "tagged")] == 20 and by_what[("posts per second", "this run")] > 0
        types = {name: value for (what, name), value in by_what.items() if what == "entities by type"}
        assert sum(types.values()) == sum(len(row["entities"]) for row in tagged) > 0
        assert any(what == "most frequent entities" for what, _ in by_what)
        markdown = found["mner-tag-posts"]["data"]
        assert markdown.count("\n| p") == 10 and "**" in markdown
    finally:
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(30)
        stop_server(server)
