"""Helpers of the benchmarks: the Z budget's percentiles and table, the knowledge-swap sections, the newcomer's order."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from render_seeds import z_budget_section  # noqa: E402
from z_budget import percentile  # noqa: E402

ORIGIN = {"command": "python benchmarks/z_budget.py --config configs/twitter2017.yaml", "commit": "abc1234",
          "date": "2026-11-29 22:00 UTC", "machine": "a CPU"}


def test_percentile_is_a_value_of_the_list() -> None:
    values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6]
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99), percentile(values, 1.0)) == (5, 9, 10, 10)


def test_z_budget_table_shows_the_newest_row_per_split_with_cut_and_dropped_shares() -> None:
    old = {"dataset": "twitter2017", "split": "test", "sentences": 1, "encoder": "e", "config_max_length": 256,
           "length": {"mean": 1.0, "median": 1, "p90": 1, "p99": 1, "max": 1},
           "budgets": {"128": {"z_cut_share": 1.0, "z_pieces_dropped_share": 1.0}}, **ORIGIN}
    new = {**old, "sentences": 723, "length": {"mean": 146.2, "median": 147, "p90": 181, "p99": 220, "max": 270},
           "budgets": {"128": {"z_cut_share": 0.7344, "z_pieces_dropped_share": 0.2}, "256": {"z_cut_share": 0.0014,
                                                                                            "z_pieces_dropped_share": 0.0001}}}
    md = "\n".join(z_budget_section([old, new]))
    assert "| dataset | split | sentences | length mean / median / p90 / p99 / max | cut at 128 | cut at 256 |" in md
    assert "| twitter2017 | test | 723 | 146.2 / 147 / 181 / 220 / 270 | 73.4% (20.0%) | 0.1% (0.0%) |" in md
    assert "| twitter2017 | test | 1 |" not in md
    assert z_budget_section([]) == []


def test_a_cross_fitted_row_names_its_fold_models_and_the_train_z_shares() -> None:
    from render_seeds import swap_section

    tagger = {"label": "seeds", "commit": "abc1234", "date": "d", "model_dir": "m", "test_f1": 0.86, "dev_f1": 0.86}
    chatgpt = {"dataset": "twitter2017", "source": "chatgpt", "model": "PGIM's ChatGPT files", "tagger": {**tagger, "seed": 42},
               "dev_f1": 0.86, "test_f1": 0.86, "test_verbatim_share": 0.925, **ORIGIN}
    crossfit = {"dataset": "twitter2017", "source": "distilled, cross-fitted train Z", "model": "transformers:distilled-k:bf16",
                "pairs": 3204, "epochs": 1, "heldout_loss": 1.05, "tagger": {**tagger, "label": "pipeline", "seed": 42},
                "folds": [{"pairs": 1603, "heldout_loss": 1.17}, {"pairs": 1602, "heldout_loss": 1.16}],
                "train_verbatim_share": {"chatgpt": 0.92, "own": 0.885, "crossfit": 0.862},
                "dev_f1": 0.84, "test_f1": 0.845, "test_verbatim_share": 0.888, **ORIGIN}
    text = {"label": "seeds", "dataset": "twitter2017", "variant": "text", "overrides": {"train.seed": 42}, "test_f1": 0.83}
    md = "\n".join(swap_section([chatgpt, crossfit], [text]))
    assert ("| distilled, cross-fitted train Z | transformers:distilled-k:bf16 (3204 pairs, 1 epoch, held-out loss 1.05); "
            "train Z from 2 fold models (1603 / 1602 pairs, held-out loss 1.17 / 1.16) | 42 | 84.00 | **84.50** | +1.50 |") in md
    assert "chatgpt 92.0%, own 88.5%, crossfit 86.2%" in md


def test_two_distilled_models_of_one_source_get_a_line_each() -> None:
    from render_seeds import swap_section

    tagger = {"label": "seeds", "commit": "abc1234", "date": "d", "model_dir": "m", "test_f1": 0.86, "dev_f1": 0.86}
    chatgpt = {"dataset": "twitter2017", "source": "chatgpt", "model": "PGIM's ChatGPT files", "tagger": {**tagger, "seed": 42},
               "dev_f1": 0.86, "test_f1": 0.86, "test_verbatim_share": 0.925, **ORIGIN}
    own = {"dataset": "twitter2017", "source": "distilled, own train Z", "pairs": 3204, "dev_f1": 0.84,
           "test_verbatim_share": 0.888, "tagger": {**tagger, "label": "pipeline", "seed": 42}, **ORIGIN}
    one = {**own, "model": "transformers:distilled-a:bf16", "epochs": 1, "heldout_loss": 1.05, "test_f1": 0.843}
    two = {**own, "model": "transformers:distilled-b:bf16", "epochs": 2, "heldout_loss": 1.01, "test_f1": 0.851}
    md = "\n".join(swap_section([chatgpt, one, two], [], {"b": "gemma3-270m"}))
    assert "| distilled, own train Z | transformers:distilled-a:bf16 (3204 pairs, 1 epoch, held-out loss 1.05) | 42 |" in md
    assert ("| distilled, own train Z | gemma3-270m: transformers:distilled-b:bf16 (3204 pairs, 2 epochs, held-out loss 1.01) "
            "| 42 |") in md
    assert "**84.30**" in md and "**85.10**" in md


def test_each_dataset_gets_its_own_section_and_a_pipeline_only_dataset_pairs_with_the_seeds_text_rows() -> None:
    from render_seeds import swap_section

    tagger = {"label": "seeds", "commit": "abc1234", "date": "d", "model_dir": "m", "test_f1": 0.86, "dev_f1": 0.86}
    chatgpt = {"dataset": "twitter2017", "source": "chatgpt", "model": "PGIM's ChatGPT files", "tagger": {**tagger, "seed": 42},
               "dev_f1": 0.86, "test_f1": 0.86, "test_verbatim_share": 0.925, **ORIGIN}
    t15 = {"dataset": "twitter2015", "source": "distilled, own train Z", "model": "transformers:distilled-c:bf16", "pairs": 3800,
           "epochs": 1, "heldout_loss": 1.1, "dev_f1": 0.72, "test_f1": 0.735, "test_verbatim_share": 0.8,
           "tagger": {**tagger, "label": "pipeline", "seed": 42}, **ORIGIN}
    text = [{"label": "seeds", "dataset": d, "variant": "text", "overrides": {"train.seed": 42}, "test_f1": f}
            for d, f in (("twitter2017", 0.83), ("twitter2015", 0.72))]
    md = "\n".join(swap_section([chatgpt, t15], text))
    first, second = md.split("## Knowledge at test time from a local model: twitter2015")
    assert "## Knowledge at test time from a local model: twitter2017" in first and "| chatgpt |" in first
    assert "distilled-c" not in first and "| chatgpt |" not in second
    assert "| distilled, own train Z | transformers:distilled-c:bf16 (3800 pairs, 1 epoch, held-out loss 1.1) | 42 | 72.00 | " \
           "**73.50** | +1.50 |" in second
    assert "configs/twitter2015-distilled.yaml" in second


def test_a_distilled_model_outside_distill_bases_is_named_by_its_recorded_or_commanded_base() -> None:
    from render_seeds import distilled_base

    row = {"model": "transformers:distilled-d:bf16", "command": "python benchmarks/knowledge_swap.py --source"}
    assert distilled_base(row, {"b": "gemma3-270m"}) is None  # the default base, not recorded: nothing claimed
    assert distilled_base({**row, "base_model": "SmolLM2-135M-Instruct.Q4_1.gguf"}, {}) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    commanded = {**row, "command": row["command"] + " --set stage1.distill.base_model=/cache/gemma-3-270m-q4_k_m.gguf --set x=1"}
    assert distilled_base(commanded, {}) == "gemma-3-270m-q4_k_m.gguf"
    assert distilled_base(commanded, {"d": "gemma"}) == "gemma"  # distill_bases' name first
    assert distilled_base({"model": "PGIM's ChatGPT files", "command": commanded["command"]}, {}) is None


def test_each_splits_z_minutes_run_from_its_first_shards_start_to_its_last_shards_end(tmp_path) -> None:
    import json

    from route_seeds import split_minutes

    from mner.store import ArtifactStore, sha256_json

    store = ArtifactStore(tmp_path / "store")
    shards = []  # (split, start, end) in seconds: train's two shards overlap, dev follows after a pause
    for number, (split, start, end) in enumerate([("train", 0, 300), ("train", 60, 660), ("dev", 700, 820)]):
        run = store.begin("llm-shard", {"n": str(number)}, {"split": split}, "code")
        (run.work_dir / "results.jsonl").write_text(f"{number}\n", encoding="utf-8")
        published = Path(run.publish().dir)
        manifest = json.loads((published / "manifest.json").read_text())
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.gmtime(1_800_000_000 + end))
        manifest["timings"] = {"total_s": end - start}
        (published / "manifest.json").write_text(json.dumps(manifest))
        shards.append({"output": {"output": sha256_json(manifest["files"])}, "split": split})
    merged = store.begin("llm", {}, {"shards": shards}, "code")
    (merged.work_dir / "train.jsonl").write_text("", encoding="utf-8")
    directory = merged.publish().dir
    assert split_minutes(str(directory)) == {"train": 11.0, "dev": 2.0}


def test_the_tag_table_names_each_rows_machine() -> None:
    from render_tag import tag_section

    row = {"mode": "text-only", "posts": 256, "shard_size": 1024, "tag_posts_per_second": 4.2,
           "tag_command_posts_per_second": 3.5, "tag_posts_per_cpu_second": 15.0, "predict_posts_per_second": 0.07,
           "predict_posts": 3, "peak_rss_mib": 811.0, "load_1min": "1.5", "commit": "abc1234", "date": "2026-12-07 08:17 UTC",
           "command": "python benchmarks/tag_throughput.py", "machine": "AMD EPYC, 2 cores, 24 GiB, no GPU"}
    xeon = {**row, "machine": "Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cores, 24 GiB, no GPU"}
    lines = [line for line in tag_section([row, xeon], []) if line.startswith("| text-only")]
    assert [line.split(" | ")[-3] for line in lines] == ["AMD EPYC", "Intel(R) Xeon(R) Processor @ 2.80GHz"]


SUITE_OUTPUT = """
============================= slowest durations ==============================
92.30s call     tests/test_process_lifecycle.py::test_kill_9_leaves_no_process
10.27s setup    tests/test_process_lifecycle.py::test_ctrl_c[parent-death]
53.37s setup    tests/test_tag.py::test_jsonl_text_and_conll_files_give_the_same_entities
0.61s teardown  tests/test_tag.py::test_predict_takes_a_route
=========================== short test summary info ============================
SKIPPED [1] tests/test_gpu.py:182: needs CUDA
FAILED tests/test_tag.py::test_predict_takes_a_route - AssertionError: assert 1 == 2
FAILED tests/test_prefect_cli.py::test_work_pool_worker_runs_the_pipeline
ERROR tests/test_ocr.py::test_tesseract - FileNotFoundError: tesseract
2 failed, 325 passed, 8 skipped, 14 warnings, 1 error in 871.02s (0:14:31)
"""


def test_the_newcomer_row_sums_each_test_files_durations_and_keeps_every_count_of_the_summary() -> None:
    from newcomer_order import suite_outcome

    found = suite_outcome(SUITE_OUTPUT)
    assert found["counts"] == {"failed": 2, "passed": 325, "skipped": 8, "error": 1}
    assert found["file_seconds"] == {"test_process_lifecycle.py": 102.6, "test_tag.py": 54.0}
    assert list(found["file_seconds"]) == ["test_process_lifecycle.py", "test_tag.py"]  # longest first
    assert found["failures"] == [
        {"test": "tests/test_tag.py::test_predict_takes_a_route", "message": "AssertionError: assert 1 == 2"},
        {"test": "tests/test_prefect_cli.py::test_work_pool_worker_runs_the_pipeline", "message": ""},
        {"test": "tests/test_ocr.py::test_tesseract", "message": "FileNotFoundError: tesseract"}]


def test_the_second_demo_names_every_task_run_that_was_not_cached() -> None:
    from newcomer_order import demo_outcome

    output = "\n".join([
        "13:29:14.241 | INFO    | Task run 'load-068' - Finished in state Cached(type=COMPLETED)",
        "13:29:14.313 | INFO    | Task run 'dataset-stats-5fd' - Finished in state Completed()",
        "13:29:16.363 | INFO    | Task run 'caption-shard-eda' - Finished in state Cached(type=COMPLETED)",
        "13:29:16.379 | INFO    | Task run 'train-8df' - Finished in state Failed('boom')"])
    assert demo_outcome(output) == {"task_runs": 4, "cached": 2, "not_cached": ["dataset-stats", "train"]}


def test_the_newcomer_section_shows_each_step_and_names_a_failed_one() -> None:
    from render_newcomer import newcomer_section

    row = {**ORIGIN, "clone_commit": "abc1234", "load_1min_before": 0.1,
           "steps": [{"step": "first demo (setup included)", "rc": 0, "seconds": 390.0},
                     {"step": "make test", "rc": 2, "seconds": 871.0}, {"step": "second demo", "rc": 0, "seconds": 15.0}],
           "suite": {"counts": {"failed": 2, "passed": 325}, "file_seconds": {"test_tag.py": 54.0},
                     "failures": [{"test": "tests/test_tag.py::test_x", "message": "AssertionError"}]},
           "second_demo": {"task_runs": 19, "cached": 18, "not_cached": ["dataset-stats"]}}
    table = newcomer_section([row])
    line = next(line for line in table if line.startswith("| abc1234"))
    assert "| 6.5 | **14.5** | 2 failed, 325 passed; **failed step: make test** | 0.2 | 18 of 19 (not: dataset-stats) |" in line
    assert "| test_tag.py | 54 |" in table
    assert "- abc1234 (2026-11-29 22:00 UTC): `tests/test_tag.py::test_x` failed: AssertionError" in table
