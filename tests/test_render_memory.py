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
    assert '| twitter2015 | text+knowledge | `{"train.seed": 1}` | 2100 / 2200; 2100 / 2250 | 1800 | 2300 | abc1234 |' in md
    assert "older" not in md
    assert memory_section([], [{**RUN, "history": [{"epoch": 1}]}]) == []


def test_a_run_that_split_its_peak_shows_its_own_process_and_the_worker_apart() -> None:
    split = {"own": 1500.0, "children": 2300.0, "own_before_evaluation": 1400.0}
    md = "\n".join(memory_section([], [{**RUN, "peak_rss_mib_split": split}]))
    assert "| 2300 (own 1500, 1400 before evaluation; worker 2300) | abc1234 |" in md


def test_evaluation_probes_get_their_own_table_with_the_rss_after_loading_and_each_split() -> None:
    evaluation = {**PROBE, "pass": "evaluate", "setting": "default", "environment": {}, "samples": 1446,
                  "rss_trace": [["loaded", 700.0], ["dev", 900.0], ["test", 950.0]], "peak_rss_mib": 1001.0}
    md = "\n".join(memory_section([PROBE, evaluation], []))
    assert "| default | - | 1446 | 400 | 700 / 900 / 950 | **1001** | 25.5 | abc1234 |" in md
    assert md.count("| tcmalloc |") == 1 and "| default |" not in md.split("--evaluate MODEL_DIR")[0]


def test_runs_with_different_settings_each_show_their_own() -> None:
    slower = {**RUN, "overrides": {"train.lr_encoder": "1e-4", "train.seed": 2}}
    md = "\n".join(memory_section([], [slower, RUN]))
    assert '| `{"train.lr_encoder": "1e-4", "train.seed": 2}` | 2100 / 2200' in md
    assert '| `{"train.seed": 1}` | 2100 / 2200' in md
    assert "Settings of these runs" not in md
