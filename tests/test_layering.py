"""One direction of dependencies: cli → flows → tasks → engine → models → mner (core).

Every ``import`` in the project, at module level or inside a function, is read with ``ast`` and
checked against the layer it lands in; a fresh interpreter then shows that the Prefect-free layers,
and a real training worker process, never load Prefect.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT, SAMPLE

LAYERS = ("mner", "models", "engine", "tasks", "flows", "cli")  # each may import only those before it
PREFECT_FREE = ("mner", "models", "engine")
SHARED_STAGE_HELPER = "tasks.common"


def _modules(package: str) -> list[str]:
    """Dotted names of the modules of one top-level project package."""
    return sorted(".".join(p.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
                  for p in (PROJECT / package).rglob("*.py"))


def _imports(module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``module``, wherever it sits."""
    path = PROJECT.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module in LAYERS]  # ``from tasks import x`` imports module tasks.x
    return found


def _project_edges() -> dict[str, set[str]]:
    """Module → the project modules it imports (packages resolved to the module actually named)."""
    known = {m for package in LAYERS for m in _modules(package)}
    return {m: {name for _, name in _imports(m) if name in known and name != m} for package in LAYERS
            for m in _modules(package)}


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for rank, package in enumerate(LAYERS):
        allowed = set(LAYERS[: rank + 1])
        for module in _modules(package):
            for line, name in _imports(module):
                root = name.split(".")[0]
                if root in LAYERS and root not in allowed:
                    wrong.append(f"{module}:{line} imports {name} ({package} may use only {sorted(allowed)})")
                if root == "prefect" and package in PREFECT_FREE:
                    wrong.append(f"{module}:{line} imports Prefect ({package} is Prefect-free)")
    assert not wrong, "\n".join(wrong)


def test_a_stage_module_uses_no_other_stage_module_but_the_shared_helper() -> None:
    wrong = [f"{module} imports {name}" for module, names in _project_edges().items() if module.startswith("tasks.")
             for name in names if name.startswith("tasks.") and name != SHARED_STAGE_HELPER]
    assert not wrong, "\n".join(wrong)


def test_the_module_graph_has_no_circle() -> None:
    edges = _project_edges()
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in sorted(edges.get(module, ())):
            if state.get(name) == 1:
                circles.append(" → ".join(path[path.index(name):] + [name]))
            elif name not in state:
                visit(name, path + [name])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def _run_at_import(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes under ``node`` that run when the module is imported: all but function bodies."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _run_at_import(child)


def test_matplotlib_is_imported_only_where_a_figure_is_drawn() -> None:
    """Its import costs about a second: no module imports it at import time, only the functions that draw (mner.plots);
    the next test checks, in a fresh interpreter, that loading every Prefect-free module leaves it unloaded."""
    wrong = []
    for module in (m for package in LAYERS for m in _modules(package)):
        path = PROJECT.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in _run_at_import(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{module}:{node.lineno} imports {name}" for name in names if name.split(".")[0] == "matplotlib"]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", PREFECT_FREE)
def test_the_prefect_free_layers_load_without_prefect_or_matplotlib(package: str) -> None:
    code = ("import importlib, json, sys\n"
            f"for name in {_modules(package)!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    higher = set(LAYERS[LAYERS.index(package) + 1:])
    assert "prefect" not in loaded and not loaded & higher, sorted(loaded & (higher | {"prefect"}))
    assert "matplotlib" not in loaded  # mner.plots imports it only to draw


@pytest.mark.slow
def test_a_training_worker_process_never_imports_prefect(tmp_path: Path) -> None:
    """A real one-epoch job run as the pipeline runs it (``python -m engine.train_worker JOB``), imports traced."""
    from mner.config import ModelConfig, TrainConfig
    from mner.formats import read_conll
    from mner.samples import write_jsonl

    for split, name in (("train", "train.txt"), ("dev", "valid.txt")):
        write_jsonl(tmp_path / f"{split}.jsonl", [{"id": str(i), "tokens": s.tokens, "tags": s.tags, "knowledge": ""}
                                                  for i, s in enumerate(read_conll(SAMPLE / name, repair=True).sentences[:4])])
    job = {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "dev.jsonl"),
           "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"],
           "model": ModelConfig(max_length=64).model_dump(mode="json"),
           "train": TrainConfig(epochs=1, batch_size=4, num_threads=1, device="cpu").model_dump(mode="json"),
           "use_knowledge": False, "work_dir": str(tmp_path / "model"), "result_file": str(tmp_path / "result.json")}
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.train_worker", str(tmp_path / "job.json")],
                          cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text())["epochs_run"] == 1
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "engine" in imported  # the trace is real
    assert not imported & {"prefect", "tasks", "flows"}, sorted(imported & {"prefect", "tasks", "flows"})
