"""``mner tag``: the ``mner-tag`` flow from the command line (the CLI twin of the ``mner-tag/default`` deployment)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from cli.common import checked_overrides, store_root, temporary_server
from mner.posts import SHARD_SIZE
from mner.server import prefect_defaults, wait_until_serving


def tag_command(
    input: Path = typer.Argument(..., help="A file or folder of posts: JSONL (text, optional id, image, knowledge), "
                                           "plain text (a post a line) or CoNLL (with or without tags and IMGID lines)."),
    run_or_dir: str = typer.Option("latest", "--run", help="The model, as `mner predict --run` takes it: latest, "
                                                          "latest:VARIANT, DATASET/VARIANT, a train directory or key."),
    knowledge: Optional[str] = typer.Option(None, "--knowledge", help="Route of knowledge Z: none, file, llm, distilled, retrieved "
                                                                      "(default: the route the model was trained with)."),
    knowledge_file: Optional[Path] = typer.Option(None, "--knowledge-file", help="JSONL of {id, knowledge} rows (route file)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the posts' images (<id>.jpg)."),
    input_format: str = typer.Option("auto", "--format", help="auto (by extension and content), jsonl, text or conll."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Copy tagged.jsonl, rejected.jsonl (and "
                                                                         "tagged.conll) into this folder."),
    conll: bool = typer.Option(False, "--conll", help="Also write tagged.conll (IMGID line per post, token<TAB>tag)."),
    with_knowledge: bool = typer.Option(False, "--with-knowledge", help="Keep each post's knowledge Z in tagged.jsonl."),
    max_rejected_share: float = typer.Option(0.05, "--max-rejected-share", help="Fail when more posts are rejected."),
    shard_size: int = typer.Option(SHARD_SIZE, "--shard-size", min=1, help="Posts per shard (the unit of caching and resuming)."),
    tokenizer_style: Optional[str] = typer.Option(None, "--tokenization", help="twitter2017, twitter2015 or chars "
                                                                               "(default: the one the model recorded)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="Config naming the store, runner and LLM (default: the demo's)."),
    artifacts_root: Optional[Path] = typer.Option(None, "--artifacts-root", help=(
        "The store the model is looked up in and the shards cached in (default: as for `mner run`).")),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE, e.g. stage1.runner.kind=dask."),
    refresh: bool = typer.Option(False, "--refresh", help="Tag every shard again, regardless of the store."),
) -> None:
    """Tag files of raw posts with a trained model; print counts, speed and where tagged.jsonl is, as JSON.

    Shards are cached: a run stopped or killed, started again, tags only the shards it had not finished.
    Exits 1 when more than --max-rejected-share of the posts are rejected (rejected.jsonl names each one).
    """
    from mner import processes

    root = store_root(artifacts_root)
    overrides = checked_overrides(config, [*set_, f"artifacts_root={root}"])
    prefect_defaults()
    processes.stop_on_interrupt()
    try:
        server = None if os.environ.get("PREFECT_API_URL") else temporary_server()
        from flows.tag import TooManyRejected, tag

        if server is not None:
            wait_until_serving(*server)
        result = tag(input=str(input), model=run_or_dir, knowledge=knowledge,
                     knowledge_file=str(knowledge_file) if knowledge_file else None, images=str(images) if images else None,
                     input_format=input_format, output=str(output) if output else None, conll=conll,
                     with_knowledge=with_knowledge, max_rejected_share=max_rejected_share, shard_size=shard_size,
                     tokenizer_style=tokenizer_style, config_file=str(config) if config else None, overrides=overrides,
                     refresh=refresh)
    except processes.Interrupted as exc:
        typer.echo(f"{exc}: stopped; finished shards are kept, a rerun tags only the rest", err=True)
        raise typer.Exit(130) from exc
    except TooManyRejected as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (ValueError, LookupError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
