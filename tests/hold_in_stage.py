"""Fault injector: ``mner`` that, once it begins computing a stage, stays inside it until told to go on.

``python -m tests.hold_in_stage STAGE DIR ARGS...`` runs the real ``mner ARGS...``; when this process
begins computing STAGE (:meth:`ArtifactStore.begin`, which a stage calls holding its key's lock), it
writes ``DIR/held-<pid>`` and waits until ``DIR/release`` exists, then computes the stage as usual.
A run that finds the stage's output already published never begins it, so it is never held.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mner.store import ArtifactStore

_REAL_BEGIN = ArtifactStore.begin


def hold_then_begin(stage: str, directory: Path):
    """An :meth:`ArtifactStore.begin` that holds the caller inside ``stage`` until ``directory/release`` exists."""

    def begin(store: ArtifactStore, name: str, *args: Any, **kwargs: Any):
        if name == stage:
            (directory / f"held-{os.getpid()}").write_text(name)
            while not (directory / "release").exists():
                time.sleep(0.1)
        return _REAL_BEGIN(store, name, *args, **kwargs)

    return begin


if __name__ == "__main__":
    ArtifactStore.begin = hold_then_begin(sys.argv[1], Path(sys.argv[2]))  # type: ignore[method-assign]
    from cli.main import app

    app(args=sys.argv[3:], prog_name="mner")
