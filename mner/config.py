"""Configuration of the whole pipeline (stage 1 and stage 2) as pydantic models, loadable from YAML or JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from mner import PROJECT_ROOT
from mner.stage1_config import (  # noqa: F401 (re-exported: mner.config is where the configuration is read from)
    DEFAULT_ENCODER,
    DEFAULT_FUSED_POOLING,
    MODEL_PACKAGE_PREFIX,
    CaptionConfig,
    DistillConfig,
    KnowledgeConfig,
    LlmConfig,
    LoraConfig,
    OcrConfig,
    PromptConfig,
    RetrievalConfig,
    RetrievedKnowledgeConfig,
    RunnerConfig,
    Stage1Config,
    _Strict,
)


def default_artifacts_root() -> Path:
    """``$MNER_ARTIFACTS_ROOT`` when set (the test suite sets its own), else ``artifacts/`` in the project."""
    return Path(os.environ.get("MNER_ARTIFACTS_ROOT") or PROJECT_ROOT / "artifacts").resolve()


SAMPLE_DIR = PROJECT_ROOT / "data/sample"
# the data files of a dataset; a config whose dataset section sets its name or one of these names its own data
DATA_FILES = ("train", "dev", "test", "knowledge_train", "knowledge_dev", "knowledge_test", "captions", "images", "examples",
              "examples_entities")
MIN_ALIGNED_SHARE = 0.99  # the lowest share on the bundled benchmarks is 99.9% (Twitter-2015 dev: 999 of 1000 posts)


def sample_dataset() -> dict[str, object]:
    """The demo sample's ``dataset`` section (``data/sample``): the default of a config that names no dataset."""
    return {"name": "twitter2015-sample", "train": SAMPLE_DIR / "train.txt", "dev": SAMPLE_DIR / "valid.txt",
            "test": SAMPLE_DIR / "test.txt", "knowledge_train": SAMPLE_DIR / "knowledge_train.txt",
            "knowledge_dev": SAMPLE_DIR / "knowledge_valid.txt", "knowledge_test": SAMPLE_DIR / "knowledge_test.txt",
            "captions": SAMPLE_DIR / "blip2_captions.txt", "images": SAMPLE_DIR / "images",
            "examples": SAMPLE_DIR / "manual_examples.txt", "examples_entities": SAMPLE_DIR / "manual_examples_entities.txt"}


def names_own_data(section: object) -> bool:
    """Whether a config's ``dataset`` section names data of its own: it sets ``name`` or a data file to a value.

    A section that only sets settings (``repair_bio``, ``tokenization``, ``min_aligned_share``) or clears files (``null``) keeps the
    demo sample's files; one that names any data gets none of the sample's.
    """
    return isinstance(section, dict) and any(section.get(field) is not None for field in ("name", *DATA_FILES))


class DatasetConfig(_Strict):
    """Where a benchmark's splits and PGIM files live: all of them the demo sample's (a config without a dataset
    section) or all of them the config's own, a file it leaves out being None (no captions, knowledge, examples)."""

    name: str
    train: Path
    dev: Path
    test: Path
    knowledge_train: Path | None = None
    knowledge_dev: Path | None = None
    knowledge_test: Path | None = None
    captions: Path | None = None
    images: Path | None = Field(None, description="folder of <image_id>.jpg files")
    examples: Path | None = Field(None, description="hand-written in-context examples (PGIM's manual_examples.txt)")
    examples_entities: Path | None = None
    repair_bio: bool = Field(True, description="convert BIO to IOB2 (the Twitter files have I-X after O); the count is reported")
    min_aligned_share: float = Field(
        MIN_ALIGNED_SHARE, ge=0.0, le=1.0, description="a knowledge or caption file that lines up with less than this "
        "share of a split's posts fails the run, naming the file and the first posts it misses (a file of other data); "
        "0 turns the check off")
    tokenization: Literal["auto", "twitter2017", "twitter2015", "chars"] = Field(
        "auto", description="how the files split text into tokens, recorded with each model so that `mner tag` and "
        "`mner predict` split raw text alike (docs/tokenization.md); auto: chars for a character-level train split "
        "(MSRA-style), else twitter2015 for a name starting twitter2015, else twitter2017")

    @model_validator(mode="before")
    @classmethod
    def _own_data_is_complete(cls, data: object) -> object:
        if isinstance(data, dict):
            missing = [f"dataset.{field}" for field in ("name", "train", "dev", "test") if data.get(field) is None]
            if missing:
                named = ", ".join(f"{k}={v}" for k, v in data.items() if v is not None and k in ("name", *DATA_FILES))
                raise ValueError(f"the dataset section names data of its own ({named}) but not {', '.join(missing)}: set "
                                 "them (a name and three CoNLL files), or leave the dataset section out for the demo sample")
        return data


class ModelConfig(_Strict):
    """The [T;Z] tagger: encoder, head and input format."""

    encoder: str = Field(DEFAULT_ENCODER, description="HF model id, local path, or offline:all-MiniLM-L6-v2")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="dropout on the encoder's attention weights; None = the encoder's own (0.1 for "
        "MiniLM). Above 0, PyTorch's CPU attention falls back from its fused kernel to the unfused one plus a "
        "[batch, heads, length, length] dropout mask (benchmarks/profile_training.py: about half of a [T;Z] step). "
        "0 with cpu_fp32_attention trained about 1.5x faster here, but cost 0.58 dev F1 on 3 seeds (benchmarks/RESULTS.md), "
        "so the default keeps the encoder's own"
    )
    cpu_fp32_attention: bool = Field(
        False, description="on the CPU, compute the encoder's attention in float32 under bf16 autocast (faster there than "
        "bf16 once attention_dropout is 0, see models/attention.py); other devices are unaffected"
    )
    shape_features: bool = True
    shape_dim: int = Field(32, ge=1)
    max_length: int = Field(256, ge=8, description="sub-tokens of [CLS] T [SEP] Z [SEP]; Z is cut to fit")
    constrained_decoding: bool = True
    lora: LoraConfig | None = Field(None, description="train LoRA adapters instead of the whole encoder; None = full fine-tuning")
    head: Literal["linear", "bilstm_attention"] = Field(
        "linear", description="bilstm_attention: a BiLSTM and word self-attention between the word features and the linear layer"
    )
    lstm_hidden: int = Field(256, ge=2, multiple_of=2, description="BiLSTM output size, both directions together (bilstm_attention)")
    attention_heads: int = Field(4, ge=1, description="self-attention heads (bilstm_attention); must divide lstm_hidden")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "ModelConfig":
        if self.lstm_hidden % self.attention_heads:
            raise ValueError(f"attention_heads={self.attention_heads} does not divide lstm_hidden={self.lstm_hidden}")
        return self


class TrainConfig(_Strict):
    """Optimisation settings (PGIM-style AdamW with two learning rates)."""

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)
    lr_encoder: float = Field(2e-4, gt=0, description="chosen on Twitter-2015 dev for MiniLM")
    lr_head: float = Field(5e-3, gt=0)
    lr_lora: float = Field(1e-3, gt=0, description="learning rate of the LoRA adapters when model.lora is set (lr_encoder is then unused)")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(3, ge=1, description="epochs without dev-F1 gain before stopping")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA and on CPUs with bf16 matrix units"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = Field(0, ge=0, description="torch threads; 0 = all cores (at most OMP_NUM_THREADS when set)")
    bucket_size: int = Field(50, ge=1, description="batches per length-sorted bucket")
    max_train_sentences: int | None = Field(None, ge=1, description="use only the first N (smoke runs)")
    processes: int = Field(0, ge=0, description="training processes (DDP); 0 = one per GPU on CUDA, 1 on the CPU")
    allocator: Literal["auto", "system", "tcmalloc", "jemalloc"] = Field(
        "auto", description="memory allocator of the training process on Linux; auto = tcmalloc where the system has "
        "it (Debian: libtcmalloc-minimal4), else the C library's (benchmarks/RESULTS.md: memory of training)"
    )
    onednn_cache_capacity: int = Field(
        16, ge=1, description="CPU kernels oneDNN keeps for reuse in the training process (ONEDNN_PRIMITIVE_CACHE_CAPACITY, "
        "unless set); oneDNN's default, 1024, holds one kernel with its buffers per batch shape, GiBs over an epoch"
    )
    compile_encoder: bool = Field(
        False, description="torch.compile the encoder for training, with dynamic shapes (one compile of about a minute per "
        "process; a C++ compiler on the CPU); see benchmarks/RESULTS.md, training throughput"
    )


class BackboneConfig(_Strict):
    """The multimodal NER backbone whose fused features H drive MSEA retrieval (``stage1.retrieval.embedder: fused``).

    Training reuses ``train`` for batch size, weight decay, warm-up, clipping, seed, precision and
    device; the two phases and their learning rates are set here.
    """

    encoder: str = Field(DEFAULT_ENCODER, description="text encoder: HF id, local path, or offline:all-MiniLM-L6-v2")
    image_source: Literal["text", "clip"] = Field(
        "text", description="text: caption + OCR through the text encoder (offline default); clip: pixels through CLIP")
    clip_model: str = Field("openai/clip-vit-base-patch32", description="CLIP id or local path (image_source: clip)")
    num_queries: int = Field(8, ge=1, description="visual tokens made by the resampler")
    cross_layers: int = Field(1, ge=1, description="text-to-visual cross-attention blocks")
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    shape_features: bool = True
    shape_dim: int = Field(32, ge=1)
    projection_dim: int = Field(128, ge=8, description="space of the alignment and InfoNCE losses")
    temperature: float = Field(0.07, gt=0)
    align_lambda: float = Field(0.1, ge=0, description="weight of the text-image alignment loss")
    infonce_lambda: float = Field(0.1, ge=0, description="weight of the InfoNCE loss")
    max_length: int = Field(128, ge=8, description="sub-tokens of [CLS] T [SEP]")
    max_image_tokens: int = Field(64, ge=4, description="sub-tokens of the image text (image_source: text)")
    s1_epochs: int = Field(1, ge=0, description="phase S1: encoders frozen")
    s2_epochs: int = Field(3, ge=0, description="phase S2: encoders fine-tuned at lr_encoder")
    lr_head: float = Field(5e-3, gt=0, description="resampler, cross-attention, fusion, heads and CRF, both phases")
    lr_encoder: float = Field(2e-4, gt=0, description="encoders in S2, lower than lr_head (2e-4: the tagger's, chosen on T15 dev)")
    constrained_decoding: bool = True

    @model_validator(mode="after")
    def _some_epochs(self) -> "BackboneConfig":
        if self.s1_epochs + self.s2_epochs < 1:
            raise ValueError("s1_epochs + s2_epochs must be at least 1")
        return self


class PipelineConfig(_Strict):
    """Everything that shapes a result: data, stage 1, model, training, variants."""

    dataset: DatasetConfig = Field(default_factory=lambda: DatasetConfig(**sample_dataset()),
                                   description="the demo sample when the config names no data; else only the config's files")
    stage1: Stage1Config = Stage1Config()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    backbone: BackboneConfig = BackboneConfig()
    variants: tuple[Literal["text", "text+knowledge"], ...] = ("text", "text+knowledge")
    artifacts_root: Path = Field(default_factory=lambda: default_artifacts_root(),
                                 description="the artifact store; default $MNER_ARTIFACTS_ROOT, else artifacts/ in the project")

    @model_validator(mode="before")
    @classmethod
    def _sample_unless_named(cls, data: object) -> object:
        if isinstance(data, dict) and not isinstance(data.get("dataset"), DatasetConfig) and not names_own_data(data.get("dataset")):
            return {**data, "dataset": {**sample_dataset(), **(data.get("dataset") or {})}}
        return data

    @model_validator(mode="after")
    def _knowledge_needs_files(self) -> "PipelineConfig":
        if "text+knowledge" in self.variants and self.stage1.knowledge.backend == "file":
            unset = [f"dataset.knowledge_{split}" for split in ("train", "dev", "test")
                     if getattr(self.dataset, f"knowledge_{split}") is None]
            if unset:
                raise ValueError(
                    f"variant text+knowledge reads knowledge Z, and dataset {self.dataset.name} has none: "
                    f"stage1.knowledge.backend=file reads Z from files, and {', '.join(unset)} "
                    f"{'is' if len(unset) == 1 else 'are'} unset. Fix one of: "
                    "train text-only (variants: [text]); give Z a route, stage1.knowledge.backend: llm (an LLM writes "
                    "Z, stage1.llm) or stage1.knowledge.backend: retrieved with the teacher's train answers "
                    "(stage1.knowledge.retrieved.answers: a JSONL of {id, knowledge}, or dataset.knowledge_train); or "
                    "set dataset.knowledge_train, knowledge_dev and knowledge_test to PGIM-format knowledge files")
        if self.stage1.knowledge.backend == "llm" and self.stage1.prompt.n_examples and self.dataset.examples is None:
            raise ValueError("stage1.prompt.n_examples > 0 needs dataset.examples (and dataset.examples_entities); "
                             "set them, or stage1.prompt.n_examples: 0 for zero-shot prompts")
        s1 = self.stage1
        if s1.distill.enabled:  # the distilled model learns the train split's answers and is asked zero-shot locally
            have = {"knowledge.backend": s1.knowledge.backend, "llm.backend": s1.llm.backend, "prompt.n_examples": s1.prompt.n_examples}
            want = {"knowledge.backend": "llm", "llm.backend": "transformers", "prompt.n_examples": 0}
            wrong = [f"stage1.{name}={have[name]!r} (set it to {value!r})" for name, value in want.items() if have[name] != value]
            if s1.distill.answers is None and self.dataset.knowledge_train is None:
                wrong.append("stage1.distill.answers and dataset.knowledge_train are both unset (set one to the teacher's answers)")
            if wrong:
                raise ValueError("stage1.distill.enabled asks the distilled model zero-shot on this machine; fix " + "; ".join(wrong))
        retrieved = s1.knowledge.retrieved
        if s1.knowledge.backend == "retrieved" and retrieved.answers is None and self.dataset.knowledge_train is None:
            raise ValueError("stage1.knowledge.backend=retrieved needs the teacher's train answers: set "
                             "stage1.knowledge.retrieved.answers or dataset.knowledge_train")
        return self


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
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
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        where = f"{path}: " if path else ""
        raise ValueError(f"{where}invalid config: {describe_errors(err)}") from err


def describe_errors(err: ValidationError) -> str:
    """One line naming every invalid field by its dotted path, e.g. ``train.epochs: ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors())


def _resolve_paths(data: dict, base: Path) -> dict:
    dataset = data.get("dataset")
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            if isinstance(value, str) and key not in ("name",) and not Path(value).is_absolute():
                dataset[key] = str((base / value).resolve())
    root = data.get("artifacts_root")
    if isinstance(root, str) and not Path(root).is_absolute():
        data["artifacts_root"] = str((base / root).resolve())
    stage1 = data.get("stage1") if isinstance(data.get("stage1"), dict) else {}
    knowledge = stage1.get("knowledge") if isinstance(stage1.get("knowledge"), dict) else {}
    for section, key in (("prompt", "template_dir"), ("llm", "local_model"), ("distill", "base_model"), ("distill", "answers"),
                         ("distill", "chat_template"), ("retrieved", "answers")):
        node = knowledge.get(section) if section == "retrieved" else stage1.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and not value.startswith(MODEL_PACKAGE_PREFIX) and not Path(value).is_absolute():
            node[key] = str((base / node[key]).resolve())
    return data


def _set_dotted(data: dict, dotted: str, value: object) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def resolve_config(
    config: PipelineConfig | dict | None = None, config_file: str | Path | None = None, overrides: dict | None = None
) -> PipelineConfig:
    """The run's config from a model or mapping, or else a file, with dotted ``overrides`` applied.

    Raises ``ValueError`` naming the field when the result is invalid.
    """
    if config is not None and config_file is not None:
        raise ValueError("give either config or config_file, not both")
    if config is None:
        return load_config(config_file, overrides)
    data = config.model_dump(mode="json") if isinstance(config, PipelineConfig) else dict(config)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"invalid config: {describe_errors(err)}") from err
