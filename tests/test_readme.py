"""The READMEs against what they describe: the CLI, the config models, the deployments, the files they link, RESULTS.

A README command names a subcommand and options the `mner` CLI has; every config field it names (in
`--set` or in backticks) exists in `PipelineConfig`; its YAML configs load; its links and anchors resolve;
its per-stage deployments are prefect.yaml's; its headline table is RESULTS.md's summary, copied.
"""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path

import pytest
import typer
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel

from cli.main import app
from mner.config import PipelineConfig, load_config
from tests.conftest import PROJECT

README = PROJECT / "README.md"
BENCHMARKS_README = PROJECT / "benchmarks" / "README.md"
RESULTS = PROJECT / "benchmarks" / "RESULTS.md"
MARKDOWN = MarkdownIt("commonmark").enable("table")
SET_KEY = re.compile(r"--set[ =]([a-z0-9_]+(?:\.[a-z0-9_]+)+)=")
CONFIG_NAME = re.compile(r"`((?:dataset|stage1|model|train|backbone)\.[\w.]*\w)(?![\w*])")  # `dataset.knowledge_*`: many
NOT_FIELDS = {"model.generate"}  # transformers' generation method
FILE_ENDINGS = {"jsonl", "json", "txt", "yaml", "py", "md"}  # `train.jsonl` is a file, not a field of train


def _tokens(path: Path) -> list[Token]:
    return MARKDOWN.parse(path.read_text(encoding="utf-8"))


def _fences(path: Path, language: str) -> list[str]:
    return [t.content for t in _tokens(path) if t.type == "fence" and t.info.strip() == language]


def _commands(path: Path, program: str) -> list[list[str]]:
    """Each command line of the file's bash blocks that runs ``program``, split as the shell splits it."""
    commands = []
    for block in _fences(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == [program]:
                commands.append(words)
    return commands


def _inline_commands(path: Path, program: str) -> list[list[str]]:
    """Each inline code span of the file that starts with ``program``: a command (`mner run --refresh train`) or a
    mention of one (`mner tag --knowledge-file`)."""
    spans = [c.content for t in _tokens(path) if t.type == "inline" for c in t.children or [] if c.type == "code_inline"]
    return [shlex.split(span) for span in spans if span.startswith(f"{program} ")]


class UnknownSubcommand(typer.TyperException):
    """A README command names a subcommand the CLI lacks."""


def _subcommand(words: list[str]) -> tuple[typer.core.TyperCommand, list[str]]:
    """The `mner` subcommand that ``words`` run and the words after its name; raise for one the CLI lacks."""
    command = typer.main.get_command(app)
    args = words[1:]
    while hasattr(command, "commands"):  # a group: the next word names its subcommand
        if not args or args[0] not in command.commands:
            raise UnknownSubcommand(f"{command.name or words[0]} has no subcommand {args[:1]}; it has {sorted(command.commands)}")
        command, args = command.commands[args[0]], args[1:]
    return command, args


def _parse_mner(words: list[str]) -> None:
    """Parse a whole `mner ...` command with the CLI's own parser (no command runs); raise typer's error for an unknown
    subcommand or option, a missing required one, or a value of the wrong type."""
    command, args = _subcommand(words)
    command.make_context(words[0], args)


def _unknown_options(words: list[str]) -> list[str]:
    """The options that a mention of a `mner` command (`mner tag --knowledge-file`) names and its subcommand lacks."""
    command, args = _subcommand(words)
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    return [word.split("=")[0] for word in args if word.startswith("-") and word.split("=")[0] not in known]


def _is_config_field(dotted: str) -> bool:
    model: type[BaseModel] | None = PipelineConfig
    for part in dotted.split("."):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next((a for a in (annotation, *typing.get_args(annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return True


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    tokens, seen, anchors = _tokens(path), {}, set()
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open":
            slug = _slug(inline.content)
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(path: Path) -> list[str]:
    children = [c for t in _tokens(path) if t.type == "inline" for c in t.children or []]
    return [str(c.attrGet("href") if c.type == "link_open" else c.attrGet("src"))
            for c in children if c.type in ("link_open", "image")]


def _first_table(path: Path, heading: str) -> list[list[str]]:
    """The cells of the first table under the level-2 heading starting with ``heading``, header row first."""
    tokens, inside, rows = _tokens(path), False, []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            inside = tokens[index + 1].content.startswith(heading)
        elif inside and token.type == "tr_open":
            rows.append([])
        elif inside and token.type == "inline" and rows and tokens[index - 1].type in ("th_open", "td_open"):
            rows[-1].append(token.content)
        elif inside and token.type == "table_close":
            return rows
    raise AssertionError(f"{path.name}: no table under a heading starting {heading!r}")


def test_the_first_commands_set_up_and_run_the_demo_then_the_tests() -> None:
    assert _fences(README, "bash")[0].splitlines() == ["make demo", "make test"]


@pytest.mark.parametrize("words", _commands(README, "mner"), ids=lambda words: " ".join(words)[:60])
def test_each_mner_command_parses_with_the_cli(words: list[str]) -> None:
    try:
        _parse_mner(words)
    except typer.TyperException as exc:
        pytest.fail(f"README.md: `{shlex.join(words)}`: {exc}")


def test_each_mner_command_mentioned_names_its_subcommand_and_options() -> None:
    mentions = _inline_commands(README, "mner")
    assert mentions, "README.md mentions no `mner ...` command inline: the pattern no longer matches it"
    for words in mentions:
        assert not _unknown_options(words), f"README.md: `{shlex.join(words)}`: no such option {_unknown_options(words)}"


@pytest.mark.parametrize("path", [README, BENCHMARKS_README], ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_config_field_named_exists(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    named = set(SET_KEY.findall(text)) | {name for name in CONFIG_NAME.findall(text)
                                          if name.rsplit(".", 1)[-1] not in FILE_ENDINGS} - NOT_FIELDS
    assert named, f"{path.name} names no config field: the patterns no longer match it"
    unknown = sorted(name for name in named if not _is_config_field(name))
    assert not unknown, f"{path.name} names config fields that PipelineConfig does not have: {unknown}"


def test_the_configs_shown_load(tmp_path: Path) -> None:
    configs = [block for block in _fences(README, "yaml") if "dataset:" in block]
    assert configs, "README.md shows no config"
    for block in configs:
        (tmp_path / "config.yaml").write_text(block, encoding="utf-8")
        load_config(tmp_path / "config.yaml")  # raises naming the field


@pytest.mark.parametrize("path", [README, BENCHMARKS_README], ids=lambda p: str(p.relative_to(PROJECT)))
def test_links_and_anchors_resolve(path: Path) -> None:
    broken = []
    for link in _links(path):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file)):
            broken.append(link)
    assert not broken, f"{path.name}: links to no file or heading: {broken}"


def test_the_per_stage_deployments_listed_are_prefect_yamls() -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    stages = {d["name"] for d in deployments if d["entrypoint"] == "flows/pipeline.py:pipeline"} - {"default"}
    listed = re.search(r"`mner-pipeline/<stage>` \(one per stage: ([a-z, \n]+)\)", README.read_text(encoding="utf-8"))
    assert listed, "README.md no longer lists the per-stage deployments as `mner-pipeline/<stage>` (one per stage: ...)"
    assert set(re.split(r",\s*", listed.group(1).strip())) == stages


def test_the_headline_table_is_the_results_summary_copied() -> None:
    summary = _first_table(RESULTS, "Summary")
    hardware = summary[0].index("hardware")
    expected = [row[:hardware] + row[hardware + 1:] for row in summary]
    copy = "\n".join("| " + " | ".join(row) + " |" for row in expected)
    assert _first_table(README, "Results") == expected, (
        "README.md's Results table differs from RESULTS.md's summary (its hardware column left out); "
        f"copy it:\n{copy}")
