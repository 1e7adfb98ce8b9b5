"""Which knowledge route a trained model read, from the manifests in the artifact store, and which route a tag run takes.

A ``train`` output's manifest names its input data by the content hash of a ``knowledge`` output;
that output's manifest says where its Z came from: PGIM's files (``sources.knowledge_*``), a
``retrieved`` output (whose settings a tag run reuses), or an ``llm`` output, whose shards name the
answering model (``transformers:distilled-<key>:...`` for a distilled one), and the answer form Z was
cut to. :func:`trained_route` follows that chain; :func:`choose_route` applies a user's
override and refuses the combinations that would feed a model inputs it never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mner.post_tokens import style_for_dataset
from mner.store import MANIFEST, STORE_ID, ArtifactStore, sha256_json

TEXT_ONLY = "text"
DISTILLED_PREFIX = "transformers:distilled-"


@dataclass(frozen=True)
class TrainedRoute:
    """What a model read: its variant, dataset, and the knowledge route it was trained with (``unknown`` if untraced)."""

    variant: str
    dataset: str | None
    name: str
    endpoint: str | None = None
    distill_key: str | None = None
    detail: str = ""
    answer_form: str = "full"  # the form its Z was cut to (stage1.knowledge.answer_form), which a tag run keeps
    retrieved: dict[str, Any] | None = None  # the retrieved stage's settings (k, embedder, encoder, min_score, seed)


class RouteRefused(ValueError):
    """A tag run's knowledge route does not fit its model; the message names the fix."""


def model_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of a train output directory."""
    return json.loads((Path(model_dir) / MANIFEST).read_text(encoding="utf-8"))


def model_tokenization(model_dir: str | Path) -> str:
    """How the model's training text was split (its manifest's ``tokenization``), which raw text to tag is split by;
    for a model trained before that was recorded, the convention of its dataset's name, and for a model directory
    outside the store (no manifest), the default convention."""
    manifest = model_manifest(model_dir) if (Path(model_dir) / MANIFEST).is_file() else {}
    return manifest.get("tokenization") or style_for_dataset(manifest.get("dataset"))


def model_output(model_dir: str | Path) -> dict[str, Any]:
    """A train output as a stage output dict (stage, key, dir, files), from its manifest."""
    manifest = model_manifest(model_dir)
    return {"stage": manifest["stage"], "key": manifest["key"], "dir": str(Path(model_dir).resolve()),
            "files": manifest["files"]}


def _by_content(store: ArtifactStore, stage: str, digest: str) -> dict[str, Any] | None:
    """The manifest of the published ``stage`` output whose files hash to ``digest``."""
    return next((e["manifest"] for e in store.entries(stage)
                 if not e["incomplete"] and sha256_json(e["manifest"].get("files", {})) == digest), None)


def trained_route(model_dir: str | Path, root: str | Path) -> TrainedRoute:
    """The route the model at ``model_dir`` was trained with, traced through the store it lies in (else the one at ``root``)."""
    manifest = model_manifest(model_dir)
    variant = manifest.get("variant") or manifest.get("config", {}).get("variant") or TEXT_ONLY
    dataset = manifest.get("dataset")
    if variant == TEXT_ONLY:
        return TrainedRoute(variant, dataset, "none")
    own = Path(model_dir).resolve().parents[1]  # <root>/train/<key>: the store the model was trained in, when it is one
    store = ArtifactStore(own if (own / STORE_ID).is_file() else root)
    joined = _by_content(store, "knowledge", manifest.get("inputs", {}).get("data", ""))
    if joined is None:
        return TrainedRoute(variant, dataset, "unknown", detail=f"the knowledge output it was trained on is not in {store.root}")
    inputs, joined_config = joined.get("inputs", {}), joined.get("config", {})
    form = str(joined_config.get("answer_form", "full"))
    stage1 = inputs.get("stage1_knowledge") or inputs.get("llm_knowledge")  # the second: outputs from before the name
    if stage1 and joined_config.get("knowledge_source") == "retrieved":
        retrieved = _by_content(store, "retrieved", stage1)
        if retrieved is None:
            return TrainedRoute(variant, dataset, "unknown", detail=f"its retrieved knowledge is not in {store.root}")
        settings = {k: retrieved["config"][k] for k in ("k", "embedder", "encoder", "min_score", "seed")}
        return TrainedRoute(variant, dataset, "retrieved", answer_form=form, retrieved=settings)
    if stage1:
        merged = _by_content(store, "llm", stage1)
        shards = (merged or {}).get("config", {}).get("shards") or [{}]
        shard = _by_content(store, "llm-shard", (shards[0].get("output") or {}).get("output", ""))
        endpoint = (shard or {}).get("config", {}).get("endpoint")
        if endpoint is None:
            return TrainedRoute(variant, dataset, "unknown", detail=f"its LLM answers are not in {store.root}")
        if endpoint.startswith(DISTILLED_PREFIX):
            return TrainedRoute(variant, dataset, "distilled", endpoint, endpoint.removeprefix(DISTILLED_PREFIX).split(":")[0],
                                answer_form=form)
        return TrainedRoute(variant, dataset, "llm", endpoint, answer_form=form)
    if inputs.get("sources.knowledge_train"):
        return TrainedRoute(variant, dataset, "file", answer_form=form)
    backend = joined.get("config", {}).get("backend")
    return TrainedRoute(variant, dataset, str(backend) if backend else "unknown",
                        detail="" if backend else "its knowledge output names no source of Z")


@dataclass(frozen=True)
class RouteWords:
    """How a command spells a route and the Z a user gives, in the refusals of :func:`choose_route`."""

    route: str  # the prefix a route name is given with
    own_z: str  # how a user gives Z of the file route
    brings: str  # what is tagged, bringing (or not) its own Z


TAG_WORDS = RouteWords("knowledge=", "knowledge_file=FILE (JSONL of {\"id\", \"knowledge\"} rows, `mner tag --knowledge-file "
                       "FILE`) or a \"knowledge\" field in JSONL posts", "these posts bring")
PREDICT_WORDS = RouteWords("--knowledge ", "--knowledge-text TEXT (Z written by you)", "this post brings")


def choose_route(trained: TrainedRoute, requested: str | None, knowledge_file: str | None, inline_possible: bool,
                 model: str, words: RouteWords = TAG_WORDS) -> str:
    """The route a tag run takes: ``requested``, else the one the model was trained with; refused where it cannot work.

    ``knowledge_file``: Z the user gives for every post (a file of Z; ``mner predict``: the text), which asks for the
    file route when no other is requested; ``inline_possible``: the input is JSONL, whose posts may carry their own
    ``knowledge``. ``words`` spell the fixes the way the command takes them.
    """
    w = words
    fix = (f"choose a route: {w.own_z}, {w.route}llm (the configured LLM), {w.route}distilled, or {w.route}retrieved "
           "(the teacher's answers for the most similar train posts)")
    if trained.variant == TEXT_ONLY:
        if requested not in (None, "none"):
            raise RouteRefused(f"model {model} is text-only: it never read knowledge Z, so {w.route}{requested} would "
                               f"feed it inputs it was not trained on; leave {w.route.strip('=- ')} unset (or none)")
        return "none"
    route = requested or ("file" if knowledge_file else trained.name)  # a file of Z given is the file route asked for
    if route == "none":
        raise RouteRefused(f"model {model} is a text+knowledge model (trained with Z from route {trained.name}) and "
                           f"needs knowledge Z for every post; {fix}")
    if route == "unknown":
        raise RouteRefused(f"cannot tell which knowledge route model {model} was trained with ({trained.detail}); {fix}")
    if route == "file" and not knowledge_file and not inline_possible:
        raise RouteRefused(f"model {model} reads knowledge Z{' from a file' if requested is None else ''}, and "
                           f"{w.brings} none: give {w.own_z}, or choose "
                           f"{w.route}llm or {w.route}distilled")
    return route
