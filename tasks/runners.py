"""Task runners for the per-sample stages: threads (default), processes, or Dask."""

from __future__ import annotations

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from mner.config import RunnerConfig


def build_task_runner(config: RunnerConfig) -> TaskRunner:
    """The task runner that ``config`` names.

    ``dask`` connects to ``dask_address`` when given (the artifact root must then be a path every
    worker can reach), otherwise it starts a local cluster of ``max_workers`` single-threaded
    worker processes for the duration of the flow run.
    """
    if config.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    if config.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=config.max_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - prefect-dask is a core dependency
        raise RuntimeError("task_runner 'dask' needs prefect-dask: pip install prefect-dask") from exc
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.max_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})
