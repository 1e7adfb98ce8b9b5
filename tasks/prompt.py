"""Stage ``prompts``: one few-shot chat prompt per tweet, from the template files and the retrieved examples.

Templates, the token budget and the fitting live in :mod:`engine.prompting`; a sample over budget
fails the stage, naming every such sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from engine.prompting import PromptBudgetError, example_shots, fit_prompt, load_template, make_token_counter
from engine.retrieval import load_examples, split_samples
from engine.retrieved_knowledge import answers_as_lines
from mner.samples import SPLITS, Sample, read_jsonl, write_jsonl
from mner.store import StageRun
from tasks.common import stage_logger, stage_task


def _retrieved_ids(path: Path, rows: list[dict[str, Any]], queries: Sequence[Sample]) -> list[list[str]]:
    """Example image ids per query from a retrieval ``{split}.jsonl``, checked against the split."""
    if len(rows) != len(queries):
        raise ValueError(f"{path}: {len(rows)} rows for {len(queries)} samples")
    for number, (row, query) in enumerate(zip(rows, queries), 1):
        if row.get("id") != query.id:
            raise ValueError(f"{path}:{number}: id {row.get('id')!r} where the split has {query.id!r}")
    return [[hit["image_id"] for hit in row["examples"]] for row in rows]


def _similar_answers(similar: dict[str, Any] | None, split: str, queries: Sequence[Sample]) -> list[str]:
    """What each query's ``${similar}`` shows: its neighbours' answers from a ``retrieved`` output ("" without one)."""
    if similar is None:
        return [""] * len(queries)
    path = Path(similar["dir"]) / f"{split}.jsonl"
    rows = read_jsonl(path)
    if len(rows) != len(queries):
        raise ValueError(f"{path}: {len(rows)} rows for {len(queries)} samples")
    for number, (row, query) in enumerate(zip(rows, queries), 1):
        if row.get("id") != query.id:
            raise ValueError(f"{path}:{number}: id {row.get('id')!r} where the split has {query.id!r}")
    return [answers_as_lines(row["knowledge"]) for row in rows]


@stage_task("prompts")
def build_prompts(run: StageRun, data: dict[str, Any], retrieval: dict[str, Any], captions: dict[str, Any] | None,
                  ocr: dict[str, Any] | None, sources: dict[str, str], n_examples: int, max_prompt_tokens: int,
                  tokenizer: str, artifacts_root: str, similar: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chat prompts for every tweet: head, the ``n_examples`` best retrieved examples, the query.

    ``similar`` (a ``retrieved`` output) fills the query template's ``${similar}`` with the teacher's
    answers for each post's most similar train posts; a template with the placeholder needs it, and
    one without it refuses it.

    Writes ``{split}.jsonl`` rows ``{"id", "messages", "example_ids", "prompt_tokens",
    "dropped_examples", "truncated"}``; queries that cannot fit the budget fail the stage together.
    """
    log = stage_logger()
    template = load_template(sources)
    if template.uses_similar != (similar is not None):
        raise ValueError(f"{sources['template_query']}: the query template {'uses' if template.uses_similar else 'has no'} "
                         "${similar}, the teacher's answers for similar train posts, and stage1.prompt.similar_answers is "
                         f"{'0' if similar is None else 'set'}; set it to k >= 1 with a template that shows them "
                         "(prompts/distill_entities_similar_v1), or 0 with one that does not")
    count = make_token_counter(tokenizer)
    shots = example_shots(load_examples(sources), split_samples(data, "train", captions, ocr), sources["examples"])
    summary: dict[str, Any] = {"template_version": template.version}
    failures: list[str] = []
    for split in SPLITS:
        queries = split_samples(data, split, captions, ocr)
        path = Path(retrieval["dir"]) / f"{split}.jsonl"
        retrieved = _retrieved_ids(path, read_jsonl(path), queries)
        answers = _similar_answers(similar, split, queries)
        rows = []
        for number, (query, ids, similar_text) in enumerate(zip(queries, retrieved, answers), 1):
            unknown = [i for i in ids if i not in shots]
            if unknown:
                raise ValueError(f"{path}:{number}: examples {unknown} are not in {sources['examples']}")
            try:
                prompt = fit_prompt(template, [shots[i] for i in ids[:n_examples]], query, count, max_prompt_tokens,
                                    similar_text)
            except PromptBudgetError as err:
                failures.append(str(err))
                continue
            rows.append({"id": query.id, "messages": prompt.messages, "example_ids": prompt.example_ids,
                         "prompt_tokens": prompt.prompt_tokens, "dropped_examples": prompt.dropped_examples,
                         "truncated": prompt.truncated})
        write_jsonl(run.work_dir / f"{split}.jsonl", rows)
        tokens = [r["prompt_tokens"] for r in rows]
        summary[split] = {"prompts": len(rows), "with_dropped": sum(1 for r in rows if r["dropped_examples"]),
                          "truncated": sum(1 for r in rows if r["truncated"]),
                          "fewer_than_n": sum(1 for ids in retrieved if len(ids) < n_examples),
                          "max_tokens": max(tokens, default=0), "mean_tokens": round(sum(tokens) / max(len(tokens), 1), 1)}
        log.info("prompts %s: %s", split, summary[split])
    if failures:
        raise PromptBudgetError(f"{len(failures)} samples do not fit max_prompt_tokens={max_prompt_tokens}:\n"
                                + "\n".join(failures[:50]))
    return summary
