"""OCR engines for stage 1, item 2: the text written in each tweet image.

Backends (each engine is built once per process and reused):

- ``rapidocr`` (default): RapidOCR's PP-OCR ONNX models, shipped inside the ``rapidocr`` wheel;
- ``tesseract``: the Debian ``tesseract-ocr`` program through ``pytesseract`` (words grouped into lines);
- ``modelscope``: ModelScope's line detection + recognition pipelines (optional extra ``mner[modelscope]``).

Each line is ``{"text", "box", "score"}``: ``box`` is always 4 corner points ``[[x, y], ...]`` in
pixels, clockwise from top-left (tesseract's rectangles are converted); ``score`` is in [0, 1]
(null where the backend gives none: modelscope). Lines scoring under ``min_score`` are left out.
"""

from __future__ import annotations

import functools
import importlib
import threading
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from engine.image_io import BACKEND, BackendUnavailable, BadImage, ShardItem, load_image, shard_items
from mner.samples import Sample

BACKENDS = ("rapidocr", "tesseract", "modelscope")
MODELSCOPE_DETECTION = "damo/cv_resnet18_ocr-detection-line-level_damo"
MODELSCOPE_RECOGNITION = "damo/cv_convnextTiny_ocr-recognition-general_damo"

Line = dict[str, Any]
Reader = Callable[[Image.Image, float], list[Line]]
_INIT_LOCK = threading.Lock()  # shards on a thread runner share one engine


def _points(box: Any) -> list[list[float]]:
    """A box given as 4 (x, y) points, as JSON lists of rounded floats."""
    return [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box, dtype=float).reshape(4, 2)]


def rect_points(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """The 4 corners (clockwise from top-left) of the rectangle ``[x0, y0, x1, y1]``."""
    return _points([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


@functools.lru_cache(maxsize=1)
def rapidocr_engine() -> Any:
    """The process-wide RapidOCR engine (models from the wheel, no download)."""
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise BackendUnavailable(f"ocr backend 'rapidocr' needs: pip install rapidocr==3.10.0 onnxruntime==1.31.1 ({exc})") from None
    return RapidOCR(params={"Global.log_level": "error"})


def read_rapidocr(image: Image.Image, min_score: float) -> list[Line]:
    """OCR lines of one image with RapidOCR."""
    result = rapidocr_engine()(image, text_score=min_score)
    if result.txts is None or result.boxes is None:
        return []
    return [
        {"text": str(text), "box": _points(box), "score": round(float(score), 4)}
        for text, box, score in zip(result.txts, result.boxes, result.scores)
        if float(score) >= min_score and str(text).strip()
    ]


@functools.lru_cache(maxsize=1)
def tesseract_module() -> Any:
    """``pytesseract``, checked to find the ``tesseract`` program; a clear error when either is missing."""
    try:
        pytesseract = importlib.import_module("pytesseract")
    except ImportError:
        raise BackendUnavailable("ocr backend 'tesseract' needs pytesseract: pip install pytesseract==0.3.13") from None
    try:
        pytesseract.get_tesseract_version()
    except pytesseract.TesseractNotFoundError:
        raise BackendUnavailable(
            "ocr backend 'tesseract' needs the tesseract program: apt-get install -y tesseract-ocr"
        ) from None
    return pytesseract


def read_tesseract(image: Image.Image, min_score: float) -> list[Line]:
    """OCR lines of one image with tesseract: its words grouped by (block, paragraph, line)."""
    pytesseract = tesseract_module()
    data = pytesseract.image_to_data(image, lang="eng", output_type=pytesseract.Output.DICT)
    grouped: dict[tuple[int, int, int, int], list[int]] = {}
    for i, word in enumerate(data["text"]):
        if float(data["conf"][i]) >= 0 and str(word).strip():
            key = (data["page_num"][i], data["block_num"][i], data["par_num"][i], data["line_num"][i])
            grouped.setdefault(key, []).append(i)
    lines = []
    for _key, words in sorted(grouped.items()):
        score = sum(float(data["conf"][i]) for i in words) / len(words) / 100.0
        if score < min_score:
            continue
        x0 = min(data["left"][i] for i in words)
        y0 = min(data["top"][i] for i in words)
        x1 = max(data["left"][i] + data["width"][i] for i in words)
        y1 = max(data["top"][i] + data["height"][i] for i in words)
        text = " ".join(str(data["text"][i]).strip() for i in words)
        lines.append({"text": text, "box": rect_points(x0, y0, x1, y1), "score": round(score, 4)})
    return lines


@functools.lru_cache(maxsize=1)
def modelscope_pipelines() -> tuple[Any, Any]:
    """ModelScope's (detection, recognition) OCR pipelines, built once per process."""
    try:
        pipelines = importlib.import_module("modelscope.pipelines")
        constant = importlib.import_module("modelscope.utils.constant")
    except ImportError as exc:
        raise BackendUnavailable(
            f"ocr backend 'modelscope' needs the optional extra: pip install 'mner[modelscope]' ({exc})"
        ) from None
    detect = pipelines.pipeline(constant.Tasks.ocr_detection, model=MODELSCOPE_DETECTION)
    recognise = pipelines.pipeline(constant.Tasks.ocr_recognition, model=MODELSCOPE_RECOGNITION)
    return detect, recognise


def read_modelscope(image: Image.Image, min_score: float) -> list[Line]:
    """OCR lines of one image with ModelScope (it gives no score: ``score`` is null, never filtered)."""
    detect, recognise = modelscope_pipelines()
    pixels = np.asarray(image)
    lines = []
    for polygon in detect(pixels)["polygons"]:
        box = np.asarray(polygon, dtype=float).reshape(4, 2)
        x0, y0 = np.floor(box.min(axis=0)).astype(int)
        x1, y1 = np.ceil(box.max(axis=0)).astype(int)
        crop = pixels[max(y0, 0):y1, max(x0, 0):x1]
        if crop.size == 0:
            continue
        text = recognise(crop)["text"]
        text = " ".join(text) if isinstance(text, (list, tuple)) else str(text)
        if text.strip():
            lines.append({"text": text.strip(), "box": _points(box), "score": None})
    return lines


def get_reader(backend: str) -> Reader:
    """The line reader of an OCR backend, its engine initialised now (a missing package fails here)."""
    readers = {
        "rapidocr": (rapidocr_engine, read_rapidocr),
        "tesseract": (tesseract_module, read_tesseract),
        "modelscope": (modelscope_pipelines, read_modelscope),
    }
    if backend in readers:
        init, reader = readers[backend]
        with _INIT_LOCK:
            init()
        return reader
    raise ValueError(f"unknown ocr backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def ocr_rows(
    samples: Sequence[Sample], sources: dict[str, str], backend: str, min_score: float
) -> tuple[list[dict[str, Any]], list[ShardItem]]:
    """OCR a shard's samples: ``{"id", "lines", "text", "error"}`` per sample, in order (lines/text null on error)."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"ocr min_score must be in [0, 1], got {min_score}")
    reader = get_reader(backend)
    items = shard_items(samples, sources)
    results = []
    for item in items:
        lines: list[Line] | None = None
        if item.error is None:
            try:
                lines = reader(load_image(item.path or ""), min_score)
            except BadImage as bad:
                item.error = bad.error()
            except BackendUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded per sample, never dropped
                item.error = {"reason": f"ocr failed: {type(exc).__name__}: {exc}", "kind": BACKEND}
        text = None if lines is None else " ".join(line["text"] for line in lines)
        results.append({"id": item.id, "lines": lines, "text": text, "error": item.error})
    return results, items
