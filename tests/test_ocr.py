"""OCR stage: real RapidOCR (and tesseract when installed) on rendered images, bad images, missing extras."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from mner.samples import Sample
from tests.conftest import PROJECT, SAMPLE
from tests.stage_checks import run_id

BAD = PROJECT / "tests" / "resources" / "images"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def render(path: Path, lines: list[str], size: tuple[int, int] = (640, 240)) -> Path:
    """Black text lines on white, as a PNG or JPEG by suffix."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(FONT), 44) if FONT.is_file() else ImageFont.load_default(size=44)
    for i, text in enumerate(lines):
        draw.text((30, 30 + 90 * i), text, font=face, fill="black")
    image.save(path)
    return path


def test_rapidocr_reads_rendered_words(tmp_path: Path) -> None:
    from engine.image_io import load_image
    from engine.ocr import read_rapidocr

    path = render(tmp_path / "sign.png", ["Tower Bridge", "Larkin Square"])
    lines = read_rapidocr(load_image(path), 0.5)
    assert [line["text"] for line in lines] == ["Tower Bridge", "Larkin Square"]
    for line in lines:
        assert len(line["box"]) == 4 and all(len(point) == 2 for point in line["box"])
        assert 0.5 <= line["score"] <= 1.0
    first, second = (line["box"] for line in lines)
    assert first[0][1] < second[0][1]  # top-left corner first; the first line is above the second


def test_ocr_rows_blank_image_bad_images_and_order(tmp_path: Path) -> None:
    from engine.ocr import ocr_rows

    good = render(tmp_path / "good.jpg", ["Madison St"])
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (320, 200), "white").save(blank)
    sources = {
        "good": str(good), "blank": str(blank), "missing": str(tmp_path / "absent.jpg"),
        "empty": str(BAD / "empty.jpg"), "trunc_jpg": str(BAD / "truncated.jpg"),
        "trunc_png": str(BAD / "truncated.png"), "text": str(BAD / "not_an_image.jpg"),
    }
    rows = [Sample(key, [], image_id=key) for key in sources] + [
        Sample("nophoto", [], image_id=None), Sample("nosource", [], image_id="42")]
    results, items = ocr_rows(rows, sources, "rapidocr", 0.5)

    assert [r["id"] for r in results] == [r.id for r in rows]
    by_id = {r["id"]: r for r in results}
    assert by_id["good"]["text"] == "Madison St" and by_id["good"]["error"] is None
    assert by_id["blank"] == {"id": "blank", "lines": [], "text": "", "error": None}
    expected = {"missing": "missing", "empty": "empty", "trunc_jpg": "corrupt", "trunc_png": "corrupt",
                "text": "not_image", "nophoto": "no_image", "nosource": "no_source"}
    for row_id, kind in expected.items():
        assert by_id[row_id]["error"]["kind"] == kind, by_id[row_id]
        assert by_id[row_id]["lines"] is None and by_id[row_id]["text"] is None
    assert str(BAD / "truncated.jpg") in by_id["trunc_jpg"]["error"]["reason"]
    assert "0 bytes" in by_id["empty"]["error"]["reason"]
    assert "not an image" in by_id["text"]["error"]["reason"]

    from engine.image_io import summarise

    summary = summarise("dev", 0, len(rows), items)
    assert summary["rows"] == 9 and summary["ok"] == 2 and summary["failed"] == 7
    assert summary["failed_by_kind"] == {"corrupt": 2, "empty": 1, "missing": 1, "no_image": 1, "no_source": 1,
                                         "not_image": 1}
    failure = next(f for f in summary["failures"] if f["id"] == "missing")
    assert failure["path"] == sources["missing"] and "not found" in failure["reason"]


def test_bad_arguments_raise() -> None:
    from engine.ocr import ocr_rows

    with pytest.raises(ValueError, match="unknown ocr backend 'easyocr'"):
        ocr_rows([], {}, "easyocr", 0.5)
    with pytest.raises(ValueError, match="min_score"):
        ocr_rows([], {}, "rapidocr", 1.5)


def _has_tesseract() -> bool:
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return shutil.which("tesseract") is not None


@pytest.mark.skipif(not _has_tesseract(), reason="tesseract-ocr (apt) or pytesseract (pip) not installed")
def test_tesseract_reads_rendered_words(tmp_path: Path) -> None:
    from engine.image_io import load_image
    from engine.ocr import read_tesseract

    lines = read_tesseract(load_image(render(tmp_path / "sign.png", ["Tower Bridge", "Palm Springs"])), 0.3)
    assert [line["text"] for line in lines] == ["Tower Bridge", "Palm Springs"]
    assert all(len(line["box"]) == 4 and 0.3 <= line["score"] <= 1.0 for line in lines)


@pytest.mark.skipif(not _has_tesseract(), reason="pytesseract (pip) not installed")
def test_tesseract_missing_program_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    from engine.image_io import BackendUnavailable
    from engine.ocr import get_reader, tesseract_module

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    tesseract_module.cache_clear()
    try:
        with pytest.raises(BackendUnavailable, match="apt-get install -y tesseract-ocr"):
            get_reader("tesseract")
    finally:
        tesseract_module.cache_clear()


def test_modelscope_missing_extra_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.image_io import BackendUnavailable
    from engine.ocr import modelscope_pipelines, ocr_rows

    # hide modelscope even where it is installed: the message is what this test checks
    for name in ("modelscope", "modelscope.pipelines", "modelscope.utils.constant"):
        monkeypatch.setitem(sys.modules, name, None)
    modelscope_pipelines.cache_clear()
    with pytest.raises(BackendUnavailable, match=r"pip install 'mner\[modelscope\]'"):
        ocr_rows([Sample("1", [], image_id="1")], {"1": str(BAD / "empty.jpg")}, "modelscope", 0.5)
    modelscope_pipelines.cache_clear()


@pytest.mark.slow
def test_ocr_shard_stage_on_sample(prefect_harness, tmp_path: Path) -> None:
    """The stage on the sample's dev split: 4 demo images read, the other 46 rows reported missing."""
    from engine.image_io import image_sources
    from mner.samples import read_jsonl, read_shard_samples
    from tasks.common import run_stage
    from tasks.data import load_splits
    from tasks.ocr import ocr_shard

    root = str(tmp_path / "artifacts")
    splits = {"train": str(SAMPLE / "train.txt"), "dev": str(SAMPLE / "valid.txt"), "test": str(SAMPLE / "test.txt")}
    data = run_stage(load_splits, sources=splits, repair_bio=True, artifacts_root=root)
    sources = image_sources(read_shard_samples(data, "dev", 0, 50), SAMPLE / "images")
    params = dict(data=data, split="dev", start=0, stop=50, sources=sources, backend="rapidocr", min_score=0.5,
                  artifacts_root=root)
    output = run_stage(ocr_shard, **params)

    rows = read_jsonl(Path(output["dir"]) / "results.jsonl")
    expected_ids = [r["id"] for r in read_jsonl(Path(data["dir"]) / "dev.jsonl")]
    assert [r["id"] for r in rows] == expected_ids
    by_id = {r["id"]: r for r in rows}
    assert by_id["1494239"]["text"] == "Tokyo, Japan"
    assert by_id["123765"]["text"] == "Larkin Square"
    assert by_id["143256"]["text"] == "#7 in Canada WILD"
    assert by_id["1291775"] == {"id": "1291775", "lines": [], "text": "", "error": None}

    manifest = json.loads((Path(output["dir"]) / "manifest.json").read_text())
    assert manifest["rows"] == 50 and manifest["ok"] == 4
    assert manifest["failed_by_kind"] == {"missing": 46}
    assert len(manifest["failures"]) == 46 and all(f["path"].endswith(".jpg") for f in manifest["failures"])
    assert manifest["inputs"]["sources.1494239"] != "missing" and manifest["inputs"]["sources.32977"] == "missing"

    # unchanged inputs: the stored output is returned as published, not computed again
    assert run_stage(ocr_shard, **params) == output and run_id(output) == manifest["run_id"]
