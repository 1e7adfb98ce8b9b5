"""Knowledge without generation: a post's Z is the teacher's answers for its most similar train posts.

The train posts that have a teacher answer are embedded by a retrieval embedder
(:mod:`engine.retrieval`: tweet text, caption and OCR, as the ``retrieve`` stage embeds them) into an
exact FAISS inner-product index. Each post gets its ``k`` nearest train posts scoring at least
``min_score``, and their answers, nearest first, joined by a blank line, are its Z. A train post
never retrieves itself: its own id is filtered out, as :func:`engine.retrieval.search` filters a
query's own image. A post whose neighbours all score below ``min_score`` gets an empty Z, and is
counted. No LLM runs: the cost is one embedding pass over the posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from engine.retrieval import Embedder, build_index, search
from mner.samples import Sample

SEPARATOR = "\n\n"


def answers_as_lines(knowledge: str) -> str:
    """A retrieved Z as a prompt shows it: one neighbour's answer per line, nearest first."""
    return "\n".join(part.strip() for part in knowledge.split(SEPARATOR) if part.strip())


@dataclass(frozen=True)
class RetrievedKnowledge:
    """One post's Z and the train posts it came from, as ``{"id", "score"}``, nearest first."""

    knowledge: str
    neighbours: list[dict[str, float | str]]


class TrainAnswerIndex:
    """The train posts that have a teacher answer, embedded and indexed for :meth:`knowledge`."""

    def __init__(self, train: Sequence[Sample], answers: dict[str, str], embedder: Embedder) -> None:
        self.posts = [post for post in train if answers.get(post.id, "").strip()]
        if not self.posts:
            raise ValueError("no train post has a teacher answer: nothing to retrieve knowledge from")
        self.answers, self.embedder = answers, embedder
        self.index = build_index(embedder.embed(self.posts))

    def knowledge(self, posts: Sequence[Sample], k: int, min_score: float, own_ids: bool) -> list[RetrievedKnowledge]:
        """Z for each of ``posts``; ``own_ids``: the posts are train posts, each of which must not retrieve itself."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ids = [post.id for post in self.posts]
        hits = search(self.index, self.embedder.embed(posts), [p.id if own_ids else None for p in posts], ids, k)
        found = []
        for row in hits:
            kept = [{"id": hit["image_id"], "score": hit["score"]} for hit in row if hit["score"] >= min_score]
            found.append(RetrievedKnowledge(SEPARATOR.join(self.answers[str(h["id"])].strip() for h in kept), kept))
        return found
