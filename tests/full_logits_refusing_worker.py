"""Fault injector: a distill worker whose model's LM head refuses to compute logits at every position of a batch.

The stage's training command becomes ``python -m tests.full_logits_refusing_worker JOB.json CALLS.jsonl`` (in place
of ``engine.train_worker``). The job runs for real on the model it loads, with two hooks on that model:

- the LM head raises when its input is ``batch x sequence x hidden`` (what ``model(**batch).loss`` hands it: logits at
  every position) instead of ``positions x hidden`` (the answer positions :mod:`engine.answer_loss` gathers);
- every call of the head and of the first decoder layer's MLP is appended to ``CALLS.jsonl`` as ``{"module",
  "shape"}`` (the MLP runs inside the layer's checkpointed forward, so gradient checkpointing runs it twice per step).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from engine import distillation, train_worker

REFUSED = "fault injected: the LM head was asked for logits at every position"


def _record(calls: Path, module: str, tensor: torch.Tensor) -> None:
    with calls.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"module": module, "shape": list(tensor.shape)}) + "\n")


def _watched_loader(calls: Path) -> Any:
    """:func:`engine.local_generate.load_causal_lm` with the hooks of this module on the model it loads."""

    def load(*args: Any, **kwargs: Any) -> Any:
        model, tokenizer = _REAL_LOAD(*args, **kwargs)

        def head(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            _record(calls, "head", inputs[0])
            if inputs[0].dim() > 2:
                raise RuntimeError(f"{REFUSED} (input {tuple(inputs[0].shape)})")

        model.get_output_embeddings().register_forward_pre_hook(head)
        model.get_decoder().layers[0].mlp.register_forward_pre_hook(
            lambda _module, inputs: _record(calls, "layer0.mlp", inputs[0]))
        return model, tokenizer

    return load


_REAL_LOAD = distillation.load_causal_lm

if __name__ == "__main__":
    distillation.load_causal_lm = _watched_loader(Path(sys.argv[2]))
    train_worker.run_job(sys.argv[1])
