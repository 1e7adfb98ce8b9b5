"""End to end through deployments: a real ``prefect server start``, ``mner serve``, ``prefect deployment run``.

The server runs on a free loopback port with a temporary PREFECT_HOME and is stopped by its PID; every
process of the server's and ``mner serve``'s trees, read from /proc while the runs worked and before the
stop (the flow runs' processes and what they started among them), must be gone after it.
Three runs of ``mner-pipeline/default``: the first computes and publishes the artifacts, the
second replays every stage as Cached, the third refreshes ``train`` and recomputes exactly train
and what reads from it (evaluate). One run of ``mner-tag/default`` tags 20 posts with the text-only
tagger the first run trained, and writes its files and UI artifacts. The report's and the tag run's
markdown artifacts are opened in the server's UI in headless Chromium: their figures must have loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mner.server import free_port, server_env, start_server, stop_server
from tests import process_tree
from tests.conftest import PROJECT, needs_installed, task_run_states
from tests.tag_models import read_rows, sample_posts, write_posts
from tests.tiny_sample import write_tiny_sample

pytestmark = pytest.mark.slow

STAGE_PREFIXES = ("load", "caption", "ocr", "knowledge", "train", "evaluate")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A Prefect server and a process serving the deployments; yields (env, api_url)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    server = start_server(home, port)
    env = {**server_env(home, port), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}  # picks up a run within 1 s, not 10
    log = open(home / "serve.log", "wb")
    serving = subprocess.Popen([str(Path(sys.executable).with_name("mner")), "serve", "--no-server"], cwd=PROJECT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    seen: dict[int, int] = {}  # every process of the two trees seen while the module's runs worked
    try:
        _wait_for_deployment(env, "mner-pipeline/default")
        with process_tree.watching(seen, server.pid, serving.pid):  # the flow runs' processes and their children
            yield env, env["PREFECT_API_URL"]
    finally:
        tree = {**seen, **process_tree.snapshot(server.pid, serving.pid)}  # before the stop: after it, PIDs are reaped
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(30)
        stop_server(server)
        left = process_tree.wait_gone(tree, 10)
        process_tree.kill_left(tree)
        assert len(tree) > 2 and left == {}, (left, tree)  # more than the two roots: the flow runs' processes


def _prefect(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    prefect = str(Path(sys.executable).with_name("prefect"))
    return subprocess.run([prefect, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT)


def _wait_for_deployment(env: dict[str, str], name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _prefect(env, "deployment", "inspect", name, timeout=60).returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"deployment {name} did not appear")


def _run_deployment(env: dict[str, str], params: dict, name: str = "mner-pipeline/default") -> str:
    """``prefect deployment run NAME --params JSON --watch``; returns the flow run id."""
    done = _prefect(env, "deployment", "run", name, "--params", json.dumps(params), "--watch", "--watch-interval", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    for line in done.stdout.splitlines():
        if "UUID:" in line:
            return line.split("UUID:")[1].strip()
    raise AssertionError(f"no flow run id in:\n{done.stdout}")


def _stage_states(api_url: str, flow_run_id: str) -> dict[str, str]:
    """Final state of every stage task of a flow run and its subflows, by task-run name."""
    deadline = time.monotonic() + 60
    while True:  # task-run states arrive through events: wait until all are final
        states = {n: s for n, s in task_run_states(flow_run_id, api_url).items() if n.startswith(STAGE_PREFIXES)}
        final = states and all(s in {"Completed", "Cached", "Failed"} for s in states.values())
        if final or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _artifact_keys(api_url: str) -> set[str]:
    """Keys of every artifact on the server (raw REST: an empty task-run filter would hide flow-level ones)."""
    import httpx

    response = httpx.post(f"{api_url}/artifacts/filter", json={"limit": 200, "offset": 0, "sort": "UPDATED_DESC",
                                                               "artifacts": {}}, timeout=30)
    response.raise_for_status()
    return {a["key"] for a in response.json() if a["key"]}


def _manifests(root: Path, stage: str) -> dict[str, dict]:
    """Manifest of every published output of ``stage`` under ``root``, by key."""
    found = {}
    for path in sorted((root / stage).glob("*/manifest.json")):
        found[path.parent.name] = json.loads(path.read_text())
    return found


def _run_logs(api_url: str, flow_run_id: str) -> list[str]:
    """Messages the server holds for a flow run (its tasks' logs included)."""
    import httpx

    deadline = time.monotonic() + 30
    while True:  # logs reach the server in batches
        response = httpx.post(f"{api_url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                               "limit": 200, "sort": "TIMESTAMP_ASC"}, timeout=30)
        response.raise_for_status()
        messages = [entry["message"] for entry in response.json()]
        if any('"epoch"' in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(1)


def _epochs_logged(messages: list[str]) -> list[int]:
    return [json.loads(m)["epoch"] for m in messages if m.startswith('{"epoch"')]


SMALL = {"train.epochs": 1, "model.max_length": 96}


@pytest.fixture(scope="module")
def populated(served, tmp_path_factory):
    """A first ``mner-pipeline/default`` run into a fresh artifact root; yields (params, root, stage states)."""
    env, api_url = served
    root = tmp_path_factory.mktemp("store") / "artifacts"
    tiny = write_tiny_sample(tmp_path_factory.mktemp("data"))
    params = {"overrides": {"artifacts_root": str(root), **SMALL, **tiny}}
    first = _stage_states(api_url, _run_deployment(env, params))
    return params, root, first


def test_deployment_runs_cache_and_refresh_one_stage(served, populated) -> None:
    env, api_url = served
    params, root, first = populated
    assert first and set(first.values()) == {"Completed"}, first
    assert {"twitter2015-sample-dataset-stats", "twitter2015-sample-per-type-f1", "twitter2015-sample-report",
            "caption-progress"} <= _artifact_keys(api_url)

    # the stock Prefect CLI against the server mner serve registered with (fastapi 0.151+ made these fail with 422)
    wide = {**env, "COLUMNS": "300"}  # names are not cut
    deployments, runs, artifacts = (_prefect(wide, *args, timeout=120) for args in
                                    (("deployment", "ls"), ("flow-run", "ls"), ("artifact", "ls")))
    assert all(r.returncode == 0 for r in (deployments, runs, artifacts)), [r.stderr for r in (deployments, runs, artifacts)]
    assert "mner-pipeline/default" in deployments.stdout and "mner-pipeline/train" in deployments.stdout, deployments.stdout
    assert "COMPLETED" in runs.stdout, runs.stdout
    assert "twitter2015-sample-report" in artifacts.stdout, artifacts.stdout

    second = _stage_states(api_url, _run_deployment(env, params))
    assert second and set(second.values()) == {"Cached"}, second
    assert len(second) == len(first)

    before = {stage: _manifests(root, stage) for stage in ("train", "evaluate", "knowledge")}
    weights_mtime = {key: (root / "train" / key / "model.pt").stat().st_mtime_ns for key in before["train"]}
    run_id = _run_deployment(env, {**params, "refresh": ["train"]})
    third = _stage_states(api_url, run_id)
    recomputed = {name.rsplit("-", 1)[0] for name, state in third.items() if state == "Completed"}
    cached = {name.rsplit("-", 1)[0] for name, state in third.items() if state == "Cached"}
    assert recomputed == {"train", "evaluate"}, third
    assert cached == {"load", "caption-shard", "caption", "ocr-shard", "ocr", "knowledge"}, third
    # really recomputed: same keys, new outputs (run ids, weights written again), epochs in the run's log
    after = {stage: _manifests(root, stage) for stage in ("train", "evaluate", "knowledge")}
    assert set(after["train"]) == set(before["train"]) and len(after["train"]) == 2
    assert all(after["train"][k]["run_id"] != before["train"][k]["run_id"] for k in after["train"])
    fresh = [k for k, m in after["evaluate"].items() if m["run_id"] not in {b["run_id"] for b in before["evaluate"].values()}]
    assert len(fresh) == 2, after["evaluate"]  # the new models' files (weights, history) are new inputs: new keys
    assert after["knowledge"] == before["knowledge"]
    assert all((root / "train" / k / "model.pt").stat().st_mtime_ns > weights_mtime[k] for k in after["train"])
    assert _epochs_logged(_run_logs(api_url, run_id)) == [1, 1]  # one epoch for each variant


def test_stage_deployment_reruns_only_that_stage(served, populated) -> None:
    env, api_url = served
    params, root, _ = populated
    before = _manifests(root, "train")
    evaluated = _manifests(root, "evaluate")
    run_id = _run_deployment(env, params, "mner-pipeline/train")
    states = _stage_states(api_url, run_id)
    by_stage = {name.rsplit("-", 1)[0]: state for name, state in states.items()}
    assert set(by_stage) == {"load", "caption-shard", "caption", "ocr-shard", "ocr", "knowledge", "train"}, states
    assert {n: s for n, s in states.items() if not n.startswith("train")} and all(
        s == "Cached" for n, s in states.items() if not n.startswith("train")), states
    assert [s for n, s in states.items() if n.startswith("train")] == ["Completed", "Completed"], states
    after = _manifests(root, "train")
    assert set(after) == set(before) and all(after[k]["run_id"] != before[k]["run_id"] for k in after)
    assert _epochs_logged(_run_logs(api_url, run_id)) == [1, 1]
    assert _manifests(root, "evaluate") == evaluated  # the per-stage deployment stops after its stage


def test_invalid_config_fails_the_run_naming_the_field(served) -> None:
    """An override the deployment's parameter schema cannot check fails the run in resolve_config, naming the field."""
    import httpx

    env, api_url = served
    bad = _prefect(env, "deployment", "run", "mner-pipeline/default", "--params",
                   json.dumps({"overrides": {"train.epochs": 0}}), "--watch", "--watch-interval", "1")
    assert bad.returncode != 0
    flow_run_id = next(line.split("UUID:")[1].strip() for line in bad.stdout.splitlines() if "UUID:" in line)
    run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30).json()
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "train.epochs: Input should be greater than or equal to 1" in run["state"]["message"], run["state"]


def _newest_artifacts(api_url: str, keys: list[str]) -> dict[str, dict]:
    """The newest artifact of each key, with its data."""
    import httpx

    response = httpx.post(f"{api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": keys}}, "limit": 50,
                                                                "sort": "CREATED_DESC"}, timeout=30)
    response.raise_for_status()
    newest: dict[str, dict] = {}
    for artifact in response.json():
        newest.setdefault(artifact["key"], artifact)
    return newest


@pytest.fixture(scope="module")
def tag_run(served, populated, tmp_path_factory) -> Path:
    """A ``mner-tag/default`` run on 20 posts with the first pipeline run's text-only tagger; yields its output folder."""
    env, _ = served
    _, root, _ = populated
    folder = tmp_path_factory.mktemp("tag")
    posts = write_posts(folder / "in", sample_posts(20))["posts.jsonl"]
    _run_deployment(env, {"input": str(posts), "model": "twitter2015-sample/text", "conll": True,
                          "output": str(folder / "out"), "overrides": {"artifacts_root": str(root)}}, "mner-tag/default")
    return folder / "out"


def test_a_deployment_run_of_mner_tag_writes_the_files_and_the_ui_artifacts(served, tag_run: Path) -> None:
    _, api_url = served
    tagged = read_rows(tag_run / "tagged.jsonl")
    assert [row["id"] for row in tagged] == [f"p{i}" for i in range(20)]
    assert (tag_run / "tagged.conll").read_text(encoding="utf-8").count("IMGID:") == 20
    found = _newest_artifacts(api_url, ["mner-tag-summary", "mner-tag-posts"])
    assert set(found) == {"mner-tag-summary", "mner-tag-posts"}, found
    rows = json.loads(found["mner-tag-summary"]["data"])
    by_what = {(r["what"], r["name"]): r["value"] for r in rows}
    assert by_what[("posts", "tagged")] == 20 and by_what[("posts per second", "this run")] > 0
    types = {name: value for (what, name), value in by_what.items() if what == "entities by type"}
    assert sum(types.values()) == sum(len(row["entities"]) for row in tagged) > 0
    assert any(what == "most frequent entities" for what, _ in by_what)
    markdown = found["mner-tag-posts"]["data"]
    assert markdown.count("\n| p") == 10 and "**" in markdown


@needs_installed("chromium")
def test_the_report_and_the_tag_run_show_their_figures_in_the_ui(served, populated, tag_run: Path) -> None:
    """Each figure is an <img> the UI kept and Chromium decoded whole: the PNG's size, every pixel opaque (a broken
    one decodes to 0 x 0; one cut short has its header's size, and the rows it lacks stay transparent)."""
    from mner.headless_chromium import open_page

    _, api_url = served
    found = _newest_artifacts(api_url, ["twitter2015-sample-report", "mner-tag-posts"])
    shown = {}
    for key, expected in (("twitter2015-sample-report", 2), ("mner-tag-posts", 1)):
        with open_page(f"{api_url.removesuffix('/api')}/artifacts/artifact/{found[key]['id']}") as page:
            shown[key] = [(i["alt"], i["width"], i["height"], i["opaque"]) for i in page.png_images(expected)]
    assert shown["twitter2015-sample-report"] == [("dev F1 and training loss by epoch", 900, 320, 1),
                                                  ("test F1 by entity type", 900, 340, 1)], shown
    assert len(shown["mner-tag-posts"]) == 1, shown
    alt, width, height, opaque = shown["mner-tag-posts"][0]
    assert (alt, width, opaque) == ("entities by type", 700, 1) and height > 100, shown
