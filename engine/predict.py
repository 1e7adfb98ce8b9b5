"""Tag one post with a trained model: optional image text (caption, OCR) and optional LLM knowledge.

The same functions as the pipeline's stages do the work, on one sample: the configured caption
and OCR backends read the image, the configured retrieval and prompt template build the few-shot
prompt, and the configured endpoint (by default a local llama.cpp server) answers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.knowledge_routes import KnowledgeRoute, image_text, knowledge_for, prompt_rows
from engine.tagging import entities_of, raw_tokens
from mner.config import LlmConfig, PipelineConfig
from mner.model_routes import model_tokenization
from mner.pgim import answer_in_form
from mner.samples import Sample

if TYPE_CHECKING:
    from engine.llm_client import LLMSettings, SecretReader


def llm_knowledge(tokens: list[str], caption: str, ocr: str, config: PipelineConfig,
                  backbone_dir: str | Path | None = None, read_secret: SecretReader | None = None,
                  llm_identity: str | None = None) -> str:
    """Ask the configured LLM for knowledge about one post, with the pipeline's retrieval and prompt.

    The ``fused`` embedder needs ``backbone_dir`` (a backbone-stage output directory); ``read_secret``
    reads ``stage1.llm.api_key_secret`` when it is set; ``llm_identity`` names the answering model in
    the answer cache instead of its file (a distilled model: by its distill output's key).
    """
    from engine.answer_cache import default_cache_dir
    from engine.answers import answer_rows
    from engine.llm_server import resolve_base_url
    from engine.local_generate import load_generator
    from engine.prompting import PromptBudgetError

    s1 = config.stage1
    query = Sample("post", tokens, source="--text", caption=caption, ocr=ocr)
    prompt = prompt_rows([query], config, backbone_dir)[0]
    if "error" in prompt:
        raise PromptBudgetError(prompt["error"]["reason"])
    local = s1.llm.backend == "transformers"
    with resolve_base_url({**s1.llm.model_dump(), "n_parallel": 1}) as base_url:
        results, _ = answer_rows([prompt], knowledge_settings(s1.llm, base_url, llm_identity),
                                 default_cache_dir(config.artifacts_root), "--text", 1, s1.llm.max_answer_chars,
                                 read_secret=read_secret, batch_size=1,
                                 generator=load_generator(s1.llm.local_model, s1.llm.precision) if local else None)
    if results[0]["error"]:
        raise RuntimeError(f"the LLM gave no answer: {results[0]['error']['reason']}")
    return results[0]["knowledge"]


def knowledge_settings(llm: LlmConfig, base_url: str, identity: str | None = None) -> LLMSettings:
    """The client settings :func:`llm_knowledge` asks with: every ``stage1.llm`` value, and the pipeline's
    name for the endpoint (``identity``, else the model's), so that a prompt the pipeline asked already is
    answered from its cache."""
    from engine.llm_client import LLMSettings
    from engine.local_generate import answering_identity

    return LLMSettings.from_config(llm, base_url, identity or answering_identity(llm))


def predict_post(
    model_dir: str | Path, text: str, config: PipelineConfig, knowledge: str | None = None,
    image: str | Path | None = None, ask_llm: bool = False, backbone_dir: str | Path | None = None,
    read_secret: SecretReader | None = None, llm_identity: str | None = None, style: str | None = None,
    route: KnowledgeRoute | None = None, answer_form: str = "full",
) -> dict[str, Any]:
    """Entities of one post as a JSON-able dict: tokens, tags, entities (text, type, start, end, chars), inputs used.

    The text is split as ``mner tag`` splits raw posts: by the tokenization the model recorded (``style`` overrides it).
    Z is ``knowledge`` as given, else the configured LLM's answer (``ask_llm``), else what ``route`` finds (a route of
    :mod:`engine.knowledge_routes`; a post it finds none for raises ``ValueError`` with the reason); it is cut to
    ``answer_form``, the form the model's Z had.
    """
    from engine.runtime import pick_device
    from engine.taggers import load_tagger, predict

    style = style or model_tokenization(model_dir)
    tokens, spans = raw_tokens(text, style)
    if not tokens:
        raise ValueError("the text has no tokens")
    seen = image_text(image, config) if image else {"caption": "", "ocr": "", "errors": []}
    if ask_llm and knowledge is None:
        knowledge = llm_knowledge(tokens, seen["caption"], seen["ocr"], config, backbone_dir, read_secret, llm_identity)
    elif route is not None and knowledge is None:
        [(knowledge, reason)] = knowledge_for(route, [Sample("post", tokens, source="--text", caption=seen["caption"],
                                                             ocr=seen["ocr"])])
        if knowledge is None:
            raise ValueError(f"knowledge route {route.name}: {reason}")
    knowledge = answer_in_form(knowledge, answer_form) if knowledge else knowledge
    device = pick_device("auto")
    tagger, encoder = load_tagger(model_dir, device)
    tags = predict(tagger, [encoder.encode(tokens, None, knowledge or None)], device, bf16=False)[0]
    return {"tokens": tokens, "tags": tags, "entities": entities_of(tokens, tags, text, spans), "tokenization": style,
            "knowledge": knowledge or "", **seen}
