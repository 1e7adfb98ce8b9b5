"""What the distill stage's tests train on: a tiny random-weight Llama with SmolLM2's tokenizer, eight train posts with
short zero-shot prompts, and the stage's parameters over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.distillation import model_sources
from mner import formats
from mner.config import DistillConfig
from mner.samples import write_jsonl, write_samples
from mner.store import sha256_file
from tasks.distill import distill_settings
from tests.tiny_sample import write_tiny_sample


def tiny_llama(directory: Path, tied: bool = True) -> Path:
    """A 2-layer Llama with random weights (seeded) and SmolLM2's tokenizer (read from its GGUF), saved as a model
    directory; ``tied``: the LM head is the input embedding, as in SmolLM2, else a tensor of its own."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.llm_server import default_model_path

    gguf = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def stage_output(stage: str, directory: Path) -> dict[str, Any]:
    """A hand-made stage output over the files of ``directory`` (what the stage reads)."""
    return {"stage": stage, "key": directory.name, "dir": str(directory),
            "files": {p.name: sha256_file(p) for p in sorted(directory.iterdir())}}


def tiny_split(base: Path) -> dict[str, Any]:
    """A load output (8 train posts) and a prompts output of short zero-shot prompts for them, under ``base``."""
    overrides = write_tiny_sample(base / "data", per_split=8)
    train = formats.read_conll(overrides["dataset.train"], repair=True).sentences
    (base / "load").mkdir()
    write_samples(base / "load" / "train.jsonl", train)
    (base / "prompts").mkdir()
    write_jsonl(base / "prompts" / "train.jsonl", [
        {"id": s.id, "messages": [{"role": "user", "content": f"Text: {' '.join(s.tokens)}\nExplain its entities."}]}
        for s in train])
    return {"data": stage_output("load", base / "load"), "prompts": stage_output("prompts", base / "prompts"),
            "ids": [s.id for s in train], "base": base}


def write_answers(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The teacher's answers, ``{"id", "knowledge"}`` rows, as a JSONL file."""
    write_jsonl(path, rows)
    return path


def stage_params(split: dict[str, Any], answers: Path, model: Path, root: Path, **distill: Any) -> dict[str, Any]:
    """The distill stage's parameters: ``split``'s prompts, the ``answers`` file, the base ``model``, a store at ``root``,
    and ``distill`` settings (the rest default)."""
    return {"prompts": split["prompts"], "data": split["data"], "artifacts_root": str(root),
            "sources": {"answers": str(answers), **model_sources(model)}, "distill": distill_settings(DistillConfig(**distill))}
