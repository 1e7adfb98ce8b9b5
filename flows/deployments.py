"""Deployments: ``mner-pipeline/default``, one per stage, and ``mner-backbone-grid/default``, served by one process.

``mner-pipeline/<stage>`` reruns that stage regardless of the cache and stops after it; the stages
before it replay from the cache. Start with ``mner serve`` (or ``python -m flows.deployments``).
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.backbone_grid import backbone_grid
from flows.pipeline import STAGES, pipeline


def pipeline_deployments() -> list[RunnerDeployment]:
    """``default`` (the whole pipeline), one deployment per stage, and the backbone loss-weight grid."""
    deployments = [pipeline.to_deployment(
        name="default", tags=["mner"],
        description="The whole pipeline; unchanged stages replay from the cache. Parameters: config or "
                    "config_file (+ overrides), refresh (stages to recompute), until (stop after a stage).")]
    for stage in STAGES:
        deployments.append(pipeline.to_deployment(
            name=stage, tags=["mner", f"stage:{stage}"], parameters={"refresh": [stage], "until": stage},
            description=f"Rerun the {stage} stage regardless of the cache and stop after it."))
    deployments.append(backbone_grid.to_deployment(
        name="default", tags=["mner", "grid"],
        description="Train the multimodal backbone once per (align_lambda, infonce_lambda) pair; table of dev/test P/R/F1."))
    return deployments


def serve_pipeline(limit: int | None = None) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    serve(*pipeline_deployments(), limit=limit)


if __name__ == "__main__":
    serve_pipeline()
