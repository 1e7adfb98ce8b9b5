"""Figures as PNG: drawn from the numbers given, the same bytes for the same numbers in any process. That matplotlib
is imported only to draw is checked in test_layering.py, the figures in the UI in test_deployments.py."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from mner import plots
from tests.conftest import PROJECT

HISTORIES = {"text": [{"epoch": 1, "dev_f1": 0.31, "loss": 9.5}, {"epoch": 2, "dev_f1": 0.42, "loss": 4.25}],
             "text+knowledge": [{"epoch": 1, "dev_f1": 0.28, "loss": 10.5}, {"epoch": 2, "dev_f1": 0.45, "loss": 4.0}]}


def scores(f1: float) -> dict:
    """A scores.json-like dict: dev and test, two entity types."""
    split = {"f1": f1, "precision": f1, "recall": f1, "per_type": {"LOC": {"f1": f1 - 0.1}, "PER": {"f1": f1 + 0.1}}}
    return {"dev": split, "test": split}


def image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def test_figures_have_their_fixed_size_no_text_metadata_and_change_with_their_numbers() -> None:
    curves = plots.learning_curves(HISTORIES)
    assert image(curves).size == (900, 320) and image(curves).format == "PNG"
    assert image(curves).text == {}  # no software name or date: a re-render is byte for byte the same
    assert curves == plots.learning_curves(HISTORIES)
    assert curves != plots.learning_curves({**HISTORIES, "text": [{**HISTORIES["text"][0], "dev_f1": 0.30},
                                                                   HISTORIES["text"][1]]})
    per_type = plots.per_type_f1({"text": scores(0.6), "text+knowledge": scores(0.7)})
    assert image(per_type).size == (900, 340) and per_type != plots.per_type_f1({"text": scores(0.6)})
    few, more = plots.entities_by_type({"PER": 3}), plots.entities_by_type({"PER": 3, "LOC": 2, "ORG": 1})
    assert image(few).size[0] == image(more).size[0] == 700 and image(more).size[1] > image(few).size[1]


def test_a_markdown_image_holds_the_png_as_a_data_uri() -> None:
    png = plots.entities_by_type({"PER": 3, "LOC": 1})
    markdown = plots.markdown_image("entities by type", png)
    assert markdown.startswith("![entities by type](data:image/png;base64,") and markdown.endswith(")")
    assert base64.b64decode(markdown.split(",", 1)[1][:-1]) == png


def test_a_figure_is_the_same_png_in_a_fresh_process_whatever_its_matplotlibrc(tmp_path: Path) -> None:
    """benchmarks/summary.png is kept in git: a user's matplotlib settings must not redraw it."""
    (tmp_path / "matplotlibrc").write_text("lines.linewidth: 8\nfont.size: 20\naxes.grid: True\nsavefig.dpi: 300\n"
                                           "figure.figsize: 3, 2\naxes.prop_cycle: cycler('color', ['red'])\n")
    points = {"Twitter-2015": {"text-only": [71.0, 72.5], "ChatGPT file": [74.0]}, "Twitter-2017": {"text-only": [83.0]}}
    code = ("import json, sys; from mner import plots; "
            "sys.stdout.buffer.write(plots.f1_by_route(json.loads(sys.argv[1])))")
    drawn = subprocess.run([sys.executable, "-c", code, json.dumps(points)], cwd=PROJECT, capture_output=True,
                           env={**os.environ, "MPLCONFIGDIR": str(tmp_path)}, timeout=300)
    assert drawn.returncode == 0, drawn.stderr.decode()[-2000:]
    assert drawn.stdout == plots.f1_by_route(points)


def test_the_report_and_the_tag_markdown_hold_their_figures() -> None:
    from tasks.report import comparison_markdown
    from tasks.tag_report import posts_markdown

    both = {"text": scores(0.6), "text+knowledge": scores(0.7)}
    report = comparison_markdown("x", both, {"data": "artifacts/load/1"}, histories=HISTORIES)
    assert report.count("](data:image/png;base64,") == 2
    assert f"]({plots.markdown_image('x', plots.learning_curves(HISTORIES)).split('](')[1]}" in report
    assert f"]({plots.markdown_image('x', plots.per_type_f1(both)).split('](')[1]}" in report
    assert comparison_markdown("x", both, {}).count("](data:image/png;base64,") == 1  # no histories: no curves

    summary = {"types": {"PER": 2, "LOC": 1}, "tagged": 2, "rejected": 0, "first_posts": []}
    tagged = posts_markdown(summary, "out")
    assert f"]({plots.markdown_image('x', plots.entities_by_type(summary['types'])).split('](')[1]}" in tagged
    assert tagged.startswith("# mner tag: 3 entities in 2 posts")
    empty = posts_markdown({**summary, "types": {}}, "out")
    assert "data:image" not in empty and "No entity found." in empty
