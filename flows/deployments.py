"""Deployments of the pipeline: ``mner-pipeline/default`` and one per stage, served by one process.

``mner-pipeline/<stage>`` reruns that stage regardless of the cache and stops after it; the stages
before it replay from the cache. Start with ``mner serve`` (or ``python -m flows.deployments``).
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.pipeline import STAGES, pipeline


def pipeline_deployments() -> list[RunnerDeployment]:
    """``default`` (the whole pipeline) plus one deployment per stage."""
    deployments = [pipeline.to_deployment(
        name="default", tags=["mner"],
        description="The whole pipeline; unchanged stages replay from the cache. Parameters: config or "
                    "config_file (+ overrides), refresh (stages to recompute), until (stop after a stage).")]
    for stage in STAGES:
        deployments.append(pipeline.to_deployment(
            name=stage, tags=["mner", f"stage:{stage}"], parameters={"refresh": [stage], "until": stage},
            description=f"Rerun the {stage} stage regardless of the cache and stop after it."))
    return deployments


def serve_pipeline(limit: int | None = None) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    serve(*pipeline_deployments(), limit=limit)


if __name__ == "__main__":
    serve_pipeline()
