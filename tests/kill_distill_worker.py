"""Fault injector: a distill worker that SIGKILLs itself right after its first mid-epoch step checkpoint.

The stage's training command becomes ``python -m tests.kill_distill_worker JOB.json`` (in place of
``engine.train_worker``): the job runs for real until the first checkpoint written inside an epoch
is on disk, then the process dies as a killed one does, with no chance to clean up.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from engine import distillation, train_worker


def _save_then_die(path: Path, model: Any, optimizer: Any, scheduler: Any, state: dict) -> None:
    """Write the checkpoint as the worker does; SIGKILL this process if it was a mid-epoch one."""
    _REAL_SAVE(path, model, optimizer, scheduler, state)
    if state["step_in_epoch"] > 0:
        os.kill(os.getpid(), signal.SIGKILL)


_REAL_SAVE = distillation.save_checkpoint

if __name__ == "__main__":
    distillation.save_checkpoint = _save_then_die
    train_worker.run_job(sys.argv[1])
