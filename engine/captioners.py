"""Captioners for stage 1, item 1: a caption per tweet image (PGIM's captions file, BLIP-2 through transformers, or LAVIS).

Backends:

- ``file``: PGIM's ``<id>.jpg :caption`` file (``sources["captions"]``), looked up by image id;
- ``blip2``: ``Blip2ForConditionalGeneration`` + ``AutoProcessor`` from ``model`` (hub id or local
  directory); batched generation; on CUDA in ``dtype`` (float16/bfloat16, "auto" picks bfloat16
  where supported), on CPU always float32; loaded once per process;
- ``lavis``: Salesforce LAVIS (optional extra ``mner[lavis]``), ``model`` is ``"<name>:<type>"``,
  e.g. ``"blip2_opt:caption_coco_opt2.7b"``.

For the image backends ``sources`` maps row id -> image path, so each image's bytes enter the
stage key; every image is validated with PIL first (see :mod:`engine.image_io`).
"""

from __future__ import annotations

import functools
import importlib
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

import mner.pgim
from engine.image_io import BACKEND, NO_IMAGE, BackendUnavailable, BadImage, ShardItem, load_image, shard_items
from mner.samples import Sample

BACKENDS = ("file", "blip2", "lavis")
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
NO_CAPTION = "no_caption"
DEFAULT_MODEL = "Salesforce/blip2-opt-2.7b"

Captioner = Callable[[list[Image.Image]], list[str]]
_LOAD_LOCK = threading.Lock()  # shards on a thread runner share one loaded model


def resolve_dtype(dtype: str, device: str) -> str:
    """The torch dtype name to run in: float32 on CPU; on CUDA ``dtype`` ("auto": bfloat16 if supported).

    ``dtype`` is "auto" or a torch name (float32, float16, bfloat16) or its short form (fp32, fp16, bf16).
    """
    if dtype not in DTYPES:
        raise ValueError(f"caption dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if device != "cuda":
        return "float32"
    if DTYPES[dtype] == "auto":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return DTYPES[dtype]


@functools.lru_cache(maxsize=2)
def load_blip2(model: str, device: str, dtype: str) -> tuple[Any, Any]:
    """Load (and cache per process) a BLIP-2 model and its processor from a hub id or a local directory."""
    import torch
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model)
    network = Blip2ForConditionalGeneration.from_pretrained(model, dtype=getattr(torch, dtype))
    network.to(device).eval()
    return network, processor


def blip2_captioner(model: str, dtype: str, max_new_tokens: int) -> tuple[Captioner, dict[str, str]]:
    """A function captioning a batch of PIL images with BLIP-2, and the device/dtype it runs in."""
    import torch

    from engine.runtime import pick_device

    device = pick_device("auto").type
    run_dtype = resolve_dtype(dtype, device)
    with _LOAD_LOCK:
        network, processor = load_blip2(model, device, run_dtype)

    def caption(images: list[Image.Image]) -> list[str]:
        inputs = processor(images=images, return_tensors="pt").to(device)
        pixel_values = inputs["pixel_values"].to(getattr(torch, run_dtype))
        with torch.inference_mode():
            output = network.generate(pixel_values=pixel_values, max_new_tokens=max_new_tokens)
        return [text.strip() for text in processor.batch_decode(output, skip_special_tokens=True)]

    return caption, {"device": device, "dtype": run_dtype}


def lavis_captioner(model: str, max_new_tokens: int) -> tuple[Captioner, dict[str, str]]:
    """A function captioning a batch of PIL images with a LAVIS model named ``"<name>:<type>"``."""
    try:
        lavis_models = importlib.import_module("lavis.models")
    except ImportError as exc:
        raise BackendUnavailable(
            f"caption backend 'lavis' needs the optional extra: pip install 'mner[lavis]' ({exc})"
        ) from None
    import torch

    name, sep, model_type = model.partition(":")
    if not sep or not name or not model_type:
        raise ValueError(f"lavis caption model {model!r} must be '<name>:<type>', e.g. 'blip2_opt:caption_coco_opt2.7b'")
    from engine.runtime import pick_device

    device = pick_device("auto").type
    network, vis_processors, _ = lavis_models.load_model_and_preprocess(
        name=name, model_type=model_type, is_eval=True, device=device
    )

    def caption(images: list[Image.Image]) -> list[str]:
        batch = torch.stack([vis_processors["eval"](image) for image in images]).to(device)
        with torch.inference_mode():
            return [str(text).strip() for text in network.generate({"image": batch}, max_length=max_new_tokens)]

    return caption, {"device": device, "dtype": "float32"}


def caption_images(
    items: list[ShardItem], captioner: Captioner, batch_size: int
) -> dict[str, str]:
    """Caption every item without an error, ``batch_size`` images at a time; failures go into the items.

    A batch whose generation fails is retried image by image, so one bad sample costs only itself.
    """
    if batch_size < 1:
        raise ValueError(f"caption batch_size must be >= 1, got {batch_size}")
    captions: dict[str, str] = {}
    ready: list[tuple[ShardItem, Image.Image]] = []
    for item in items:
        if item.error is None:
            try:
                ready.append((item, load_image(item.path or "")))
            except BadImage as bad:
                item.error = bad.error()
    for first in range(0, len(ready), batch_size):
        batch = ready[first:first + batch_size]
        try:
            texts = captioner([image for _, image in batch])
            if len(texts) != len(batch):
                raise RuntimeError(f"captioner returned {len(texts)} captions for {len(batch)} images")
        except BackendUnavailable:
            raise
        except Exception:  # noqa: BLE001 - isolate the failing image(s) below
            texts = []
            for item, image in batch:
                try:
                    texts.append(captioner([image])[0])
                except BackendUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded per sample, never dropped
                    item.error = {"reason": f"captioning failed: {type(exc).__name__}: {exc}", "kind": BACKEND}
                    texts.append("")
        for (item, _), text in zip(batch, texts):
            if item.error is None:
                captions[item.id] = text
    return captions


def captions_from_file(items: list[ShardItem], captions_path: str | None) -> dict[str, str]:
    """Look each item's image id up in a PGIM captions file; an absent caption is a per-sample error."""
    if not captions_path:
        raise ValueError("caption backend 'file' needs sources['captions'] (the PGIM '<id>.jpg :caption' file)")
    if not Path(captions_path).is_file():
        raise FileNotFoundError(f"caption backend 'file': captions file not found: {captions_path}")
    table = mner.pgim.read_captions(captions_path)
    captions: dict[str, str] = {}
    for item in items:
        if not item.image_id:
            item.error = {"reason": f"tweet {item.id} has no image (image_id is null)", "kind": NO_IMAGE}
        elif item.image_id in table:
            captions[item.id] = table[item.image_id]
        else:
            item.error = {"reason": f"no caption for {item.image_id}.jpg in {captions_path}", "kind": NO_CAPTION}
    return captions


def make_captioner(backend: str, model: str, dtype: str, max_new_tokens: int) -> tuple[Captioner, dict[str, str]]:
    """The captioning function of an image backend (``blip2`` or ``lavis``) and where it runs."""
    if max_new_tokens < 1:
        raise ValueError(f"caption max_new_tokens must be >= 1, got {max_new_tokens}")
    if backend == "blip2":
        return blip2_captioner(model, dtype, max_new_tokens)
    if backend == "lavis":
        return lavis_captioner(model, max_new_tokens)
    raise ValueError(f"unknown caption backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def caption_rows(
    samples: Sequence[Sample], sources: dict[str, str], backend: str, model: str,
    batch_size: int, max_new_tokens: int, dtype: str,
) -> tuple[list[dict[str, Any]], list[ShardItem], dict[str, str]]:
    """Caption a shard's samples: ``({"id", "caption", "error"}`` per sample in order, the items, run info)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown caption backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "file":
        items = [ShardItem(str(s.id), s.image_id, sources.get("captions")) for s in samples]
        captions = captions_from_file(items, sources.get("captions"))
        info = {"file": str(sources.get("captions"))}
    else:
        items = shard_items(samples, sources)
        captioner, info = make_captioner(backend, model, dtype, max_new_tokens)
        captions = caption_images(items, captioner, batch_size)
    results = [{"id": item.id, "caption": captions.get(item.id), "error": item.error} for item in items]
    return results, items, info
