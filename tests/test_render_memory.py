"""RESULTS.md's memory section: the full-data stage-2 runs' per-epoch peaks (the retired probe's rows are archived)."""

from __future__ import annotations

import sys

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from render_results import memory_section  # noqa: E402

ORIGIN = {"command": "python benchmarks/stage2.py", "commit": "abc1234", "date": "2026-11-29 10:00 UTC", "machine": "a CPU"}
EPOCH = {"peak_rss_mib_after_train": 2100.0, "peak_rss_mib_after_dev": 2200.0, "rss_mib_after_dev": 1800.0}
RUN = {"dataset": "twitter2015", "variant": "text+knowledge", "overrides": {"train.seed": 1}, "peak_rss_mib": 2300.0,
       "history": [{"epoch": 1, **EPOCH}, {"epoch": 2, **EPOCH, "peak_rss_mib_after_dev": 2250.0}], **ORIGIN}


def test_the_section_shows_the_per_epoch_peaks_of_only_the_runs_that_recorded_memory_and_ran_a_worker() -> None:
    replayed = {**RUN, "dataset": "replayed", "peak_rss_mib_split": {"own": 900.0, "children": 0, "own_before_evaluation": 800.0}}
    md = "\n".join(memory_section([RUN, {**RUN, "dataset": "older", "history": [{"epoch": 1}]}, replayed]))
    assert '| twitter2015 | text+knowledge | `{"train.seed": 1}` | 2100 / 2200; 2100 / 2250 | 1800 | 2300 | abc1234 |' in md
    assert "older" not in md and "replayed" not in md
    assert memory_section([{**RUN, "history": [{"epoch": 1}]}]) == []


def test_a_run_that_split_its_peak_shows_its_own_process_and_the_worker_apart() -> None:
    split = {"own": 1500.0, "children": 2300.0, "own_before_evaluation": 1400.0}
    md = "\n".join(memory_section([{**RUN, "peak_rss_mib_split": split}]))
    assert "| 2300 (own 1500, 1400 before evaluation; worker 2300) | abc1234 |" in md


def test_runs_with_different_settings_each_show_their_own() -> None:
    slower = {**RUN, "overrides": {"train.lr_encoder": "1e-4", "train.seed": 2}}
    md = "\n".join(memory_section([slower, RUN]))
    assert '| `{"train.lr_encoder": "1e-4", "train.seed": 2}` | 2100 / 2200' in md
    assert '| `{"train.seed": 1}` | 2100 / 2200' in md
