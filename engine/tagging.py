"""Tag a shard of raw posts with a trained model: tokenize, check the budget, find Z by route, predict, list entities.

The model is loaded once per process (every shard a worker runs reuses it). Each post ends as a
tagged row or as a rejected one with its ``file:line`` and the reason, never dropped:

- tagged: ``{"id", "where", "tokens", "tags", "entities", "knowledge"}`` (+ ``text`` and the
  entities' character spans ``chars`` for raw text, + ``image`` when it has one); an entity is
  ``{"type", "text", "start", "end"}`` with the half-open token span ``[start, end)``;
- rejected: ``{"where", "id", "reason"}``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from engine.knowledge_routes import KnowledgeRoute, knowledge_for
from mner.post_tokens import DEFAULT_STYLE, join_tokens, tokenize_post
from mner.posts import RawPost
from mner.samples import Sample
from mner.tags import iob2_spans

if TYPE_CHECKING:
    from models.encoding import EncodedSentence

LLM_FAILED = "no knowledge from the LLM"  # a reason a rerun may fix: the shard is published incomplete
_LOADED: dict[str, Any] = {}
_LOADING = threading.Lock()


def loaded_tagger(model_dir: str | Path) -> tuple[Any, Any, Any, bool]:
    """(tagger, sentence encoder, device, bf16) of ``model_dir``, loaded once per process."""
    from engine.runtime import pick_device, use_bf16
    from engine.taggers import load_tagger

    key = str(Path(model_dir).resolve())
    with _LOADING:
        if key not in _LOADED:
            device = pick_device("auto")
            tagger, encoder = load_tagger(model_dir, device)
            _LOADED.clear()  # one model at a time: a long-lived worker does not pile them up
            _LOADED[key] = (tagger, encoder, device, use_bf16("auto", device))
        return _LOADED[key]


def entities_of(tokens: list[str], tags: list[str], text: str | None = None,
                spans: list[tuple[int, int]] | None = None, style: str = DEFAULT_STYLE) -> list[dict[str, Any]]:
    """Entities of a tagged post: type, text, token span ``[start, end)``; with the raw text, its words and ``chars``.

    Without the raw text, an entity's text is its tokens joined as the tokenization ``style`` reads them.
    """
    found = []
    for span in iob2_spans(tags):
        entity: dict[str, Any] = {"type": span.type, "text": join_tokens(tokens[span.start:span.end], style),
                                  "start": span.start, "end": span.end}
        if text is not None and spans is not None:
            first, last = spans[span.start][0], spans[span.end - 1][1]
            entity.update(text=text[first:last], chars=[first, last])
        found.append(entity)
    return found


def raw_tokens(text: str, style: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The tokens of raw ``text`` in the convention ``style`` and each one's character span in it."""
    tokens = tokenize_post(text, style)
    return [t.text for t in tokens], [(t.start, t.end) for t in tokens]


def _tokens(post: RawPost, style: str) -> tuple[list[str], list[tuple[int, int]] | None]:
    if post.tokens is not None:
        return post.tokens, None
    return raw_tokens(post.text or "", style)


def tag_posts(posts: Iterable[RawPost], model_dir: str | Path, route: KnowledgeRoute, style: str,
              batch_size: int = 64) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Tag ``posts`` (one shard): (tagged rows, rejected rows, summary), both lists in input order."""
    from engine.taggers import predict

    started = time.perf_counter()
    tagger, encoder, device, bf16 = loaded_tagger(model_dir)
    rejected: list[dict[str, Any]] = []
    ready: list[tuple[RawPost, list[str], list[tuple[int, int]] | None, EncodedSentence]] = []
    for post in posts:
        if post.problem is not None:
            rejected.append({"where": post.where, "id": post.id, "reason": post.problem})
            continue
        tokens, spans = _tokens(post, style)
        try:
            text_only = encoder.encode(tokens)
        except ValueError as err:
            rejected.append({"where": post.where, "id": post.id, "reason": f"longer than the model's budget: {err}"})
            continue
        ready.append((post, tokens, spans, text_only))
    samples = [Sample(post.id, tokens, source=post.where, knowledge=post.knowledge, image_path=post.image)
               for post, tokens, _, _ in ready]
    found = knowledge_for(route, samples)
    kept = [(item, z) for item, (z, reason) in zip(ready, found) if reason is None]
    rejected += [{"where": item[0].where, "id": item[0].id, "reason": reason}
                 for item, (_, reason) in zip(ready, found) if reason is not None]
    encoded = [encoder.encode(tokens, None, z) if z else text_only for (_, tokens, _, text_only), z in kept]
    predicted = predict(tagger, encoded, device, bf16, batch_size) if encoded else []
    tagged = []
    for ((post, tokens, spans, _), z), tags in zip(kept, predicted):
        row: dict[str, Any] = {"id": post.id, "where": post.where}
        if post.text is not None:
            row["text"] = post.text
        row.update(tokens=tokens, tags=tags, entities=entities_of(tokens, tags, post.text, spans, style), knowledge=z)
        if post.image:
            row["image"] = post.image
        tagged.append(row)
    rejected.sort(key=lambda r: _line_of(r["where"]))
    return tagged, rejected, shard_summary(tagged, rejected, time.perf_counter() - started)


def _line_of(where: str) -> int:
    number = where.rpartition(":")[2]
    return int(number) if number.isdigit() else 0


def shard_summary(tagged: list[dict[str, Any]], rejected: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts of one shard: posts, tagged, rejected (by reason), entities by type and by (text, type), seconds."""
    entities = Counter(f"{e['text']}\t{e['type']}" for row in tagged for e in row["entities"])
    return {"posts": len(tagged) + len(rejected), "tagged": len(tagged), "rejected": len(rejected),
            "reasons": dict(Counter(r["reason"].split(":")[0] for r in rejected)),
            "types": dict(Counter(e["type"] for row in tagged for e in row["entities"])),
            "entities": dict(entities.most_common(200)), "seconds": round(seconds, 3),
            "retryable": sum(1 for r in rejected if r["reason"].startswith(LLM_FAILED))}


def marked_post(row: dict[str, Any]) -> str:
    """A tagged post as markdown, each entity in bold with its type: ``**Lady Gaga** `PER` out in **NYC** `LOC` .``"""
    words = list(row["tokens"])
    for entity in reversed(row["entities"]):
        words[entity["start"]:entity["end"]] = [f"**{' '.join(words[entity['start']:entity['end']])}** `{entity['type']}`"]
    return " ".join(words).replace("|", "\\|")
