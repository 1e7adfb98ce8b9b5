"""Stage keys follow the code: a stage's code version covers every project module it imports, transitively.

The edits are made in a copy of the project's packages; the copy's versions are read from its import
graph the same way the stages read theirs (``tree_version``), and the stages of this tree are checked
to carry exactly that version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mner.codeversion import code_modules, tree_version
from tests.conftest import PROJECT

STAGES = {"train": "tasks.train", "evaluate": "tasks.evaluate", "retrieve": "tasks.retrieve",
          "backbone": "tasks.backbone", "ocr-shard": "tasks.ocr"}


def _versions(tree: Path) -> dict[str, str]:
    return {stage: tree_version(tree, [module]) for stage, module in STAGES.items()}


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_stages_carry_the_version_of_their_import_graph() -> None:
    from tasks.backbone import train_backbone_stage
    from tasks.evaluate import evaluate_model
    from tasks.ocr import ocr_shard
    from tasks.retrieve import retrieve_examples
    from tasks.train import train_model

    tasks_by_stage = {"train": train_model, "evaluate": evaluate_model, "retrieve": retrieve_examples,
                      "backbone": train_backbone_stage, "ocr-shard": ocr_shard}
    assert {stage: t.code_version for stage, t in tasks_by_stage.items()} == _versions(PROJECT)


def test_keys_follow_every_imported_module(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for package in ("mner", "models", "engine", "tasks", "flows"):
        shutil.copytree(PROJECT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    base = _versions(tree)
    assert base == _versions(PROJECT)

    _touch(tree / "mner" / "metrics.py")  # chooses the kept epoch and scores the test split
    metrics = _versions(tree)
    assert metrics["train"] != base["train"] and metrics["evaluate"] != base["evaluate"]
    assert metrics["ocr-shard"] == base["ocr-shard"]  # OCR does not use the metrics

    _touch(tree / "models" / "crf.py")  # imported by train only through the worker, the training loop and the tagger
    crf = _versions(tree)
    assert crf["train"] != metrics["train"] and crf["backbone"] != metrics["backbone"]

    _touch(tree / "engine" / "backbone_training.py")  # imported by retrieve only inside a function
    lazy = _versions(tree)
    assert lazy["retrieve"] != crf["retrieve"] and lazy["backbone"] != crf["backbone"]

    _touch(tree / "flows" / "deployments.py")  # no stage imports the flows
    assert _versions(tree) == lazy


def test_the_train_stage_version_lists_its_helpers() -> None:
    import tasks.train

    modules = code_modules(tasks.train)
    for name in ("tasks.train", "engine.train_worker", "engine.training", "engine.launcher", "mner.metrics", "models.crf",
                 "models.tagger", "models.encoding", "mner.tags", "tasks.common"):
        assert name in modules, name
    assert not any(name.startswith(("torch", "prefect", "flows")) for name in modules)


def test_the_backbone_stage_version_lists_its_helpers() -> None:
    import tasks.backbone

    modules = code_modules(tasks.backbone)
    for name in ("tasks.backbone", "engine.backbone_training", "engine.training", "engine.image_io", "models.backbone"):
        assert name in modules, name
