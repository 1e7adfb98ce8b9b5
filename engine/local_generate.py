"""In-process batched generation with transformers: the ``transformers`` backend of the ``llm`` stage.

:func:`load_generator` loads a causal LM once per process (a GGUF file, dequantised by
transformers through the ``gguf`` package, or a Hugging Face model directory) with its tokenizer
and chat template. :meth:`LocalGenerator.generate` answers chat prompts in batches: prompts sorted
by length (less padding), left padding, KV cache, greedy at temperature 0 (else sampling with
``temperature``/``top_p`` from ``seed``), stopping at EOS or ``max_tokens``, with the weights in bf16
when ``precision`` asks for it and the device has it (:mod:`engine.runtime`; autocast would convert
the weights again at every token). Greedy answers come from :func:`engine.answer_decoding.greedy_answers`
(rows leave the batch as they end; a distilled model's saved answer vocabulary narrows the output head
and caps the answer's length); sampling from ``model.generate``. Generation holds a per-model lock: shards on threads
take turns on the cores instead of fighting over them. The llm stage runs this generator in the main
thread of a process of its own (:mod:`engine.generation_process`); ``mner predict`` runs it here.

:func:`complete_local` is the backend's counterpart of :func:`engine.llm_client.complete_all`: the
same per-sample cache keys and records, every batch's answers cached as soon as they exist (a killed
run resumes with only the missing samples), the same usage counters (a request is one generated sample).
"""

from __future__ import annotations

import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch

from engine.answer_cache import AnswerCache
from engine.answer_decoding import VOCABULARY_FILE, AnswerVocabulary, greedy_answers, read_answer_vocabulary, word_form_tokens
from engine.llm_client import Completion, EndpointGone, LLMSettings, Usage, cache_key, cache_record
from engine.runtime import pick_device, set_threads, use_bf16
from mner import processes

Messages = Sequence[dict[str, Any]]


@dataclass(frozen=True)
class Generated:
    """One answer: its text, the prompt's and the answer's token counts, and why it ended (``stop``/``length``)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def resolve_model(local_model: str | Path | None) -> Path:
    """The model to load: ``local_model`` (a GGUF file or a model directory), default SmolLM2's GGUF."""
    from engine.llm_server import default_model_path

    path = Path(local_model) if local_model else default_model_path()
    if not (path.is_file() or (path / "config.json").is_file()):
        raise FileNotFoundError(f"{path}: stage1.llm.local_model must be a GGUF file or a model directory with config.json")
    return path


def local_identity(local_model: str | Path | None, precision: str) -> str:
    """The cache keys' name for this backend: engine, model file (name and size), the precision it runs in, and
    ``answer-vocabulary`` where the model's saved answer vocabulary narrows its greedy decoding."""
    path = resolve_model(local_model)
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"transformers:{path.name}:{size}:{precision_name(precision)}{decoding_suffix(path)}"


def decoding_suffix(path: Path) -> str:
    """``:answer-vocabulary`` for a model directory with a saved answer vocabulary, else nothing."""
    return f":{ANSWER_VOCABULARY}" if path.is_dir() and (path / VOCABULARY_FILE).is_file() else ""


ANSWER_VOCABULARY = "answer-vocabulary"


def precision_name(precision: str) -> str:
    """What ``precision`` (auto, bf16, fp32) means on this machine's device: ``bf16`` or ``fp32``."""
    return "bf16" if use_bf16(precision, pick_device("auto")) else "fp32"


def answering_identity(llm: Any) -> str:
    """What names the answering model of the ``stage1.llm`` section ``llm`` in cache and stage keys:
    :func:`local_identity` for the transformers backend, else :func:`engine.llm_server.endpoint_identity`
    (the URL, or the local llama.cpp server's model file)."""
    from engine.llm_server import endpoint_identity

    if llm.backend == "transformers":
        return local_identity(llm.local_model, llm.precision)
    return endpoint_identity(llm.base_url, llm.local_model)


class BatchGenerator(Protocol):
    """What :func:`complete_local` asks: a :class:`LocalGenerator`, or one in a process of its own
    (:class:`engine.generation_process.GeneratorProcess`)."""

    def generate(self, prompts: Sequence[Messages], max_tokens: int, temperature: float, top_p: float,
                 seed: int | None, batch_size: int) -> Iterator[tuple[list[int], list[Generated]]]:
        """Yield (indices into ``prompts``, their answers) batch by batch."""
        ...


class LocalGenerator:
    """A causal LM and its tokenizer on one device; :meth:`generate` answers chat prompts in batches."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, vocabulary: AnswerVocabulary | None = None) -> None:
        self.model, self.tokenizer, self.device, self.vocabulary = model, tokenizer, device, vocabulary
        self.bf16 = model.dtype == torch.bfloat16
        self.lock = threading.Lock()

    def encode(self, messages: Messages) -> list[int]:
        """Token ids of one chat prompt under the model's chat template, ready for the answer."""
        return list(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"])

    def generate(
        self, prompts: Sequence[Messages], max_tokens: int, temperature: float, top_p: float, seed: int | None,
        batch_size: int,
    ) -> Iterator[tuple[list[int], list[Generated]]]:
        """Yield (indices into ``prompts``, their answers) batch by batch, longest prompts first."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = [self.encode(m) for m in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            with self.lock:
                answers = self._batch([encoded[i] for i in chunk], max_tokens, temperature, top_p, seed)
            yield chunk, answers

    def _batch(self, ids: list[list[int]], max_tokens: int, temperature: float, top_p: float,
               seed: int | None) -> list[Generated]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        eos = self.tokenizer.eos_token_id
        if temperature <= 0:
            cap = min(max_tokens, self.vocabulary.max_answer_tokens) if self.vocabulary else max_tokens
            head = self.vocabulary.subset(ids, word_form_tokens(self.tokenizer, ids)) if self.vocabulary else None
            return [self._answer(prompt, row, eos) for prompt, row in
                    zip(ids, greedy_answers(self.model, ids, cap, eos, pad, head))]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens,
                                      pad_token_id=pad, eos_token_id=eos, use_cache=True, do_sample=True,
                                      temperature=temperature, top_p=top_p, top_k=None)
        return [self._answer(prompt, row, eos) for prompt, row in zip(ids, out[:, width:].tolist())]

    def _answer(self, prompt: list[int], row: list[int], eos: int) -> Generated:
        """One generated row (whatever follows EOS ignored) as a :class:`Generated`."""
        ended = eos in row
        tokens = row[: row.index(eos)] if ended else row
        return Generated(self.tokenizer.decode(tokens, skip_special_tokens=True), len(prompt), len(tokens) + int(ended),
                         "stop" if ended else "length")


_GENERATORS: dict[tuple[str, str], LocalGenerator] = {}
_LOADING = threading.Lock()


def load_causal_lm(path: Path, check_tokenizer: Callable[[Any], None] | None = None) -> tuple[Any, Any]:
    """A causal LM in fp32 and its tokenizer, from a GGUF file (dequantised) or a model directory.

    ``check_tokenizer`` sees the tokenizer before the weights load (a GGUF's take far longer), so a
    tokenizer it rejects fails fast.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = {"pretrained_model_name_or_path": path.parent, "gguf_file": path.name} if path.is_file() \
        else {"pretrained_model_name_or_path": path}
    tokenizer = AutoTokenizer.from_pretrained(**where)
    if check_tokenizer is not None:
        check_tokenizer(tokenizer)
    return AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32), tokenizer


def require_chat_template(path: Path) -> Callable[[Any], None]:
    """A tokenizer check for :func:`load_causal_lm`: the llm stage asks in chat turns, so the model must have a template."""
    def check(tokenizer: Any) -> None:
        if not tokenizer.chat_template:
            raise ValueError(f"{path}: stage1.llm.local_model has no chat template, and the llm stage asks in chat turns; "
                             "use an instruct model, or distil this base first (stage1.distill.enabled: true with "
                             "stage1.distill.base_model set to it and stage1.distill.chat_template to a Jinja template "
                             "file, e.g. prompts/gemma_turns.jinja for Gemma 3): the distilled model keeps the template")
    return check


def load_generator(local_model: str | Path | None, precision: str) -> LocalGenerator:
    """The process's generator for ``local_model`` (default SmolLM2) and ``precision``; loaded on first use only."""
    path = resolve_model(local_model)
    with _LOADING:
        key = (str(path.resolve()), precision)
        if key not in _GENERATORS:
            set_threads(0)
            device = pick_device("auto")
            model, tokenizer = load_causal_lm(path, require_chat_template(path))
            dtype = torch.bfloat16 if use_bf16(precision, device) else torch.float32
            vocabulary = read_answer_vocabulary(path) if decoding_suffix(path) else None
            _GENERATORS[key] = LocalGenerator(model.to(device, dtype).eval(), tokenizer, device, vocabulary)
        return _GENERATORS[key]


def complete_local(
    settings: LLMSettings, cache_dir: str | Path, prompts: Sequence[Messages], generator: BatchGenerator,
    batch_size: int, on_done: Callable[[int, Completion], None] | None = None,
) -> tuple[list[Completion], dict[str, Any]]:
    """Answers to ``prompts`` (in order) and the usage dict, from the cache or generated in batches.

    Identical prompts are generated once. Raises :class:`engine.llm_client.EndpointGone` between
    batches when the run is stopping; the answers cached so far stay.
    """
    cache, usage = AnswerCache(cache_dir), Usage()
    keys = [cache_key(settings, m) for m in prompts]
    results: list[Completion | None] = [None] * len(prompts)
    todo: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is None:
            todo.setdefault(key, []).append(i)
            continue
        usage.cached += 1
        results[i] = Completion(key, hit["content"], hit.get("usage", {}), True, 0, None, hit.get("finish_reason"))
        if on_done:
            on_done(i, results[i])
    firsts = [indices[0] for indices in todo.values()]
    batches = generator.generate([prompts[i] for i in firsts], settings.max_tokens, settings.temperature,
                                 settings.top_p, settings.seed, batch_size)
    with closing(batches):  # a generation process holds its lock until its request is closed
        for chunk, answers in batches:
            for position, answer in zip(chunk, answers):
                key = keys[firsts[position]]
                tokens = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
                cache.put(key, cache_record(settings, key, answer.text, tokens, answer.finish_reason))
                usage.requests += 1
                usage.succeeded += 1
                usage.prompt_tokens += answer.prompt_tokens
                usage.completion_tokens += answer.completion_tokens
                for i in todo[key]:
                    results[i] = Completion(key, answer.text, tokens, False, 1, None, answer.finish_reason)
                    if on_done:
                        on_done(i, results[i])
            if processes.stop_requested():
                raise EndpointGone("the run is stopping (interrupted); answers so far are cached")
    return [r for r in results if r is not None], usage.to_dict(settings)
