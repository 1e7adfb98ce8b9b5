"""Code versions from the import graph: a stage's key changes when any project module it uses changes.

A module's version hashes its own source and the source of every project module it imports,
transitively, including imports inside functions. Imports are read from the source with ``ast``
(nothing is imported or executed), so lazily imported helpers count as well. A project module is
one whose file lies under the same root folder as the module the walk started from; third-party
packages are left out (their versions are pinned by the environment, not by this repository).
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Iterable


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``), if there is one."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(name: str, path: Path) -> str:
    """The package that relative imports in module ``name`` (file ``path``) are resolved against."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported_names(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``import``/``from ... import`` statement of ``path`` may refer to."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = _package_of(name, path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    closed = set(found)
    for dotted in found:  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        parts = dotted.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return closed


@lru_cache(maxsize=None)
def project_imports(root: Path, name: str) -> tuple[tuple[str, Path], ...]:
    """``(module name, file)`` of ``name`` and every project module it imports, transitively, sorted by name."""
    seen: dict[str, Path] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        path = _module_file(root, current)
        if path is None:
            continue
        seen[current] = path
        pending.extend(sorted(_imported_names(current, path) - set(seen)))
    return tuple(sorted(seen.items()))


def _root_of(module: ModuleType) -> Path:
    """The folder holding the top-level package of ``module``."""
    path = Path(module.__file__ or "").resolve()
    depth = module.__name__.count(".") + (1 if path.name == "__init__.py" else 0)
    return path.parents[depth]


def tree_version(root: Path, names: Iterable[str]) -> str:
    """A short hash of modules ``names`` under ``root`` and of every project module they import, transitively."""
    files: dict[str, Path] = {}
    for name in names:
        files.update(project_imports(Path(root), name))
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def code_version(modules: Iterable[ModuleType]) -> str:
    """The :func:`tree_version` of loaded ``modules`` (all from one source tree)."""
    modules = list(modules)
    roots = {_root_of(module) for module in modules}
    if len(roots) > 1:
        raise ValueError(f"modules from several source trees: {sorted(map(str, roots))}")
    return tree_version(roots.pop(), [module.__name__ for module in modules]) if modules else ""


def code_modules(module: ModuleType) -> list[str]:
    """Names of the project modules whose code enters ``module``'s version (for manifests and docs)."""
    return [name for name, _ in project_imports(_root_of(module), module.__name__)]
