"""Few-shot prompts for the auxiliary-knowledge LLM, built from template files under a token budget.

A template folder (``prompts/pgim_v1/``) holds ``head.txt`` (the task, as the system message),
``example.txt`` and ``query.txt`` (one post: ``${text}``, ``${caption}``, ``${ocr}``; the query may also
show ``${similar}``, the teacher's answers for the post's most similar train posts) and
``VERSION``. The stage gets the files through ``sources`` (see :func:`template_sources`), so
their content hashes enter its cache key. A prompt is a chat: system = head; per in-context
example a user message (the example post) and an assistant message (its hand-written answer),
most similar example first; last, the query post as a user message, its answer left to the LLM.

Budget: ``prompt_tokens`` is the sum over messages of the content's token count plus
``MESSAGE_OVERHEAD`` (role markers of a chat template). Over budget, examples are dropped, least
similar first; if the query alone is still over, only its OCR text, then its caption, are cut
(word by word from the end); if that is not enough, the stage fails naming every such sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Callable, Sequence

from engine.retrieval import example_items
from mner.config import DEFAULT_ENCODER
from mner.pgim import ManualExample
from mner.samples import Sample

TEMPLATE_FILES = {"template_head": "head.txt", "template_example": "example.txt",
                  "template_query": "query.txt", "template_version": "VERSION"}
PLACEHOLDERS = {"text", "caption", "ocr"}
SIMILAR = "similar"  # the query's placeholder for the teacher's answers to its most similar train posts
MESSAGE_OVERHEAD = 4
EMPTY = "(none)"
TokenCounter = Callable[[str], int]


class PromptBudgetError(ValueError):
    """A query does not fit the token budget even without examples, caption and OCR text."""


@dataclass(frozen=True)
class PromptTemplate:
    """The three template texts and the template version."""

    version: str
    head: str
    example: Template
    query: Template

    @property
    def uses_similar(self) -> bool:
        """Whether the query shows the teacher's answers for similar train posts (``${similar}``)."""
        return SIMILAR in self.query.get_identifiers()

    def post(self, template: Template, item: Sample, similar: str = "") -> str:
        """One post rendered through ``template`` (empty caption, OCR or similar answers shown as ``(none)``)."""
        return template.substitute(text=item.text, caption=item.caption or EMPTY, ocr=item.ocr or EMPTY,
                                   similar=similar or EMPTY)


@dataclass
class Prompt:
    """A fitted prompt: the chat messages and what the budget did to it."""

    messages: list[dict[str, str]]
    example_ids: list[str]
    prompt_tokens: int
    dropped_examples: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)


def template_sources(folder: str | Path) -> dict[str, str]:
    """``sources`` entries for the template files of ``folder`` (merge them with the example files)."""
    return {name: str(Path(folder) / filename) for name, filename in TEMPLATE_FILES.items()}


def _read_template(path: str, allowed: set[str]) -> Template:
    """A template file as a ``string.Template``; bad ``$`` syntax or unknown placeholders raise, naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise FileNotFoundError(f"prompt template {path}: {err.strerror}") from err
    template = Template(text)
    if not template.is_valid():
        raise ValueError(f"{path}: invalid placeholder syntax (write $$ for a literal $)")
    unknown = set(template.get_identifiers()) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown placeholders {sorted(unknown)}; allowed: {sorted(allowed) or 'none'}")
    return template


def load_template(sources: dict[str, str]) -> PromptTemplate:
    """Read the template files named in ``sources`` (keys of ``TEMPLATE_FILES``)."""
    missing = [name for name in TEMPLATE_FILES if not sources.get(name)]
    if missing:
        raise ValueError(f"sources lacks the prompt template entries {missing}")
    version = _read_template(sources["template_version"], set()).template
    if not version:
        raise ValueError(f"{sources['template_version']}: empty template version")
    head = _read_template(sources["template_head"], set()).substitute()
    return PromptTemplate(version, head, _read_template(sources["template_example"], PLACEHOLDERS),
                          _read_template(sources["template_query"], PLACEHOLDERS | {SIMILAR}))


@lru_cache(maxsize=4)
def make_token_counter(tokenizer: str = DEFAULT_ENCODER) -> TokenCounter:
    """Token counter: ``whitespace`` (words) or a transformers tokenizer (id, path or offline name)."""
    if tokenizer == "whitespace":
        return lambda text: len(text.split())
    from transformers import AutoTokenizer

    from engine.runtime import resolve_encoder

    loaded = AutoTokenizer.from_pretrained(resolve_encoder(tokenizer))
    return lambda text: len(loaded(text, add_special_tokens=False, verbose=False)["input_ids"])


def _cost(count: TokenCounter, content: str) -> int:
    return count(content) + MESSAGE_OVERHEAD


def _cut_field(template: PromptTemplate, query: Sample, name: str, room: int, count: TokenCounter, similar: str) -> Sample:
    """``query`` with field ``name`` cut to the most leading words whose message costs at most ``room``."""
    words = getattr(query, name).split()
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if _cost(count, template.post(template.query, replace(query, **{name: " ".join(words[:mid])}), similar)) <= room:
            low = mid
        else:
            high = mid - 1
    return replace(query, **{name: " ".join(words[:low])})


def fit_prompt(template: PromptTemplate, examples: Sequence[tuple[Sample, str]], query: Sample,
               count: TokenCounter, max_tokens: int, similar: str = "") -> Prompt:
    """The chat prompt for ``query`` with ``examples`` (best first, each with its answer) within ``max_tokens``.

    ``similar``: what the query's ``${similar}`` shows (the teacher's answers for its most similar train posts)."""
    head = _cost(count, template.head)
    shots = [(template.post(template.example, item), answer) for item, answer in examples]
    shot_costs = [_cost(count, user) + _cost(count, answer) for user, answer in shots]
    query_cost = _cost(count, template.post(template.query, query, similar))
    keep = len(shots)
    while keep and head + sum(shot_costs[:keep]) + query_cost > max_tokens:
        keep -= 1
    truncated: list[str] = []
    for name in ("ocr", "caption"):
        if head + query_cost <= max_tokens or keep:
            break
        if getattr(query, name):
            query = _cut_field(template, query, name, max_tokens - head, count, similar)
            query_cost = _cost(count, template.post(template.query, query, similar))
            truncated.append(name)
    total = head + sum(shot_costs[:keep]) + query_cost
    if total > max_tokens:
        raise PromptBudgetError(f"{query.source or query.id}: sample {query.id} needs {total} prompt tokens "
                                f"without examples, caption and OCR text; max_prompt_tokens is {max_tokens}")
    messages = [{"role": "system", "content": template.head}]
    for user, answer in shots[:keep]:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": template.post(template.query, query, similar)})
    ids = [item.image_id or item.id for item, _ in examples]
    return Prompt(messages, ids[:keep], total, ids[keep:], truncated)


def example_shots(manual: Sequence[ManualExample], train: Sequence[Sample], examples_path: str | Path) -> dict[str, tuple[Sample, str]]:
    """``image id -> (example tweet, its hand-written answer)``; an example not in ``train`` raises, naming file:line."""
    answers = {e.image_id: e.answer for e in manual}
    return {item.image_id: (item, answers[item.image_id]) for item in example_items(manual, train, examples_path)}
