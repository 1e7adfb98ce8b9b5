"""Figures of scores as PNG bytes: learning curves, per-type F1, entities by type, test F1 by route over seeds.

Formatting, like the metrics tables; the report tasks and the RESULTS renderer call it. matplotlib is
imported only when a figure is drawn (its import costs about a second) and draws through its Agg
canvas, without pyplot, whose global figure state Prefect's task threads would share. A figure is
byte for byte the same for the same numbers: fixed size and dpi, matplotlib's default style
whatever a matplotlibrc says, and no software name or date in the PNG, so one kept in git changes
only when its numbers do.
"""

from __future__ import annotations

import base64
import io
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DPI = 100
VARIANT_NAMES = {"text": "text-only", "text+knowledge": "[T;Z]"}
_DRAWING = threading.Lock()  # the style context sets matplotlib's global rcParams while a figure is drawn


def variant_name(variant: str) -> str:
    """How a figure names a tagger variant (``text`` is text-only, ``text+knowledge`` is [T;Z])."""
    return VARIANT_NAMES.get(variant, variant)


def markdown_image(alt: str, png: bytes) -> str:
    """A markdown image holding ``png`` as a data URI (the Prefect UI shows it; it strips inline SVG)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


@contextmanager
def _figure(width: float, height: float, columns: int = 1) -> Iterator[tuple[Any, list[Any]]]:
    """A ``width`` x ``height`` inch figure with ``columns`` axes side by side, in matplotlib's default style."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _DRAWING, matplotlib.style.context("default"):
        figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        yield figure, list(figure.subplots(1, columns, squeeze=False)[0])


def _png(figure: Any) -> bytes:
    """The figure as PNG bytes, without the metadata that would differ between renders."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def learning_curves(histories: dict[str, list[dict[str, Any]]]) -> bytes:
    """Dev F1 (points) and mean training loss by epoch, one line per variant; ``histories`` as in history.json."""
    with _figure(9.0, 3.2, columns=2) as (figure, (f1_axes, loss_axes)):
        for variant, history in histories.items():
            epochs = [h["epoch"] for h in history]
            f1_axes.plot(epochs, [100 * h["dev_f1"] for h in history], marker="o", label=variant_name(variant))
            loss_axes.plot(epochs, [h["loss"] for h in history], marker="o", label=variant_name(variant))
        for axes, title in ((f1_axes, "dev F1 by epoch"), (loss_axes, "training loss by epoch")):
            axes.set_title(title)
            axes.set_xlabel("epoch")
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.grid(alpha=0.3)
            axes.legend()
        return _png(figure)


def per_type_f1(scores_by_variant: dict[str, dict[str, Any]], split: str = "test") -> bytes:
    """Bars of ``split`` F1 per entity type and over all (micro), the variants side by side (scores.json layout)."""
    types = sorted({t for scores in scores_by_variant.values() for t in scores[split]["per_type"]}) + ["all (micro)"]
    width = 0.8 / max(len(scores_by_variant), 1)
    with _figure(9.0, 3.4) as (figure, (axes,)):
        for index, (variant, scores) in enumerate(scores_by_variant.items()):
            values = [100 * scores[split]["per_type"].get(t, {"f1": 0.0})["f1"] for t in types[:-1]]
            values.append(100 * scores[split]["f1"])
            bars = axes.bar([i + (index - (len(scores_by_variant) - 1) / 2) * width for i in range(len(types))],
                            values, width, label=variant_name(variant))
            axes.bar_label(bars, fmt="%.1f", fontsize=8)
        axes.set_xticks(range(len(types)), types)
        axes.set_ylabel(f"{split} F1")
        axes.set_ylim(0, 115)  # room above the bars for the legend
        axes.set_title(f"{split} F1 by entity type")
        axes.legend(loc="upper left", ncols=len(scores_by_variant))
        return _png(figure)


def entities_by_type(counts: dict[str, int]) -> bytes:
    """Horizontal bars of entity counts, the most frequent type on top."""
    ranked = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    with _figure(7.0, 0.5 + 0.45 * max(len(ranked), 1)) as (figure, (axes,)):
        bars = axes.barh([name for name, _ in ranked], [n for _, n in ranked], color="tab:green")
        axes.bar_label(bars, padding=3)
        axes.set_xlabel("entities")
        axes.set_title("entities by type")
        axes.margins(x=0.12)
        return _png(figure)


def f1_by_route(panels: dict[str, dict[str, list[float]]]) -> bytes:
    """One panel per dataset: per route, each seed's test F1 (dots) and their mean ± standard deviation (bar).

    ``panels`` maps a dataset to its routes' per-seed F1 in points; the routes share one axis, in
    the order they first appear, so a route without rows in a dataset leaves its line empty there.
    """
    routes = list(dict.fromkeys(route for routes_of in panels.values() for route in routes_of))
    with _figure(11.0, 1.0 + 0.42 * max(len(routes), 1), columns=max(len(panels), 1)) as (figure, axes_list):
        for axes, (dataset, by_route) in zip(axes_list, panels.items()):
            for line, route in enumerate(routes):
                values = by_route.get(route, [])
                if not values:
                    continue
                axes.scatter(values, [line] * len(values), s=18, color="tab:blue", alpha=0.6, zorder=3)
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                axes.errorbar([statistics.fmean(values)], [line], xerr=[spread], fmt="D", color="black", markersize=5,
                              capsize=3, zorder=4)
            axes.set_title(dataset)
            axes.set_xlabel("test F1 (dots: seeds; diamond and bar: mean ± sd)")
            axes.set_yticks(range(len(routes)), routes if axes is axes_list[0] else [""] * len(routes))
            axes.set_ylim(len(routes) - 0.5, -0.5)
            axes.grid(axis="x", alpha=0.3)
        return _png(figure)
