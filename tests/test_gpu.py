"""The CUDA branches (marker ``gpu``): bf16 autocast and SDPA in the tagger's training step, training
jobs, the tiny random-weight BLIP-2 and CLIP models, the text embedder, and two-process DDP over NCCL.

Every test here skips, with the reason, where torch sees no GPU (DDP also where it sees fewer than
two). ``bash benchmarks/gpu_check.sh`` runs them on a GPU machine and records each outcome.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mner.samples import Sample
from tests.conftest import SAMPLE
from tests.test_backbone import LABELS, sample_posts, tiny_clip  # noqa: F401  (tiny_clip is a fixture)
from tests.test_caption import _image, tiny_blip2  # noqa: F401  (tiny_blip2 is a fixture)
from tests.test_ddp import _joined_rows

CUDA = torch.cuda.is_available()
NO_CUDA = f"needs CUDA: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no GPU"
GPUS = torch.cuda.device_count() if CUDA else 0
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason=NO_CUDA)]
needs_bf16 = pytest.mark.skipif(CUDA and not torch.cuda.is_bf16_supported(), reason="this GPU has no bf16 support")
KNOWLEDGE = "Barack Obama is a former president of the United States. Paris is the capital of France."


def _sentences(split: str, limit: int) -> list:
    from mner.formats import read_conll

    return read_conll(SAMPLE / f"{split}.txt", repair=True).sentences[:limit]


def _batch(tokenizer, max_length: int, limit: int):
    """A labelled [T;Z] batch of the first ``limit`` sample sentences (on the CPU)."""
    from models.encoding import SentenceEncoder, collate

    encoder = SentenceEncoder(tokenizer, max_length, {label: i for i, label in enumerate(LABELS)})
    encoded = [encoder.encode(s.tokens, s.tags, KNOWLEDGE) for s in _sentences("train", limit)]
    return collate(encoded, tokenizer.pad_token_id or 0)


def test_runtime_resolves_to_the_gpu_with_bf16() -> None:
    from engine.launcher import training_processes
    from engine.runtime import prepare_runtime
    from mner.config import TrainConfig

    _, device, bf16 = prepare_runtime(TrainConfig(num_threads=1))
    assert device.type == "cuda" and bf16 == torch.cuda.is_bf16_supported()
    assert prepare_runtime(TrainConfig(num_threads=1, device="cpu"))[1].type == "cpu"
    assert training_processes(TrainConfig()) == GPUS
    assert training_processes(TrainConfig(device="cpu")) == 1


@needs_bf16
def test_tagger_step_runs_bf16_through_fused_sdpa_kernels(minilm_path: str) -> None:
    """One [T;Z] training step of the offline MiniLM tagger on the GPU, with the math SDPA fallback disabled."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from engine.taggers import build_tagger
    from mner.config import ModelConfig

    torch.manual_seed(0)
    tagger, tokenizer = build_tagger(ModelConfig(max_length=128), LABELS)
    assert tagger.encoder.config._attn_implementation == "sdpa"
    batch = _batch(tokenizer, 128, 8)
    with torch.no_grad():
        cpu_loss = copy.deepcopy(tagger).eval()(batch).item()
    gpu_batch = batch.to("cuda")
    tagger.to("cuda").eval()
    query = next(m for m in tagger.encoder.modules() if isinstance(m, torch.nn.Linear))  # layer 0's query
    dtypes: list[torch.dtype] = []
    hook = query.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            eval_loss = tagger(gpu_batch).item()
        tagger.train()
        before = {n: p.detach().clone() for n, p in tagger.named_parameters()}
        optimizer = torch.optim.AdamW(tagger.parameters(), lr=1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = tagger(gpu_batch)
        loss.backward()
        optimizer.step()
    hook.remove()
    assert dtypes == [torch.bfloat16, torch.bfloat16]  # the encoder's matrix products ran in bf16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # emissions and CRF in float32
    assert abs(eval_loss - cpu_loss) <= 0.05 * abs(cpu_loss) + 0.05, (eval_loss, cpu_loss)
    grads = {n: p.grad for n, p in tagger.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert {n for n, _ in tagger.named_parameters() if not n.startswith("encoder.")} <= set(grads)
    changed = [n for n, p in tagger.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any(n.startswith("encoder.") for n in changed) and "crf.transitions" in changed


@needs_bf16
def test_bilstm_attention_head_trains_under_bf16_autocast(minilm_path: str) -> None:
    """The head's LSTM leaves autocast (no bf16 cuDNN LSTM everywhere); the step must still run and stay finite."""
    from engine.taggers import build_tagger
    from mner.config import ModelConfig

    torch.manual_seed(0)
    tagger, tokenizer = build_tagger(ModelConfig(max_length=96, head="bilstm_attention"), LABELS)
    tagger.to("cuda").train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = tagger(_batch(tokenizer, 96, 6).to("cuda"))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in tagger.head.parameters() if p.grad is not None)
    assert any(p.grad is not None for p in tagger.head.parameters())


def _run_job(tmp_path: Path, n_train: int, n_dev: int, processes: int, **train: Any) -> tuple[list[str], dict]:
    """The train stage's job on the first demo sentences, in ``tmp_path/model``; returns its log lines and result."""
    from engine.launcher import run_training_job
    from mner.config import ModelConfig, TrainConfig
    from mner.samples import write_jsonl

    write_jsonl(tmp_path / "train.jsonl", _joined_rows(SAMPLE / "train.txt", n_train))
    write_jsonl(tmp_path / "dev.jsonl", _joined_rows(SAMPLE / "valid.txt", n_dev))
    config = TrainConfig(processes=processes, **train)
    job = {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "dev.jsonl"), "labels": LABELS,
           "model": ModelConfig(max_length=64).model_dump(mode="json"), "train": config.model_dump(mode="json"),
           "use_knowledge": False, "processes": processes}
    work = tmp_path / "model"
    work.mkdir()
    lines: list[str] = []
    result = run_training_job(job, work, lines.append)
    return lines, result


@needs_bf16
def test_training_job_on_the_gpu_reports_peak_memory_and_predicts_there(tmp_path: Path) -> None:
    """The train stage's child process on CUDA (precision auto = bf16), then the saved tagger on the GPU."""
    from engine.taggers import load_tagger, predict

    work = tmp_path / "model"
    lines, result = _run_job(tmp_path, 32, 12, processes=1, epochs=2, batch_size=8, num_threads=2)
    assert any("device=cuda" in line and "bf16=True" in line for line in lines), lines[:3]
    assert result["epochs_run"] == 2 and result["peak_gpu_memory_mib"] > 0
    assert json.loads((work / "history.json").read_text())["peak_gpu_memory_mib"] == result["peak_gpu_memory_mib"]

    tagger, encoder = load_tagger(work, "cuda")
    assert all(p.device.type == "cuda" for p in tagger.parameters())
    sentences = _sentences("test", 10)
    tags = predict(tagger, [encoder.encode(s.tokens) for s in sentences], torch.device("cuda"), True)
    assert [len(t) for t in tags] == [len(s.tokens) for s in sentences]


DDP_SKIP = NO_CUDA if not CUDA else f"two-process DDP over NCCL needs 2 GPUs; torch sees {GPUS}"


@pytest.mark.skipif(GPUS < 2, reason=DDP_SKIP)
def test_two_nccl_ranks_train_one_step_and_agree(tmp_path: Path) -> None:
    lines, result = _run_job(tmp_path, 8, 4, processes=2, epochs=1, batch_size=2, num_threads=1)
    assert any("backend=nccl world=2" in line for line in lines), lines[:5]
    assert any("device=cuda:0" in line and "rank=0/2" in line for line in lines), lines[:5]
    digests = result["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], digests


def test_blip2_captions_on_the_gpu_in_bf16_and_fp16(tiny_blip2: str, tmp_path: Path) -> None:
    from engine.captioners import caption_rows, load_blip2, make_captioner

    sources = {colour: _image(tmp_path / f"{colour}.jpg", colour) for colour in ("red", "green", "blue")}
    rows = [Sample(key, [], image_id=key) for key in sources]
    results, _, info = caption_rows(rows, sources, "blip2", tiny_blip2, batch_size=2, max_new_tokens=4, dtype="auto")
    assert info == {"device": "cuda", "dtype": "bfloat16" if torch.cuda.is_bf16_supported() else "float16"}
    assert all(r["error"] is None and isinstance(r["caption"], str) for r in results)
    captioner, info = make_captioner("blip2", tiny_blip2, "fp16", 4)
    assert info == {"device": "cuda", "dtype": "float16"}
    network, _ = load_blip2(tiny_blip2, "cuda", "float16")
    assert {(p.device.type, p.dtype) for p in network.parameters()} == {("cuda", torch.float16)}
    assert len(captioner([Image.new("RGB", (40, 30), "red")] * 3)) == 3


@needs_bf16
def test_clip_backbone_trains_on_the_gpu_and_embeds_like_the_cpu(tiny_clip: str, tmp_path: Path) -> None:
    from engine.backbone_training import embed_posts, load_backbone, predict_posts, train_backbone
    from mner.config import BackboneConfig, TrainConfig

    cfg = BackboneConfig(image_source="clip", clip_model=tiny_clip, s1_epochs=1, s2_epochs=1, max_length=64)
    lines: list[str] = []
    train_backbone(sample_posts("train", 12), sample_posts("valid", 6), LABELS, cfg,
                   TrainConfig(batch_size=4, num_threads=2, device="cuda"), tmp_path / "model", lines.append)
    assert any("device=cuda" in line and "bf16=True" in line for line in lines), lines[:3]

    model, encoder = load_backbone(tmp_path / "model", "cuda")
    assert model.image_encoder.config._attn_implementation == "sdpa"
    queries = sample_posts("test", 5)
    cuda = torch.device("cuda")
    tags = predict_posts(model, encoder, [encoder.encode(p) for p in queries], cuda, True)
    assert [len(t) for t in tags] == [len(p.tokens) for p in queries]
    on_gpu = embed_posts(model, encoder, queries, cuda)
    cpu_model, _ = load_backbone(tmp_path / "model", "cpu")
    on_cpu = embed_posts(cpu_model, encoder, queries, torch.device("cpu"))
    assert ((on_gpu * on_cpu).sum(axis=1) > 0.999).all(), (on_gpu * on_cpu).sum(axis=1)


def test_text_embedder_on_the_gpu_matches_the_cpu(minilm_path: str) -> None:
    from engine.retrieval import EmbedderOptions, make_embedder

    items = _sentences("valid", 12)
    gpu = make_embedder("text", EmbedderOptions(device="cuda"))
    assert gpu.model.device.type == "cuda" and gpu.model.config._attn_implementation == "sdpa"
    on_gpu = gpu.embed(items)
    on_cpu = make_embedder("text", EmbedderOptions(device="cpu")).embed(items)
    assert on_gpu.shape == on_cpu.shape == (12, 384)
    assert (np.sum(on_gpu * on_cpu, axis=1) > 0.999).all()
