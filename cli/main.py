"""The ``mner`` command line. Sub-apps register here; ``data`` holds the data-file checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, List, NoReturn, Optional

import typer

from cli.common import checked_overrides as _checked_overrides
from cli.common import store_root as _store_root
from cli.common import temporary_server as _temporary_server
from cli.tag import tag_command
from mner.formats import DataFormatError, format_summary, read_conll, summarize, write_conll
from mner.server import prefect_defaults, wait_until_serving

if TYPE_CHECKING:
    from engine.knowledge_routes import KnowledgeRoute
    from mner.config import PipelineConfig
    from mner.model_routes import TrainedRoute

app = typer.Typer(
    name="mner",
    help="Multimodal NER on social-media posts with LLM-generated auxiliary knowledge.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and validate data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _repaired_target(source: Path, out: Path, many: bool) -> Path:
    """Where ``--write-repaired`` puts ``source``: ``out`` itself, or ``out/<name>`` for a folder."""
    if many or out.is_dir():
        return out / source.name
    return out


@data_app.command("check")
def data_check(
    paths: List[Path] = typer.Argument(..., help="CoNLL files to check (with or without IMGID lines)."),
    repair: bool = typer.Option(False, "--repair", help="Convert BIO tags to IOB2 instead of reporting them."),
    write_repaired: Optional[Path] = typer.Option(
        None,
        "--write-repaired",
        help="Write the (repaired) files here: a file for one PATH, a folder for several. Implies --repair.",
    ),
) -> None:
    """Check CoNLL files: print a summary per good file, one ``path:line: problem`` per error.

    Exits with status 1 when any file has a problem.
    """
    repair = repair or write_repaired is not None
    failed = False
    for path in paths:
        if not path.is_file():
            typer.echo(f"{path}:0: no such file", err=True)
            failed = True
            continue
        try:
            conll = read_conll(path, repair=repair)
        except DataFormatError as exc:
            for issue in exc.issues:
                typer.echo(str(issue), err=True)
            typer.echo(f"{path}: {len(exc.issues)} problem(s)", err=True)
            failed = True
            continue
        except OSError as exc:
            typer.echo(f"{path}:0: cannot read ({exc.strerror or exc})", err=True)
            failed = True
            continue
        typer.echo(format_summary(summarize(conll)))
        if write_repaired is not None:
            target = _repaired_target(path, write_repaired, len(paths) > 1)
            if target.resolve() == path.resolve():
                typer.echo(f"{path}:0: refusing to overwrite the input with --write-repaired", err=True)
                failed = True
                continue
            write_conll(target, conll.sentences, with_image_ids=any(s.image_id for s in conll.sentences))
            typer.echo(f"  wrote {target}")
    raise typer.Exit(code=1 if failed else 0)


artifacts_app = typer.Typer(help="List and read the artifact store.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")
_ROOT_OPTION = typer.Option(None, "--root", help="The artifact store's root (default: $MNER_ARTIFACTS_ROOT, else the project's artifacts/, as for `mner run`).")


@artifacts_app.command("ls")
def artifacts_ls(stage: Optional[str] = typer.Argument(None, help="Only this stage."), root: Optional[Path] = _ROOT_OPTION) -> None:
    """One line per published stage output: stage, key, created, files, size."""
    from mner.store import ArtifactStore

    for entry in ArtifactStore(_store_root(root)).entries(stage):
        typer.echo(f"{entry['stage']:<10} {entry['key']}  {entry['created']}  {entry['files']:>3} files  "
                   f"{entry['bytes'] / 2**20:8.1f} MiB")


@artifacts_app.command("show")
def artifacts_show(
    stage: str = typer.Argument(..., help="Stage name, e.g. train."),
    key: str = typer.Argument(..., help="The key or a unique prefix of it."),
    file: Optional[str] = typer.Option(None, "--file", help="Print this file of the output instead of the manifest."),
    root: Optional[Path] = _ROOT_OPTION,
) -> None:
    """Print an output's manifest (inputs, config, code version, file hashes, timings) or one of its files."""
    from mner.store import MANIFEST, ArtifactStore

    try:
        directory = ArtifactStore(_store_root(root)).find(stage, key)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc
    typer.echo((directory / (file or MANIFEST)).read_text(encoding="utf-8"))


@app.command("run")
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML/JSON config (default: the demo sample)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE, e.g. train.epochs=3."),
    refresh: List[str] = typer.Option([], "--refresh", help="Recompute this stage (and what follows) regardless of the cache."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage, e.g. llm."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Run the mner-pipeline flow in this process with Prefect's local defaults; print the scores as a table.

    Without PREFECT_API_URL a temporary Prefect server (SQLite under PREFECT_HOME) runs as a child
    of this process. Every child dies with it; Ctrl-C stops the run within seconds (exit 130, the
    flow run ends Failed) and keeps the answers and checkpoints finished before it.
    """
    import json

    from mner import processes

    overrides = _checked_overrides(config, set_)
    prefect_defaults()
    processes.stop_on_interrupt()
    try:
        server = None if os.environ.get("PREFECT_API_URL") else _temporary_server()
        from flows.pipeline import pipeline  # seconds of imports, while the server starts

        if server is not None:
            wait_until_serving(*server)
        result = pipeline(config_file=str(config) if config else None, overrides=overrides, refresh=refresh or None,
                          until=until)
    except processes.Interrupted as exc:
        typer.echo(f"{exc}: stopped; finished answers and checkpoints are kept, a rerun resumes", err=True)
        raise typer.Exit(130) from exc
    typer.echo(json.dumps(result, indent=2) if as_json or until else scores_table(result))


def scores_table(result: dict) -> str:
    """The pipeline's scores as a small table: variant, dev F1, test P/R/F1, and the model's directory."""
    rows = [("variant", "dev F1", "test P", "test R", "test F1", "model (mner predict --run DIR)")]
    for variant, s in result.items():
        rows.append((variant, *(f"{100 * s[k]:.2f}" for k in ("dev_f1", "test_precision", "test_recall", "test_f1")),
                     str(s.get("model") or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


@app.command("grid")
def grid_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML/JSON config (default: the demo sample)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE, e.g. backbone.s2_epochs=2."),
    align: List[float] = typer.Option([0.0, 0.1, 0.5], "--align", help="align_lambda values (repeat the option)."),
    infonce: List[float] = typer.Option([0.0, 0.1, 0.5], "--infonce", help="infonce_lambda values (repeat the option)."),
) -> None:
    """Run the mner-backbone-grid flow: one backbone per loss-weight pair; print the table (also grid.csv)."""
    import json

    overrides = _checked_overrides(config, set_)
    prefect_defaults()
    from flows.backbone_grid import backbone_grid

    rows = backbone_grid(config_file=str(config) if config else None, overrides=overrides,
                         align_lambdas=list(align), infonce_lambdas=list(infonce))
    typer.echo(json.dumps(rows, indent=2))


@app.command("serve")
def serve_command(
    port: int = typer.Option(4200, "--port", help="Port of the local Prefect server (UI and API)."),
    no_server: bool = typer.Option(False, "--no-server", help="Use the server at PREFECT_API_URL instead of starting one."),
) -> None:
    """Start a local Prefect server (SQLite under PREFECT_HOME) and serve the pipeline's deployments.

    Then, from another shell: ``prefect deployment run 'mner-pipeline/default'``; watch it at
    http://127.0.0.1:PORT. Ctrl-C stops both.
    """
    from mner.server import server_env, start_server, stop_server

    prefect_defaults()
    server = None
    if not no_server:
        home = os.environ["PREFECT_HOME"]
        typer.echo(f"starting the Prefect server on http://127.0.0.1:{port} (PREFECT_HOME={home}) ...")
        server = start_server(home, port)
        os.environ.update(server_env(home, port))
        typer.echo(f"Prefect UI: http://127.0.0.1:{port}  (API {os.environ['PREFECT_API_URL']})")
    elif not os.environ.get("PREFECT_API_URL"):
        typer.echo("--no-server needs PREFECT_API_URL", err=True)
        raise typer.Exit(2)
    try:
        from flows.deployments import serve_pipeline

        serve_pipeline()
    finally:
        if server is not None:
            stop_server(server)


def _stage_dir(run_or_dir: str, stage: str, marker: str, artifacts_root: Path, option: str) -> Path:
    """A stage output's directory from a path holding ``marker`` or a ``stage`` key (a unique prefix is enough)."""
    path = Path(run_or_dir)
    if (path / marker).is_file():
        return path
    from mner.store import ArtifactStore

    try:
        return ArtifactStore(artifacts_root).find(stage, run_or_dir)
    except KeyError as exc:
        raise typer.BadParameter(f"{run_or_dir!r} names no single {stage} output ({exc.args[0]})", param_hint=option)


def _model_dir(reference: str, artifacts_root: Path) -> Path:
    """The trained model ``--run`` names (see :mod:`mner.trained`); exit 2 with one line listing the store's models."""
    from mner.trained import ModelNotFound, resolve_model

    try:
        return resolve_model(reference, artifacts_root)
    except ModelNotFound as exc:
        typer.echo(f"error: --run: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("predict")
def predict_command(
    run_or_dir: str = typer.Option(..., "--run", help=(
        "The model: latest (the newest in the store), latest:VARIANT, DATASET/VARIANT (e.g. "
        "twitter2015-sample/text+knowledge), DATASET/latest, a train-stage directory, or its key (a prefix will do).")),
    text: str = typer.Option(..., "--text", help="The post, split into tokens as `mner tag` splits raw text (the "
                                                 "model's tokenization, docs/tokenization.md)."),
    image: Optional[Path] = typer.Option(None, "--image", help="The post's image: captioned and OCR'd with the configured backends."),
    knowledge: Optional[str] = typer.Option(None, "--knowledge", help=(
        "Route of knowledge Z, as for `mner tag`: none, file (Z from --knowledge-text), llm, distilled, retrieved "
        "(default: the route the model was trained with).")),
    knowledge_text: Optional[str] = typer.Option(None, "--knowledge-text", help="Knowledge Z written by you, read after the text (route file)."),
    llm: bool = typer.Option(False, "--llm", help=(
        "The older spelling of --knowledge llm: ask the configured LLM (default: a local llama.cpp server), or with "
        "stage1.distill.enabled the newest model this config's distill stage trained.")),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the backends (default: the demo's)."),
    artifacts_root: Optional[Path] = typer.Option(None, "--artifacts-root", help="The store --run is looked up in (default: as for `mner run`)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="With an LLM route and the fused embedder: a backbone-stage directory or key."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE, e.g. stage1.llm.local_model=DIR."),
) -> None:
    """Tag one post with a trained model and print the entities as JSON.

    Knowledge Z comes by the route ``--knowledge`` names, else by the route the model was trained with (read from the
    store, as ``mner tag`` reads it); a text+knowledge model that would get no Z is refused, naming the fixes. The
    distilled route asks the model that wrote the tagger's Z, else the newest one this config's distill stage trained,
    unless ``stage1.llm.local_model`` names another.
    """
    import json

    from engine.knowledge_routes import LLM_ROUTES, route_names
    from engine.predict import predict_post
    from mner.config import load_config
    from tasks.common import read_prefect_secret

    if not text.split():
        raise typer.BadParameter("the text has no tokens", param_hint="--text")
    if image is not None and not image.is_file():
        raise typer.BadParameter(f"{image}: no such file", param_hint="--image")
    if knowledge is not None and knowledge not in route_names():
        _refuse(f"--knowledge {knowledge!r} is not a knowledge route ({', '.join(route_names())}); Z written by you goes "
                "in --knowledge-text")
    if knowledge_text is not None and (llm or knowledge not in (None, "file")):
        _refuse("--knowledge-text is Z of route file, and another route is asked too; drop one of them")
    artifacts_root = _store_root(artifacts_root)
    overrides = _checked_overrides(config, [*set_, f"artifacts_root={artifacts_root}"])
    cfg = load_config(config, overrides)
    backbone_dir = _stage_dir(backbone, "backbone", "backbone.json", artifacts_root, "--backbone") if backbone else None
    _check_backbone(llm or knowledge in LLM_ROUTES, cfg, backbone_dir)
    by_config = llm and cfg.stage1.distill.enabled and cfg.stage1.llm.local_model is None
    distilled = _distilled_model(cfg, artifacts_root, "--llm") if by_config else None  # --llm: this config's, found first
    model_dir = _model_dir(run_or_dir, artifacts_root)
    requested = knowledge or (("distilled" if cfg.stage1.distill.enabled else "llm") if llm else None)
    name, trained = _predict_route(model_dir, run_or_dir, requested or ("file" if knowledge_text is not None else None),
                                   knowledge_text, artifacts_root)
    _check_backbone(name in LLM_ROUTES, cfg, backbone_dir)
    cfg, identity, found_by = _route_asked(name, trained, cfg, config, overrides, artifacts_root, distilled)
    try:
        result = predict_post(model_dir, text, cfg, knowledge_text if name == "file" else None, image, name in LLM_ROUTES,
                              backbone_dir, read_prefect_secret, identity, route=found_by,
                              answer_form=trained.answer_form if trained else "full")
    except ValueError as exc:  # no Z for the post by its route, or a prompt over the budget
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


def _check_backbone(asks_llm: bool, cfg: PipelineConfig, backbone_dir: Path | None) -> None:
    """Exit 2 when the LLM is asked with the fused embedder's prompts and no ``--backbone``."""
    if asks_llm and cfg.stage1.retrieval.embedder == "fused" and backbone_dir is None:
        raise typer.BadParameter("the fused embedder needs a trained backbone", param_hint="--backbone")


def _predict_route(model_dir: Path, reference: str, requested: str | None, knowledge_text: str | None,
                   root: Path) -> tuple[str, TrainedRoute | None]:
    """The route of the post's Z, chosen as ``mner tag`` chooses it (its refusals spelt as predict's options, exit 2),
    and what the model read; a model directory outside the store (no manifest) takes the route asked, or none."""
    from mner.model_routes import PREDICT_WORDS, RouteRefused, choose_route, trained_route
    from mner.store import MANIFEST

    if not (model_dir / MANIFEST).is_file():
        if requested == "file" and knowledge_text is None:
            _refuse("--knowledge file reads Z from --knowledge-text, which is not given")
        return requested or "none", None
    trained = trained_route(model_dir, root)
    try:
        return choose_route(trained, requested, knowledge_text, False, reference, PREDICT_WORDS), trained
    except RouteRefused as exc:
        _refuse(str(exc))


def _refuse(message: str) -> NoReturn:
    """Exit 2 with one line naming the problem and its fix."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _distilled_model(cfg: PipelineConfig, root: Path, option: str) -> tuple[Path, str]:
    """The newest model this config's distill stage trained, and its key; exit 2 naming the fix when the store has none."""
    from mner.trained import DistilledModelNotFound, latest_distilled
    from tasks.distill import distilled_by

    try:
        return latest_distilled(root, *distilled_by(cfg))
    except DistilledModelNotFound as exc:
        _refuse(f"{option}: {exc}")


def _route_asked(name: str, trained: TrainedRoute | None, cfg: PipelineConfig, config: Path | None, overrides: dict,
                 root: Path, distilled: tuple[Path, str] | None) -> tuple[PipelineConfig, str | None, KnowledgeRoute | None]:
    """What answers route ``name``: the config (a distilled route's with its model as ``stage1.llm.local_model``), the
    answering model's name in the answer cache, and the retrieved route's searcher.

    The distilled model is ``stage1.llm.local_model`` when set, else ``distilled`` (``--llm``: this config's), else
    the one that wrote the tagger's Z, else the newest one this config's distill stage trained.
    """
    from mner.config import load_config

    if name == "retrieved":
        from flows.tag import route_settings, route_sources
        from tasks.tag import knowledge_route

        settings, runtime = route_settings(name, trained, cfg, str(root))  # type: ignore[arg-type]
        return cfg, None, knowledge_route(settings, route_sources(name, cfg, None), runtime, str(root))
    local = {"stage1.llm.backend": "transformers", "stage1.llm.base_url": None} if name == "distilled" else {}
    if name != "distilled" or cfg.stage1.llm.local_model is not None:
        return load_config(config, {**overrides, **local}), None, None
    from engine.distillation import MODEL_DIR, distilled_identity
    from mner.store import ArtifactStore

    if distilled is None and trained is not None and trained.distill_key:
        distilled = ArtifactStore(root).find("distill", trained.distill_key) / MODEL_DIR, trained.distill_key
    folder, key = distilled or _distilled_model(cfg, root, "--knowledge distilled")
    cfg_asked = load_config(config, {**overrides, **local, "stage1.llm.local_model": str(folder)})
    return cfg_asked, distilled_identity(key, cfg.stage1.llm.precision), None


app.command("tag")(tag_command)


if __name__ == "__main__":
    app()
