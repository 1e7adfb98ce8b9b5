"""The stock Prefect CLI against a real server, and the deployments run through the ``mner`` work pool.

A real ``prefect server start`` on a free loopback port with a temporary PREFECT_HOME; ``prefect
deploy --all`` registers prefect.yaml's deployments on the process pool ``mner``; a ``prefect worker
start --pool mner`` process runs ``mner-pipeline/default`` on a few posts of the demo sample to
Completed; then ``prefect deployment ls``, ``flow-run ls`` and ``artifact ls`` must exit 0 and list
our deployments, that run and its artifact keys. Worker and server are stopped by their PIDs, and
every process of their trees, read from /proc while the run worked and before the stop (the flow
run's process and what it started among them), must be gone after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mner.server import free_port, server_env, start_server, stop_server
from tests import process_tree
from tests.conftest import PROJECT
from tests.tiny_sample import write_tiny_sample

PREFECT = str(Path(sys.executable).with_name("prefect"))


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PREFECT, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout)


def test_prefect_yaml_registers_the_deployments_mner_serve_does() -> None:
    from flows.deployments import deployment_specs, pipeline_deployments, prefect_yaml

    assert (PROJECT / "prefect.yaml").read_text(encoding="utf-8") == prefect_yaml(), \
        "prefect.yaml is stale: python -m flows.deployments --write-prefect-yaml"
    in_yaml = yaml.safe_load((PROJECT / "prefect.yaml").read_text(encoding="utf-8"))
    served = {(d.flow_name, d.name, json.dumps(d.parameters, sort_keys=True)) for d in pipeline_deployments()}
    flows = {"flows/pipeline.py:pipeline": "mner-pipeline", "flows/backbone_grid.py:backbone_grid": "mner-backbone-grid",
             "flows/tag.py:tag": "mner-tag"}
    deployed = {(flows[d["entrypoint"]], d["name"], json.dumps(d["parameters"], sort_keys=True))
                for d in in_yaml["deployments"]}
    assert deployed == served and len(deployed) == len(deployment_specs())
    assert {d["work_pool"]["name"] for d in in_yaml["deployments"]} == {"mner"}


@pytest.mark.slow
def test_work_pool_worker_runs_the_pipeline_and_the_stock_cli_lists_it(tmp_path: Path) -> None:
    home, port = tmp_path / "prefect-home", free_port()
    server = start_server(home, port)
    env = {**server_env(home, port), "COLUMNS": "300",  # wide tables: names are not cut
           "PREFECT_WORKER_QUERY_SECONDS": "1"}  # the worker asks for runs every second, not every 10
    worker, seen = None, {}  # every process of the server's and the worker's trees seen while they worked
    try:
        for command in (("work-pool", "create", "mner", "--type", "process"), ("deploy", "--all")):
            done = _prefect(env, *command)
            assert done.returncode == 0, done.stdout + done.stderr
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "mner"], cwd=PROJECT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        overrides = {**write_tiny_sample(tmp_path / "data"), "artifacts_root": str(tmp_path / "artifacts"),
                     "train.epochs": 1, "model.max_length": 96, "variants": ["text"], "stage1.ocr.backend": "none"}
        with process_tree.watching(seen, server.pid, worker.pid):  # the flow run's process and its children among them
            run = _prefect(env, "deployment", "run", "mner-pipeline/default", "--params",
                           json.dumps({"overrides": overrides}), "--watch", "--watch-interval", "1", timeout=900)
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout + run.stderr + \
            (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        flow_run = re.search(r"Created flow run '([\w-]+)'", run.stdout)
        assert flow_run, run.stdout

        deployments = _prefect(env, "deployment", "ls")
        assert deployments.returncode == 0, deployments.stdout + deployments.stderr
        for name in ("mner-pipeline/default", "mner-pipeline/llm", "mner-pipeline/train", "mner-backbone-grid/default"):
            assert name in deployments.stdout, deployments.stdout
        runs = _prefect(env, "flow-run", "ls")
        assert runs.returncode == 0 and flow_run.group(1) in runs.stdout, runs.stdout + runs.stderr
        assert re.search(rf"{flow_run.group(1)}.*COMPLETED", runs.stdout), runs.stdout
        artifacts = _prefect(env, "artifact", "ls")
        assert artifacts.returncode == 0, artifacts.stdout + artifacts.stderr
        for key in ("twitter2015-sample-dataset-stats", "twitter2015-sample-report", "caption-progress"):
            assert key in artifacts.stdout, artifacts.stdout
    finally:
        tree = {**seen, **process_tree.snapshot(server.pid, *([worker.pid] if worker else []))}  # before the stop
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        stop_server(server)
        left = process_tree.wait_gone(tree, 10)
        process_tree.kill_left(tree)
    assert worker is not None and len(tree) > 2, tree  # more than the two (reaped) roots: the flow run's processes
    assert left == {}, left
