"""The knowledge tagger outside training: build, save, load and predict in batches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from engine.runtime import resolve_encoder
from mner.config import ModelConfig
from models.attention import CPU_FP32_SDPA
from models.encoding import EncodedSentence, SentenceEncoder, collate
from models.tagger import KnowledgeTagger

BEST_WEIGHTS = "model.pt"
TAGGER_META = "tagger.json"


def assemble_tagger(encoder: torch.nn.Module, labels: list[str], model_cfg: ModelConfig) -> KnowledgeTagger:
    """The tagger ``model_cfg`` describes around ``encoder``, which gets LoRA adapters (peft) when configured.

    With LoRA only the adapters of the encoder stay trainable; the head, linear layer and CRF
    always train.
    """
    if model_cfg.lora is not None:
        import peft  # takes seconds to import; only LoRA runs need it

        lora = model_cfg.lora
        encoder = peft.get_peft_model(encoder, peft.LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
            layers_to_transform=list(lora.layers) if lora.layers is not None else None, bias="none",
        ))
    return KnowledgeTagger(
        encoder, labels, model_cfg.dropout, model_cfg.shape_features, model_cfg.shape_dim, model_cfg.constrained_decoding,
        model_cfg.head, model_cfg.lstm_hidden, model_cfg.attention_heads,
    )


#: Names of the attention-weight dropout in Hugging Face encoder configs (BERT family, DistilBERT).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def encoder_config(source: str, model_cfg: ModelConfig):
    """The encoder's Hugging Face config with ``model_cfg.attention_dropout`` applied (None keeps the encoder's own)."""
    config = AutoConfig.from_pretrained(source)
    if model_cfg.attention_dropout is not None:
        keys = [k for k in ATTENTION_DROPOUT_KEYS if hasattr(config, k)]
        if not keys:
            raise ValueError(f"encoder {source!r} has no attention dropout setting ({ATTENTION_DROPOUT_KEYS}); "
                             "set model.attention_dropout to null")
        for key in keys:
            setattr(config, key, model_cfg.attention_dropout)
    return config


def attention_name(model_cfg: ModelConfig) -> str:
    """The encoder's ``attn_implementation``: PyTorch's SDPA, upcast to float32 on the CPU when configured."""
    return CPU_FP32_SDPA if model_cfg.cpu_fp32_attention else "sdpa"


def build_tagger(model_cfg: ModelConfig, labels: list[str]) -> tuple[KnowledgeTagger, object]:
    """A fresh tagger with pretrained encoder weights, and its tokenizer."""
    source = resolve_encoder(model_cfg.encoder)
    hf_logging.set_verbosity_error()  # the unused pooler weights are expected, not worth a report
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(
        source, config=encoder_config(source, model_cfg), attn_implementation=attention_name(model_cfg),
        add_pooling_layer=False)
    return assemble_tagger(encoder, labels, model_cfg), tokenizer


def compile_for_training(tagger: KnowledgeTagger, enabled: bool) -> None:
    """With ``enabled`` (``train.compile_encoder``), compile the tagger's encoder in place, its weights' names unchanged.

    Dynamic shapes: length-bucketed batches differ in length, which would otherwise recompile
    the graph for each new shape. The CRF stays eager, its loop runs once per word.
    """
    if enabled:
        tagger.encoder.compile(dynamic=True)


def save_tagger(tagger: KnowledgeTagger, tokenizer, model_cfg: ModelConfig, directory: Path) -> None:
    """Write everything needed to load the tagger without the original encoder files."""
    directory.mkdir(parents=True, exist_ok=True)
    tagger.encoder.config.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "encoder")
    meta = {"labels": tagger.labels, "model": model_cfg.model_dump(mode="json")}
    (directory / TAGGER_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_tagger(directory: str | Path, device: str | torch.device = "cpu") -> tuple[KnowledgeTagger, SentenceEncoder]:
    """Load a tagger saved by :func:`save_tagger` plus its best weights, ready for prediction.

    The structure (LoRA adapters, head) is rebuilt from the saved model config; ``model.pt``
    holds every weight, the adapters' included.
    """
    directory = Path(directory)
    meta = json.loads((directory / TAGGER_META).read_text(encoding="utf-8"))
    model_cfg = ModelConfig.model_validate(meta["model"])
    config = AutoConfig.from_pretrained(directory / "encoder")
    encoder = AutoModel.from_config(config, attn_implementation=attention_name(model_cfg), add_pooling_layer=False)
    tagger = assemble_tagger(encoder, meta["labels"], model_cfg)
    tagger.load_state_dict(torch.load(directory / BEST_WEIGHTS, map_location="cpu"))
    tokenizer = AutoTokenizer.from_pretrained(directory / "encoder")
    sentence_encoder = SentenceEncoder(tokenizer, model_cfg.max_length, {l: i for i, l in enumerate(meta["labels"])})
    return tagger.to(device).eval(), sentence_encoder


def bucketed_batches(lengths: list[int], batch_size: int, bucket_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort by length inside buckets of ``bucket_size`` batches, then shuffle the batches.

    Batches hold sentences of similar length, so dynamic padding wastes little compute, while the
    order still changes every epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * bucket_size
    batches: list[list[int]] = []
    for begin in range(0, len(order), span):
        bucket = sorted(order[begin : begin + span], key=lambda i: lengths[i])
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


def predict(
    tagger: KnowledgeTagger,
    encoded: list[EncodedSentence],
    device: torch.device,
    bf16: bool,
    batch_size: int = 32,
) -> list[list[str]]:
    """Tag every encoded sentence, in input order; batches are length-sorted for speed."""
    tagger.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    out: list[list[str]] = [[] for _ in encoded]
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            batch = collate([encoded[i] for i in chunk]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                tags = tagger.predict(batch)
            for i, sentence_tags in zip(chunk, tags):
                out[i] = sentence_tags
    return out
