"""Stage ``retrieved``: Z from the teacher's answers for each post's most similar train posts, no LLM.

The index and the search live in :mod:`engine.retrieved_knowledge`; the teacher's answers are read
as the distill stage reads them (:func:`engine.distillation.teacher_answers`: PGIM's knowledge file
aligned to the train split, or a JSONL of ``{"id", "knowledge"}``). The stage writes one JSON-lines
file per split, ``{"id", "knowledge", "neighbours"}`` per post, which the ``knowledge`` stage joins
as it joins the llm stage's answers.
"""

from __future__ import annotations

from typing import Any

from engine.distillation import teacher_answers
from engine.retrieval import EmbedderOptions, make_embedder, split_samples
from engine.retrieved_knowledge import TrainAnswerIndex
from mner.pgim import check_aligned
from mner.samples import SPLITS, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


@stage_task("retrieved")
def retrieved_knowledge(run: StageRun, data: dict[str, Any], captions: dict[str, Any] | None, ocr: dict[str, Any] | None,
                        sources: dict[str, str | None], k: int, embedder: str, encoder: str, min_score: float, seed: int,
                        artifacts_root: str, answer_form: str = "full", min_aligned_share: float = 0.0) -> dict[str, Any]:
    """Write ``{split}.jsonl`` with each post's retrieved Z; count the posts left without a neighbour.

    ``sources["answers"]`` is the teacher's answers for the train split, each used in ``answer_form``; answers for
    less than ``min_aligned_share`` of the train posts fail the stage (a file of other data), naming the first posts.
    """
    log = stage_logger()
    if not sources.get("answers"):
        raise ValueError("retrieved: no teacher answers; set stage1.knowledge.retrieved.answers or dataset.knowledge_train")
    train = split_samples(data, "train", captions, ocr)
    found, stray = teacher_answers(sources["answers"], train, answer_form)
    check_aligned(sources["answers"], "train", len(train), [post.id for post in train if post.id not in found],
                  min_aligned_share, "teacher answers", "set stage1.knowledge.retrieved.answers (or dataset.knowledge_train) "
                  "to the teacher's answers for dataset.train")
    for bad in stray[:20]:
        log.warning("retrieved: %s: %s", bad["where"], bad["reason"])
    answers = {sample_id: text for sample_id, (text, _where) in found.items()}
    index = TrainAnswerIndex(train, answers, make_embedder(embedder, EmbedderOptions(encoder=encoder, seed=seed)))
    counts: dict[str, Any] = {"train_posts_with_answers": len(index.posts), "train_posts": len(train),
                              "answers_for_no_train_post": len(stray)}
    for split in SPLITS:
        posts = train if split == "train" else split_samples(data, split, captions, ocr)
        retrieved = index.knowledge(posts, k, min_score, own_ids=split == "train")
        write_jsonl(run.work_dir / f"{split}.jsonl", [{"id": post.id, "knowledge": z.knowledge, "neighbours": z.neighbours}
                                                      for post, z in zip(posts, retrieved)])
        alone = [post.id for post, z in zip(posts, retrieved) if not z.neighbours]
        counts[split] = {"posts": len(posts), "without_neighbour": len(alone), "first_without_neighbour": alone[:10]}
        log.info("retrieved %s: %d posts, k=%d, %d without a neighbour scoring at least %s (%s)", split, len(posts), k,
                 len(alone), min_score, embedder)
    return counts
