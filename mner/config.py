"""Configuration of the stage-2 pipeline as pydantic models, loadable from YAML or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mner import PROJECT_ROOT

DEFAULT_ENCODER = "offline:all-MiniLM-L6-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Where a benchmark's splits and PGIM files live."""

    name: str = "twitter2015-sample"
    train: Path = PROJECT_ROOT / "data/sample/train.txt"
    dev: Path = PROJECT_ROOT / "data/sample/valid.txt"
    test: Path = PROJECT_ROOT / "data/sample/test.txt"
    knowledge_train: Path | None = PROJECT_ROOT / "data/sample/knowledge_train.txt"
    knowledge_dev: Path | None = PROJECT_ROOT / "data/sample/knowledge_valid.txt"
    knowledge_test: Path | None = PROJECT_ROOT / "data/sample/knowledge_test.txt"
    captions: Path | None = PROJECT_ROOT / "data/sample/blip2_captions.txt"
    repair_bio: bool = Field(True, description="convert BIO to IOB2 (the Twitter files have I-X after O); the count is reported")


class ModelConfig(_Strict):
    """The [T;Z] tagger: encoder, head and input format."""

    encoder: str = Field(DEFAULT_ENCODER, description="HF model id, local path, or offline:all-MiniLM-L6-v2")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    shape_features: bool = True
    shape_dim: int = Field(32, ge=1)
    max_length: int = Field(256, ge=8, description="sub-tokens of [CLS] T [SEP] Z [SEP]; Z is cut to fit")
    constrained_decoding: bool = True


class TrainConfig(_Strict):
    """Optimisation settings (PGIM-style AdamW with two learning rates)."""

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)
    lr_encoder: float = Field(2e-4, gt=0, description="chosen on Twitter-2015 dev for MiniLM")
    lr_head: float = Field(5e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(3, ge=1, description="epochs without dev-F1 gain before stopping")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA and on CPUs with bf16 matrix units"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    bucket_size: int = Field(50, ge=1, description="batches per length-sorted bucket")
    max_train_sentences: int | None = Field(None, ge=1, description="use only the first N (smoke runs)")


class Stage2Config(_Strict):
    """Everything that shapes a stage-2 result: data, model, training, variants."""

    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    variants: tuple[Literal["text", "text+knowledge"], ...] = ("text", "text+knowledge")
    artifacts_root: Path = PROJECT_ROOT / "artifacts"

    @model_validator(mode="after")
    def _knowledge_needs_files(self) -> "Stage2Config":
        if "text+knowledge" in self.variants:
            for split in ("train", "dev", "test"):
                if getattr(self.dataset, f"knowledge_{split}") is None:
                    raise ValueError(f"variant text+knowledge needs dataset.knowledge_{split}")
        return self


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Stage2Config:
    """Read a YAML/JSON config file (relative paths resolve against the file's folder).

    Raises ``ValueError`` naming the file and the offending field when the config is invalid.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else (yaml.safe_load(text) or {})
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
        data = _resolve_paths(data, path.parent)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return Stage2Config.model_validate(data)
    except ValidationError as err:
        where = f"{path}: " if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise ValueError(f"{where}invalid config: {problems}") from err


def _resolve_paths(data: dict, base: Path) -> dict:
    dataset = data.get("dataset")
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            if isinstance(value, str) and key not in ("name",) and not Path(value).is_absolute():
                dataset[key] = str((base / value).resolve())
    root = data.get("artifacts_root")
    if isinstance(root, str) and not Path(root).is_absolute():
        data["artifacts_root"] = str((base / root).resolve())
    return data


def _set_dotted(data: dict, dotted: str, value: object) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
