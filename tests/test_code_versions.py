"""Stage keys follow the code: a stage's code version covers every project module it imports, transitively.

The edits are made in a copy of the project's packages: the stage keys the copy's own tasks compute
(in a process that imports the copy) must change with an edit of a helper they import; and the copy's
versions read from its import graph (``tree_version``) must follow every imported module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mner.codeversion import code_modules, tree_version
from tests.conftest import PROJECT

STAGES = {"train": "tasks.train", "evaluate": "tasks.evaluate", "retrieve": "tasks.retrieve",
          "backbone": "tasks.backbone", "ocr-shard": "tasks.ocr"}


def _versions(tree: Path) -> dict[str, str]:
    return {stage: tree_version(tree, [module]) for stage, module in STAGES.items()}


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


# Run in a source tree: the stage keys its tasks compute (``stage_key``, as a run does) for fixed parameters.
STAGE_KEYS = """
import json
import tasks.common
from tasks.common import stage_key
from tasks.evaluate import evaluate_model
from tasks.ocr import ocr_shard
from tasks.train import train_model

data = {"stage": "load", "key": "k", "dir": "/d", "files": {"train.jsonl": "0" * 64}}
model = {"stage": "train", "key": "m", "dir": "/m", "files": {"model.pt": "1" * 64}}
print(json.dumps({"tree": tasks.common.__file__, "keys": {
    "train": stage_key(train_model, {"data": data, "variant": "text", "model": {}, "train": {}, "artifacts_root": "/a"}),
    "evaluate": stage_key(evaluate_model, {"data": data, "model": model, "variant": "text", "precision": "fp32",
                                           "artifacts_root": "/a"}),
    "ocr-shard": stage_key(ocr_shard, {"data": data, "split": "train", "start": 0, "stop": 4, "sources": {},
                                       "backend": "none", "min_score": 0.5, "artifacts_root": "/a"})}}))
"""


def _stage_keys(tree: Path) -> dict[str, str]:
    """The keys the stages of the source tree ``tree`` compute for the parameters of :data:`STAGE_KEYS`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", STAGE_KEYS], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["tree"]).is_relative_to(tree), found  # the copy's code, not the installed project's
    return found["keys"]


def test_stages_carry_the_version_of_their_import_graph(tmp_path: Path) -> None:
    """Editing a helper a stage imports (in a copy of the project) changes that stage's key, and only its."""
    tree = tmp_path / "tree"
    for package in ("mner", "models", "engine", "tasks"):
        shutil.copytree(PROJECT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    base = _stage_keys(tree)

    _touch(tree / "mner" / "metrics.py")  # imported by train (choosing the kept epoch) and evaluate, not by OCR
    edited = _stage_keys(tree)
    assert edited["train"] != base["train"] and edited["evaluate"] != base["evaluate"], (base, edited)
    assert edited["ocr-shard"] == base["ocr-shard"]


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
