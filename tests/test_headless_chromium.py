"""Headless Chromium over the DevTools protocol on a local page: images whole, cut short or broken, and a screenshot
cut at a text."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from mner.headless_chromium import chromium_path, open_page
from tests.conftest import needs_installed


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@needs_installed("chromium")
def test_a_page_tells_a_whole_png_from_one_cut_short_or_broken_and_is_cut_above_a_text(tmp_path: Path) -> None:
    page_file = tmp_path / "page.html"
    whole = _png(30, 20)
    cut_short = base64.b64encode(base64.b64decode(whole)[:60]).decode("ascii")  # the header and part of the pixels
    page_file.write_text(f'<html><body style="margin:0"><img alt="good" src="data:image/png;base64,{whole}">'
                         '<div style="height:200px"></div><p style="margin:0">Files below</p>'
                         f'<img alt="cut" src="data:image/png;base64,{cut_short}">'
                         '<img alt="broken" src="data:image/png;base64,AAAA"></body></html>', encoding="utf-8")
    with open_page(page_file.as_uri(), 640, 480) as page:
        images = page.png_images(3, timeout=30)
        top = page.top_of_text("Files below")
        page.screenshot(tmp_path / "shot.png", top)
        assert page.top_of_text("no such text") is None
    good, cut, broken = images
    assert good == {"alt": "good", "complete": True, "width": 30, "height": 20, "opaque": 1}
    assert cut["width"] == 30 and cut["height"] == 20 and cut["opaque"] < 1, cut  # sized by its header, not all drawn
    assert broken == {"alt": "broken", "complete": True, "width": 0, "height": 0, "opaque": 0}
    assert 220 <= top <= 230  # below the 20-pixel image and the 200-pixel block
    assert Image.open(tmp_path / "shot.png").size == (640, int(top))


def test_without_chromium_the_error_names_the_install_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        chromium_path()
