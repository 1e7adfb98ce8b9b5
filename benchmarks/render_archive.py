"""RESULTS.md's closing part: the rows of retired benchmark scripts, one generic table per results file.

Used by benchmarks/render_results.py. A script is retired once what it measured has been acted on (issue
29): it leaves benchmarks/, and its rows stay in benchmarks/results/ and render here as recorded, each
line with the command that reruns it from its commit. :data:`RETIRED` names the scripts; a results file
that only retired scripts wrote gets a table (:func:`archived_table`), while a live file's rows of a
retired script stay in their own section and are only listed here (:func:`archived_part`).
"""

from __future__ import annotations

import json
from typing import Any

from harness import head

# retired script -> (the title of the RESULTS section its rows had, what it measured), in the order those sections stood
RETIRED = {
    "throughput.py": ("Training throughput: our step vs a naive loop (same 512 [T;Z] samples, one process)",
                      "Sentences/s of our training step (word-level CRF, length buckets, bf16 autocast where the CPU has "
                      "it) against a naive loop (sub-token CRF, fixed padding, fp32), one pass each after two warm-up steps."),
    "profile_training.py": ("Training step profile: [T;Z], torch.profiler over one pass (issue 15)",
                            "Top operators by self CPU time (torch.profiler), model FLOPs (FlopCounterMode over forward "
                            "and backward; elementwise ops count 0) and bf16 matmul rates timed on the same threads."),
    "memory_probe.py": ("Memory of [T;Z] training: allocator and oneDNN kernel cache (issue 15)",
                        "RSS along one training pass (`rss_trace`: step, MiB), or with `pass: evaluate` along the evaluate "
                        "stage (after loading, dev, test), each allocator and oneDNN cache setting in a fresh process."),
    "retrieval_quality.py": ("Stage 1 retrieval quality (MSEA): share of top-k examples sharing an entity type with the query",
                             "Per embedder and query text, the share of the top-k retrieved hand-written examples that "
                             "share an entity type with the query tweet (`fused`: MSEA, the backbone's pooled features)."),
    "knowledge_sources.py": ("Stage 2 F1 by knowledge source (Twitter-2015 subset, same budget)",
                             "Stage-2 F1 on a Twitter-2015 subset with SmolLM2's knowledge (a local llama.cpp server), "
                             "PGIM's ChatGPT knowledge and none, through the pipeline flow."),
    "generation_placement.py": ("Where local generation runs: main thread, the flow's task-runner threads, or a process of "
                                "its own", "The same dev prompts answered by the same model in each placement "
                                "(`same_as_main_thread`: answers equal to the main thread's); `whole dataset`: the llm stage "
                                "over every split."),
    "knowledge_reading.py": ("Reading the knowledge: ChatGPT vs the base and the distilled SmolLM2 (test tweets)",
                             "Z of ChatGPT, the base and a distilled SmolLM2 on the first test tweets: gold entities "
                             "verbatim in Z, mean words, prompts/s, and the first tweets' answers side by side."),
    "crossfit_knowledge.py": ("Knowledge at test time: the distilled route with cross-fitted train Z (issue 14)",
                              "The distilled route's tagger trained on train Z written by fold models that never saw "
                              "those answers (source `distilled, cross-fitted train Z`)."),
}
LONG = 100  # characters: a longer value is given below its table, by line, instead of in a cell


def script_of(row: dict) -> str:
    """The benchmark script that wrote ``row``: the file name of its command's script (``python benchmarks/X.py ...``)."""
    words = row["command"].split()
    return words[1].rsplit("/", 1)[-1] if len(words) > 1 else words[0]


def tidy(value: Any) -> Any:
    """``value`` with every float to 6 significant digits (0.45999999999999996 is 0.46), in lists and objects too."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: tidy(item) for key, item in value.items()}
    return [tidy(item) for item in value] if isinstance(value, list) else value


def cell(value: Any) -> str:
    """``value`` on one line for a table: text as it is, numbers as JSON, lists and objects as JSON code, ``|`` escaped."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(tidy(value), ensure_ascii=False)
    text = f"`{text}`" if isinstance(value, (dict, list)) else text
    return " ".join(text.split()).replace("|", "\\|")


def spans(numbers: list[int]) -> str:
    """Line numbers in order, runs of consecutive ones as ``first-last``: ``1-4, 7``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def reruns(rows: list[dict], numbers: list[int]) -> list[str]:
    """A line per distinct (commit, command) of ``rows`` (lines ``numbers`` of their file): check out, then run.

    A ``-dirty`` commit ran with uncommitted edits beside it; the commit itself is the one to check out.
    """
    lines: dict[tuple[str, str], list[int]] = {}
    for number, r in zip(numbers, rows, strict=True):
        lines.setdefault((r["commit"], r["command"]), []).append(number)
    return [f"- line{'s' * (len(found) > 1)} {spans(found)}: "
            f"`git checkout {commit.removesuffix('-dirty')} && {command}`"
            + (f" (recorded as {commit}: uncommitted edits beside that commit)" if commit.endswith("-dirty") else "")
            for (commit, command), found in lines.items()]


def archived_table(rows: list[dict]) -> list[str]:
    """The rows of one results file: a field with one value in every row once above the table, the others as columns
    after the line in the file, a value over :data:`LONG` characters below the table by line; then the reruns."""
    fields = list(dict.fromkeys(key for r in rows for key in r if key != "command"))
    cells = {key: [cell(r[key]) if key in r else "" for r in rows] for key in fields}
    same = [key for key in fields if len(set(cells[key])) == 1]
    below = [key for key in fields if key not in same and any(len(c) > LONG for c in cells[key])]
    columns = [key for key in fields if key not in same and key not in below]
    md = [f"- {key}: {cells[key][0]}" for key in same]
    if columns:
        md += ["", *head("| line | " + " | ".join(columns) + " |")]
        md += [f"| {number} | " + " | ".join(cells[key][number - 1] for key in columns) + " |"
               for number in range(1, len(rows) + 1)]
    md += [""] + [f"- line {number}, {key}: {text}" for key in below for number, text in enumerate(cells[key], 1) if text]
    numbers = list(range(1, len(rows) + 1))
    return md + ([""] if below else []) + ["Rerun (from the project root):", ""] + reruns(rows, numbers) + [""]


def archived_part(results: dict[str, list[dict]]) -> list[str]:
    """The archived part of RESULTS.md: a section per results file of retired scripts (in :data:`RETIRED` order),
    then the rows that retired scripts wrote to live files, with where they render; nothing when none."""
    retired = {name: rows for name, rows in results.items() if rows and all(script_of(r) in RETIRED for r in rows)}
    order = list(RETIRED)
    md: list[str] = []
    for name, rows in sorted(retired.items(), key=lambda item: order.index(script_of(item[1][0]))):
        scripts = ", ".join(f"`benchmarks/{s}`" for s in dict.fromkeys(map(script_of, rows)))
        title, measured = RETIRED[script_of(rows[0])]
        md += [f"### {title}", "", f"{measured} Written by {scripts} (retired) to `benchmarks/results/{name}`.", ""]
        md += archived_table(rows)
    for name, rows in results.items():
        for script in (s for s in RETIRED if name not in retired):
            numbers = [number for number, r in enumerate(rows, 1) if script_of(r) == script]
            if numbers:
                title, measured = RETIRED[script]
                md += [f"### {title}", "", f"{measured} Written by `benchmarks/{script}` (retired) to lines of "
                       f"`benchmarks/results/{name}`, which render in their section above. Rerun (from the project root):",
                       ""] + reruns([rows[n - 1] for n in numbers], numbers) + [""]
    if not md:
        return []
    return ["## Archived measurements: the rows of retired scripts", "",
            "A script whose findings have been acted on is retired (issue 29): it is no longer in `benchmarks/`, and its "
            "rows stay in `benchmarks/results/` and render here as recorded. In each table, a field with one value in "
            "every row is given once above it, and a value too long for a cell below it, by line of the results file. "
            "To rerun a line, check out the commit it names and run its command from the project root "
            "(`git checkout -` returns).", ""] + md
