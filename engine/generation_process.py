"""The ``transformers`` backend's generator in a process of its own: ``python -m engine.generation_process``.

Batched generation on the CPU is slow in a thread of a busy process. GNU OpenMP, which runs
PyTorch's intra-op threads, counts the worker threads of every thread that has run a parallel
region; once they outnumber the cores it stops letting its workers spin and puts them to sleep
after each region. A decode step runs hundreds of small regions, so in the flow's task-runner
threads batched generation ran at 1.9 prompts/s against 3.1 here (Gemma 3 270M distilled, 128 dev
prompts, benchmarks/generation_placement.py in RESULTS.md). Here the model lives in the main
thread of a child process, one per model and precision, started on first use and kept while the
thread that started it lives. It also keeps the model's memory out of the flow's process.

:func:`generation_process` returns a :class:`GeneratorProcess`, whose :meth:`~GeneratorProcess.generate`
yields batches exactly as :meth:`engine.local_generate.LocalGenerator.generate` does, so
:func:`engine.local_generate.complete_local` caches every batch as it arrives. The child is started
with :func:`mner.processes.spawn` (it dies with its parent) and with the training worker's
environment (allocator, bounded oneDNN cache). A request abandoned half-way (a stopping run) stops
the child, and the next request starts a fresh one; a child that dies fails the request with its
exit code, and the answers of the batches it finished stay cached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Iterator, Sequence

from engine.local_generate import Generated, Messages, resolve_model
from mner import processes


class GeneratorProcess:
    """A child process holding one causal LM; :meth:`generate` sends it prompts and yields its batches."""

    def __init__(self, model: Path, precision: str) -> None:
        from engine.launcher import worker_environment  # the training worker's imports, needed here only

        self.model, self.precision = model, precision
        self.lock = threading.Lock()
        self.child = processes.spawn([sys.executable, "-m", __name__, str(model), precision],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker_environment(None))
        self.requests = Connection(os.dup(self.child.stdin.fileno()), readable=False)  # type: ignore[union-attr]
        self.replies = Connection(os.dup(self.child.stdout.fileno()), writable=False)  # type: ignore[union-attr]
        try:
            self.pid = self._receive("ready")[1]
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.child.poll() is None

    def generate(
        self, prompts: Sequence[Messages], max_tokens: int, temperature: float, top_p: float, seed: int | None,
        batch_size: int,
    ) -> Iterator[tuple[list[int], list[Generated]]]:
        """Yield (indices into ``prompts``, their answers) batch by batch, as the child generates them."""
        with self.lock:
            finished = False
            try:
                self.requests.send(([list(m) for m in prompts], max_tokens, temperature, top_p, seed, batch_size))
                while True:
                    reply = self._receive("batch", "done")
                    if reply[0] == "done":
                        finished = True
                        return
                    yield reply[1], reply[2]
            finally:
                if not finished:  # abandoned or failed: what the child still sends belongs to no request
                    self.stop()

    def stop(self) -> int:
        """Stop the child (at once); returns its exit code."""
        for end in (self.requests, self.replies):
            end.close()
        return processes.stop(self.child, grace_s=2.0)

    def _receive(self, *expected: str) -> tuple[Any, ...]:
        """The child's next message, one of ``expected``; its error, or its death, raised with the cause."""
        try:
            reply = self.replies.recv()
        except (EOFError, OSError):
            code = self.child.wait()
            raise RuntimeError(f"the generation process for {self.model} ({self.precision}) exited with code {code} "
                               "before answering; see its output above (killed for memory?). The answers of the "
                               "batches it finished are cached: rerun to generate the rest") from None
        if reply[0] == "error":
            raise RuntimeError(f"the generation process for {self.model} ({self.precision}) failed:\n{reply[1]}")
        if reply[0] not in expected:
            raise RuntimeError(f"the generation process for {self.model} sent {reply[0]!r}, expected {expected}")
        return reply


_PROCESSES: dict[tuple[str, str], GeneratorProcess] = {}
_STARTING = threading.Lock()


def generation_process(local_model: str | Path | None, precision: str) -> GeneratorProcess:
    """This process's generation child for ``local_model`` (default SmolLM2) and ``precision``; started
    on first use (and again if it has died), ready to answer when returned."""
    path = resolve_model(local_model)
    key = (str(path.resolve()), precision)
    with _STARTING:
        running = _PROCESSES.get(key)
        if running is None or not running.alive():
            _PROCESSES[key] = GeneratorProcess(path, precision)
        return _PROCESSES[key]


def serve(model: str, precision: str, requests: Connection, replies: Connection) -> None:
    """The child's loop: load the model in this (main) thread, then answer requests until the parent is gone."""
    from engine.local_generate import load_generator

    try:
        generator = load_generator(model, precision)
    except Exception:
        replies.send(("error", traceback.format_exc(limit=3)))
        return
    replies.send(("ready", os.getpid()))
    while True:
        try:
            prompts, max_tokens, temperature, top_p, seed, batch_size = requests.recv()
        except EOFError:
            return
        try:
            for chunk, answers in generator.generate(prompts, max_tokens, temperature, top_p, seed, batch_size):
                replies.send(("batch", chunk, answers))
        except Exception:
            replies.send(("error", traceback.format_exc(limit=3)))
            continue
        replies.send(("done",))


def main() -> None:
    """Entry point: the model and precision from argv; requests on stdin, replies on stdout.

    The replies keep the original stdout; anything else the libraries print goes to stderr.
    """
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    serve(sys.argv[1], sys.argv[2], requests, replies)


if __name__ == "__main__":
    main()
