"""Knowledge Z for posts outside the pipeline's splits, by route: one function maps a route's name to the Z of a batch.

A route is a knowledge backend of the pipeline (``stage1.knowledge.backend``) as ``mner tag`` and
``mner predict`` use it on new posts:

- ``none``: no Z (a text-only model);
- ``file``: each post's own ``knowledge`` (a JSONL field), else its id's row in a JSONL file of
  ``{"id", "knowledge"}`` rows;
- ``llm``: the configured LLM answers the pipeline's prompt (retrieved examples, template, budget),
  through the per-sample answer cache;
- ``distilled``: the same, asked of a distilled local model (transformers backend);
- ``retrieved``: the teacher's answers for the post's most similar train posts (no LLM).

Z of every route is cut to the answer form the model's Z was cut to (``stage1.knowledge.answer_form``).

Another backend plugs in with :func:`register_route`; :func:`knowledge_for` dispatches on the name.
A post whose Z cannot be had gets a reason instead, never an empty Z in silence.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mner import formats, pgim
from mner.config import PipelineConfig
from mner.pgim import answer_in_form
from mner.samples import Sample

if TYPE_CHECKING:
    from engine.llm_client import SecretReader

LLM_ROUTES = ("llm", "distilled")


@dataclass
class KnowledgeRoute:
    """Where Z comes from, and what the route needs to get it.

    ``config`` gives the LLM routes their stage-1 settings; ``endpoint`` names the answering model in
    the answer cache; ``base_url`` (a server) or ``local_model`` (transformers) is where it runs this time.
    """

    name: str
    config: PipelineConfig | None = None
    knowledge_file: str | None = None
    endpoint: str | None = None
    base_url: str = ""
    local_model: str | None = None
    artifacts_root: str = ""
    backbone_dir: str | None = None
    read_secret: SecretReader | None = None
    answer_form: str = "full"  # every Z is cut to it (mner.pgim.answer_in_form), as the model's Z was
    retrieved: dict[str, Any] | None = None  # retrieved: k, embedder, encoder, min_score, seed; train, answers, captions files


# Z (or None) and the reason there is none (or None), per post
Found = list[tuple[str | None, str | None]]
RouteFinder = Callable[[KnowledgeRoute, list[Sample]], Found]
_ROUTES: dict[str, RouteFinder] = {}


def register_route(name: str) -> Callable[[RouteFinder], RouteFinder]:
    """Register ``finder(route, posts) -> [(knowledge, reason)]`` as the route ``name``."""

    def decorate(finder: RouteFinder) -> RouteFinder:
        _ROUTES[name] = finder
        return finder

    return decorate


def route_names() -> tuple[str, ...]:
    """The routes :func:`knowledge_for` knows."""
    return tuple(_ROUTES)


def knowledge_for(route: KnowledgeRoute, posts: list[Sample]) -> Found:
    """Z of every post by ``route`` (``(knowledge, None)``), or why there is none (``(None, reason)``), in order."""
    finder = _ROUTES.get(route.name)
    if finder is None:
        raise ValueError(f"knowledge route {route.name!r} is not known here; routes: {', '.join(_ROUTES)}")
    found = finder(route, posts) if posts else []
    if len(found) != len(posts):
        raise RuntimeError(f"knowledge route {route.name!r} gave {len(found)} answers for {len(posts)} posts")
    return [(answer_in_form(z, route.answer_form) if z is not None else None, reason) for z, reason in found]


@register_route("none")
def _no_knowledge(route: KnowledgeRoute, posts: list[Sample]) -> Found:
    return [(None, None) for _ in posts]


_FILES: dict[tuple[str, int, int], dict[str, str]] = {}
_FILES_LOCK = threading.Lock()


def knowledge_file_rows(path: str | Path) -> dict[str, str]:
    """``id -> knowledge`` of a JSONL file of ``{"id", "knowledge"}`` rows, read once per process and file version.

    A bad line raises ``ValueError`` naming ``file:line``.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    with _FILES_LOCK:
        if key not in _FILES:
            rows: dict[str, str] = {}
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        rows[str(row["id"])] = str(row["knowledge"] or "")
                    except (ValueError, KeyError, TypeError) as err:
                        raise ValueError(f"{path}:{number}: not a {{\"id\", \"knowledge\"}} row ({err})") from err
            _FILES.clear()
            _FILES[key] = rows
        return _FILES[key]


@register_route("file")
def _file_knowledge(route: KnowledgeRoute, posts: list[Sample]) -> Found:
    rows = knowledge_file_rows(route.knowledge_file) if route.knowledge_file else {}
    found: Found = []
    for post in posts:
        text = post.knowledge if post.knowledge is not None else rows.get(post.id)
        if text is None or not text.strip():
            where = f"its \"knowledge\" field nor {route.knowledge_file}" if route.knowledge_file else "its \"knowledge\" field"
            found.append((None, f"no knowledge Z for id {post.id!r} in {where}"))
        else:
            found.append((text, None))
    return found


def image_text(image: str | Path, config: PipelineConfig) -> dict[str, Any]:
    """Caption and OCR text of one image with the configured backends; errors are reported, not raised."""
    from engine.captioners import caption_rows
    from engine.ocr import ocr_rows

    row = [Sample("post", [], image_id=Path(image).stem)]
    out: dict[str, Any] = {"caption": "", "ocr": "", "errors": []}
    caption = config.stage1.caption
    if caption.backend != "none" and (caption.backend != "file" or config.dataset.captions is not None):
        sources = {"captions": str(config.dataset.captions)} if caption.backend == "file" else {"post": str(image)}
        results, _, _ = caption_rows(row, sources, caption.backend, caption.model, 1, caption.max_new_tokens, caption.dtype)
        out["caption"] = results[0]["caption"] or ""
        if results[0]["error"]:
            out["errors"].append({"stage": "caption", **results[0]["error"]})
    if config.stage1.ocr.backend != "none":
        results, _ = ocr_rows(row, {"post": str(image)}, config.stage1.ocr.backend, config.stage1.ocr.min_score)
        out["ocr"] = results[0]["text"] or ""
        if results[0]["error"]:
            out["errors"].append({"stage": "ocr", **results[0]["error"]})
    return out


def prompt_rows(queries: list[Sample], config: PipelineConfig, backbone_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The pipeline's prompt for each query (retrieved examples, template, token budget) as ``{"id", "messages"}``.

    A query that does not fit ``max_prompt_tokens`` gets ``{"id", "error"}`` instead. The ``fused``
    embedder needs ``backbone_dir`` (a backbone-stage output directory).
    """
    from engine.prompting import (PromptBudgetError, example_shots, fit_prompt, load_template, make_token_counter,
                                  template_sources)
    from engine.retrieval import EmbedderOptions, load_examples, make_embedder, retrieve

    ds, s1 = config.dataset, config.stage1
    sources = {"examples": str(ds.examples), "examples_entities": str(ds.examples_entities)}
    shots: list[list[tuple[Sample, str]]] = [[] for _ in queries]
    if s1.prompt.n_examples and ds.examples is not None:
        train = formats.read_conll(ds.train, repair=True).sentences
        by_image = example_shots(load_examples(sources), train, ds.examples)
        embedder = make_embedder(s1.retrieval.embedder, EmbedderOptions(
            encoder=s1.retrieval.encoder, seed=s1.retrieval.seed, pooling=s1.retrieval.fused_pooling,
            backbone_dir=str(backbone_dir) if backbone_dir else None))
        _, hits = retrieve(queries, [item for item, _ in by_image.values()], embedder, s1.retrieval.top_n)
        shots = [[by_image[hit["image_id"]] for hit in found[: s1.prompt.n_examples]] for found in hits]
    template = load_template({**template_sources(s1.prompt.template_dir), **sources})
    if template.uses_similar != bool(s1.prompt.similar_answers):
        raise ValueError(f"{s1.prompt.template_dir}: the query template {'uses' if template.uses_similar else 'has no'} "
                         f"${{similar}} and stage1.prompt.similar_answers is {s1.prompt.similar_answers}; use the config "
                         "the model was distilled with")
    similar = similar_answer_lines(queries, config) if template.uses_similar else [""] * len(queries)
    count = make_token_counter(s1.prompt.tokenizer)
    rows: list[dict[str, Any]] = []
    for query, examples, similar_text in zip(queries, shots, similar):
        try:
            rows.append({"id": query.id, "messages": fit_prompt(template, examples, query, count,
                                                                 s1.prompt.max_prompt_tokens, similar_text).messages})
        except PromptBudgetError as err:
            rows.append({"id": query.id, "error": {"reason": str(err)}})
    return rows


def similar_answer_lines(queries: list[Sample], config: PipelineConfig) -> list[str]:
    """What each query's ``${similar}`` shows: the teacher's answers for its ``stage1.prompt.similar_answers`` most
    similar train posts, as the pipeline's ``retrieved`` stage finds them."""
    from engine.retrieved_knowledge import answers_as_lines

    ds, s1 = config.dataset, config.stage1
    r = s1.knowledge.retrieved
    answers = r.answers or ds.knowledge_train
    if answers is None:
        raise ValueError("the prompt shows the teacher's answers for similar train posts (stage1.prompt.similar_answers), "
                         "and the config names none: set dataset.knowledge_train or stage1.knowledge.retrieved.answers")
    captions = ds.captions if s1.caption.backend == "file" else None
    settings = {"train": str(ds.train), "answers": str(answers), "captions": str(captions) if captions else None,
                "embedder": r.embedder, "encoder": r.encoder, "seed": s1.retrieval.seed}
    found = train_answer_index(settings, s1.knowledge.answer_form).knowledge(queries, s1.prompt.similar_answers,
                                                                            r.min_score, own_ids=False)
    return [answers_as_lines(z.knowledge) for z in found]


def _ask_llm(route: KnowledgeRoute, posts: list[Sample]) -> Found:
    from engine.answer_cache import default_cache_dir
    from engine.answers import answer_rows
    from engine.generation_process import generation_process
    from engine.llm_client import LLMSettings
    from engine.local_generate import answering_identity

    if route.config is None:
        raise ValueError(f"knowledge route {route.name!r} needs the pipeline config that names the LLM")
    llm = route.config.stage1.llm
    for post in posts:
        if post.image_path:
            seen = image_text(post.image_path, route.config)
            post.caption, post.ocr = seen["caption"], seen["ocr"]
    rows = prompt_rows(posts, route.config, route.backbone_dir)
    local = llm.backend == "transformers"
    settings = LLMSettings.from_config(llm, route.base_url, route.endpoint or answering_identity(llm))
    generator = generation_process(route.local_model or llm.local_model, llm.precision) if local else None
    results, _ = answer_rows(rows, settings, default_cache_dir(route.artifacts_root), "posts", 1, llm.max_answer_chars,
                             read_secret=route.read_secret, generator=generator, batch_size=llm.batch_size)
    return [(r["knowledge"], None) if r["error"] is None else (None, f"no knowledge from the LLM: {r['error']['reason']}")
            for r in results]


register_route("llm")(_ask_llm)
register_route("distilled")(_ask_llm)


_INDEXES: dict[tuple[Any, ...], Any] = {}
_INDEXES_LOCK = threading.Lock()


def train_answer_index(settings: dict[str, Any], form: str) -> Any:
    """The train posts (with their captions) that have a teacher answer, embedded and indexed once per process."""
    from dataclasses import replace

    from engine.distillation import teacher_answers
    from engine.retrieval import EmbedderOptions, make_embedder
    from engine.retrieved_knowledge import TrainAnswerIndex

    key = tuple(settings.get(k) for k in ("train", "answers", "captions", "embedder", "encoder", "seed")) + (form,)
    with _INDEXES_LOCK:
        if key not in _INDEXES:
            train = formats.read_conll(settings["train"], repair=True).sentences
            captions = pgim.read_captions(settings["captions"]) if settings.get("captions") else {}
            train = [replace(s, caption=captions.get(s.image_id or "", "")) for s in train]
            found, _ = teacher_answers(settings["answers"], train, form)
            embedder = make_embedder(settings["embedder"], EmbedderOptions(encoder=settings["encoder"], seed=settings["seed"]))
            _INDEXES.clear()
            _INDEXES[key] = TrainAnswerIndex(train, {i: text for i, (text, _) in found.items()}, embedder)
        return _INDEXES[key]


@register_route("retrieved")
def _retrieved_knowledge(route: KnowledgeRoute, posts: list[Sample]) -> Found:
    settings = route.retrieved
    if not settings or not settings.get("train") or not settings.get("answers"):
        raise ValueError("knowledge route 'retrieved' needs the train split and the teacher's train answers "
                         "(dataset.train, dataset.knowledge_train or stage1.knowledge.retrieved.answers)")
    index = train_answer_index(settings, route.answer_form)
    found = index.knowledge(posts, settings["k"], settings["min_score"], own_ids=False)
    return [(z.knowledge, None) if z.neighbours else
            (None, f"no train post scores at least min_score={settings['min_score']} for it") for z in found]
