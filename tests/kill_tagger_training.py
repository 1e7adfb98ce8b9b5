"""Fault injector: test_training's tiny training run that SIGKILLs itself mid-epoch, after its epoch-2 checkpoint.

``python -m tests.kill_tagger_training WORK`` trains as ``run_tiny(WORK, epochs=4)`` does, for real, until the
checkpoint of epoch 2 is on disk and epoch 3 has taken one optimizer step; at the next batch the process
dies as a killed one does, with no chance to clean up. So the kill lands at the same point on every run,
however fast the machine is.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_training imports the suite's conftest

from engine import training  # noqa: E402

KILL_AFTER_EPOCH = 2  # the last checkpoint a resumed run finds
_REAL_SAVE, _REAL_COLLATE = training.save_checkpoint, training.collate
_batches_since_checkpoint: list[int] = []


def _save_and_arm(path: Path, model: Any, optimizer: Any, scheduler: Any, state: dict) -> None:
    """Write the checkpoint as the loop does; after epoch KILL_AFTER_EPOCH's, start counting batches."""
    _REAL_SAVE(path, model, optimizer, scheduler, state)
    if state["epoch"] == KILL_AFTER_EPOCH:
        _batches_since_checkpoint.append(0)


def _collate_or_die(*args: Any, **kwargs: Any) -> Any:
    """Assemble a training batch as the loop does; the second batch of the epoch after the checkpoint is never run."""
    if _batches_since_checkpoint:
        _batches_since_checkpoint[0] += 1
        if _batches_since_checkpoint[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return _REAL_COLLATE(*args, **kwargs)


if __name__ == "__main__":
    import shutil

    from test_training import run_tiny

    for made in (os.environ["PREFECT_HOME"], os.environ["MNER_ARTIFACTS_ROOT"]):  # conftest's, unused here: the
        shutil.rmtree(made, ignore_errors=True)  # kill below skips the atexit that would remove them
    training.save_checkpoint, training.collate = _save_and_arm, _collate_or_die
    run_tiny(Path(sys.argv[1]), epochs=4)
    raise SystemExit("training finished: the kill point was never reached")
