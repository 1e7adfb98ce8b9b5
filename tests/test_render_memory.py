"""RESULTS.md's memory section: the probe's trace points and the full-data runs' per-epoch peaks."""

from __future__ import annotations

import sys

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from render_memory import memory_section  # noqa: E402

ORIGIN = {"command": "python benchmarks/memory_probe.py", "commit": "abc1234", "date": "2026-11-29 10:00 UTC", "machine": "a CPU"}
PROBE = {"setting": "tcmalloc", "environment": {"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "config": "configs/x.yaml",
         "samples": 80, "rss_mib_before": 400.0,
         "rss_trace": [[10, 1000.0], [20, 1100.0], [30, 1200.0], [40, 1300.0], [50, 1400.0]],
         "peak_rss_mib": 2001.0, "sentences_per_second": 25.5, **ORIGIN}
EPOCH = {"peak_rss_mib_after_train": 2100.0, "peak_rss_mib_after_dev": 2200.0, "rss_mib_after_dev": 1800.0}
RUN = {"dataset": "twitter2015", "variant": "text+knowledge", "overrides": {"train.seed": 1}, "peak_rss_mib": 2300.0,
       "history": [{"epoch": 1, **EPOCH}, {"epoch": 2, **EPOCH, "peak_rss_mib_after_dev": 2250.0}], **ORIGIN}


def test_the_section_shows_the_trace_the_peaks_and_only_runs_that_recorded_memory() -> None:
    md = "\n".join(memory_section([PROBE], [RUN, {**RUN, "dataset": "older", "history": [{"epoch": 1}]}]))
    assert "| tcmalloc | `LD_PRELOAD=libtcmalloc_minimal.so.4` | 80 | 400 | 1100 / 1200 / 1300 / 1400 | **2001** | 25.5 |" in md
    assert "| twitter2015 | text+knowledge | 1 | 2100 / 2200; 2100 / 2250 | 1800 | 2300 | abc1234 |" in md
    assert "older" not in md
    assert memory_section([], [{**RUN, "history": [{"epoch": 1}]}]) == []
