"""Distil a teacher's answers (PGIM's ChatGPT knowledge) into a small causal LM that answers zero-shot prompts.

Pairs: each train sample's zero-shot prompt (a prompts output's ``train.jsonl``) with the teacher's
answer for it, from PGIM's knowledge file (aligned to the split as :mod:`mner.pgim` does) or a JSONL
of ``{"id", "knowledge"}`` rows. A pair that cannot be made is rejected with ``file:line`` and the
reason (empty answer, an answer for no sample of the split, a sample without an answer), never
dropped silently.

Training (:func:`distill_job`, run by ``engine.train_worker`` in a process of its own): the model is
loaded as :func:`engine.local_generate.load_generator` loads it (GGUF dequantised, or a model
directory), gets LoRA adapters (peft), trains whole, or trains whole but for its embedding, and
learns the answer tokens only (the prompt's tokens under the tokenizer's chat template carry no
loss; by default the LM head runs only where an answer token is predicted, :mod:`engine.answer_loss`).
Batches are length-bucketed; AdamW with linear warm-up and decay. A checkpoint (the trainable weights, optimizer, scheduler, RNG
and loop state) is written every ``checkpoint_steps`` optimizer steps and at every epoch's end; a
killed run resumes from it, skipping the batches already done in the same order. The end result is
a model directory ``model/`` (LoRA merged into the weights) with its tokenizer and chat template.
"""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path
from typing import Any, Callable

import torch

from engine.answer_decoding import answer_vocabulary, word_form_tokens, write_answer_vocabulary
from engine.answer_loss import answer_loss
from engine.local_generate import load_causal_lm, precision_name
from engine.runtime import memory_mib, pick_device, set_seed, set_threads, use_bf16
from engine.taggers import bucketed_batches
from engine.training import adamw, linear_warmup_decay, replayed_batch_rng, resume_state, save_checkpoint
from mner.config import DistillConfig, TrainConfig
from mner.pgim import align_knowledge, answer_in_form, parse_knowledge
from mner.samples import Sample, read_jsonl
from mner.trained import DISTILLED_MODEL

CHECKPOINT = "distill_checkpoint.pt"
FINISHED = "distill_result.json"  # in model/, once the model is saved whole
MODEL_DIR = DISTILLED_MODEL
BASE_MODEL = "base_model"  # the sources entry of a GGUF base model; a directory's files are ``base_model/<name>``
CHAT_TEMPLATE = "chat_template"  # the sources entry (and job field) of a chat template file for the base model


def model_sources(path: str | Path) -> dict[str, str]:
    """The base model as stage ``sources``: a GGUF file as itself, a model directory as each of its files."""
    path = Path(path)
    if path.is_file():
        return {BASE_MODEL: str(path)}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: stage1.distill.base_model must be a GGUF file or a model directory with config.json")
    return {f"{BASE_MODEL}/{p.relative_to(path)}": str(p) for p in files}


def base_model_path(sources: dict[str, str]) -> Path:
    """The base model that :func:`model_sources` turned into ``sources``."""
    if BASE_MODEL in sources:
        return Path(sources[BASE_MODEL])
    return Path(sources[f"{BASE_MODEL}/config.json"]).parent


def distilled_identity(distill_key: str, precision: str) -> str:
    """The name of a distilled model in the llm stage's cache and stage keys: the distill output's key and precision."""
    return f"transformers:distilled-{distill_key}:{precision_name(precision)}"


def teacher_answers(path: str | Path, train: list[Sample],
                    form: str = "full") -> tuple[dict[str, tuple[str, str]], list[dict[str, Any]]]:
    """``{sample id: (answer, "file:line")}`` of the train split, and the answers that belong to no train sample.

    A ``.jsonl`` file holds ``{"id", "knowledge"}`` rows (an llm run's merged output will do: a failed
    sample's null knowledge is an empty answer); any other file is PGIM's knowledge file, aligned to
    ``train`` by tokens. Each answer is in ``form`` (:func:`mner.pgim.answer_in_form`).
    """
    answers, rejected = _teacher_answers(path, train)
    return {sample_id: (answer_in_form(text, form), where) for sample_id, (text, where) in answers.items()}, rejected


def _teacher_answers(path: str | Path, train: list[Sample]) -> tuple[dict[str, tuple[str, str]], list[dict[str, Any]]]:
    path = Path(path)
    answers: dict[str, tuple[str, str]] = {}
    rejected: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        ids = {s.id for s in train}
        for number, row in enumerate(read_jsonl(path), 1):
            where, sample_id = f"{path}:{number}", str(row.get("id"))
            if sample_id not in ids:
                rejected.append({"where": where, "id": sample_id, "reason": "answer id not in the train split"})
            elif sample_id in answers:
                rejected.append({"where": where, "id": sample_id, "reason": f"second answer (first at {answers[sample_id][1]})"})
            else:
                answers[sample_id] = (str(row.get("knowledge") or ""), where)
        return answers, rejected
    blocks = parse_knowledge(path)
    assignment, extra = align_knowledge(blocks, train)
    for b in extra:
        rejected.append({"where": f"{path}:{blocks[b].line}", "id": None,
                         "reason": "knowledge block matches no train sentence (answer id not in the split)"})
    for sample, b in zip(train, assignment, strict=True):
        if b is not None:
            answers[sample.id] = (" ".join(blocks[b].words), f"{path}:{blocks[b].line}")
    return answers, rejected


def build_pairs(prompts: list[dict[str, Any]], prompts_path: str | Path, answers: dict[str, tuple[str, str]],
                answers_path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``{"id", "messages", "answer", "source"}`` per prompt with a non-empty answer; the others rejected with reasons."""
    pairs: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for number, row in enumerate(prompts, 1):
        found = answers.get(row["id"])
        if found is None:
            rejected.append({"where": f"{prompts_path}:{number}", "id": row["id"],
                             "reason": f"train sample has no answer in {answers_path}"})
        elif not found[0].strip():
            rejected.append({"where": found[1], "id": row["id"], "reason": "empty answer"})
        else:
            pairs.append({"id": row["id"], "messages": row["messages"], "answer": found[0].strip(), "source": found[1]})
    return pairs, rejected


def mark_heldout(pairs: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The pairs, a seeded ``fraction`` of them (at least one when above 0 and there are two) marked ``heldout``."""
    count = max(1, round(len(pairs) * fraction)) if fraction > 0 and len(pairs) > 1 else 0
    held = set(random.Random(seed).sample(range(len(pairs)), count))
    return [{**pair, "heldout": i in held} for i, pair in enumerate(pairs)]


def save_model_dir(model: Any, tokenizer: Any, directory: Path) -> None:
    """Save ``model`` (fp32) and its tokenizer as a model directory that :func:`engine.local_generate.load_causal_lm` reads back.

    A model read from a GGUF file carries transformers' GGUF quantizer, which refuses to save: its
    weights go into a plain model of the same configuration first.
    """
    from transformers import AutoModelForCausalLM

    model = model.eval().to(torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        config = copy.deepcopy(model.config)  # the caller's model keeps its own
        config.__dict__.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        model = plain
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def use_chat_template(tokenizer: Any, template: str | Path | None, base_model: str | Path) -> None:
    """Give ``tokenizer`` the Jinja chat template in the file ``template``; without one, the tokenizer must have its own.

    Prompts and answers are formatted by the chat template when distilling and when the llm stage
    asks the distilled model, which keeps the template in its saved tokenizer.
    """
    if template:
        tokenizer.chat_template = Path(template).read_text(encoding="utf-8")
    elif not tokenizer.chat_template:
        raise ValueError(f"{base_model}: the base model's tokenizer has no chat template, and the distill and llm stages "
                         "format prompts with one; set stage1.distill.chat_template to a Jinja template file, e.g. "
                         "prompts/gemma_turns.jinja for Gemma 3")


def encode_pair(tokenizer: Any, messages: list[dict[str, Any]], answer: str, max_tokens: int) -> tuple[list[int], int, bool]:
    """Token ids of prompt + answer under the chat template, the prompt's length, and whether the answer was cut."""
    prompt = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
    full = list(tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=True,
                                              return_dict=True)["input_ids"])
    if full[: len(prompt)] != prompt:  # a template that renders the prompt differently once answered
        full = prompt + tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return full[:max_tokens], len(prompt), len(full) > max_tokens


def collate(items: list[tuple[list[int], int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 on the prompt and the padding)."""
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_len: len(ids)] = torch.tensor(ids[prompt_len:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


class Trainable(torch.nn.Module):
    """The trainable parameters of a model as a module of their own: what a checkpoint holds (LoRA: the adapters)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterDict({n.replace(".", ":"): p for n, p in model.named_parameters() if p.requires_grad})


def batch_loss(model: Any, batch: dict[str, torch.Tensor], cfg: DistillConfig) -> torch.Tensor:
    """Mean cross-entropy per answer token of ``batch``, by ``cfg.loss``: the head at answer positions only, in chunks
    (:mod:`engine.answer_loss`), or the model's own loss over logits at every position (``full``)."""
    if cfg.loss == "full":
        return model(**batch).loss
    return answer_loss(model, batch, cfg.loss_chunk_tokens)


def heldout_loss(model: Any, items: list[tuple[list[int], int]], cfg: DistillConfig, pad_id: int, device: torch.device,
                 bf16: bool) -> float | None:
    """Mean loss per answer token over ``items`` (None when there are none)."""
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), cfg.batch_size):
            batch = collate(items[start: start + cfg.batch_size], pad_id, device)
            count = int((batch["labels"][:, 1:] != -100).sum())
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                total += float(batch_loss(model, batch, cfg)) * count
            tokens += count
    model.train()
    return round(total / tokens, 4) if tokens else None


def freeze_embeddings(model: Any) -> None:
    """Stop training the input embedding and the LM head (one tensor where they are tied)."""
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def _encode_all(tokenizer: Any, pairs: list[dict[str, Any]], max_tokens: int,
                log: Callable[[str], None]) -> tuple[list[tuple[list[int], int]], list[str], list[str]]:
    """Encoded pairs that keep at least one answer token; ids of those cut to ``max_tokens`` and of those left out."""
    items, cut, left_out = [], [], []
    for pair in pairs:
        ids, prompt_len, was_cut = encode_pair(tokenizer, pair["messages"], pair["answer"], max_tokens)
        if prompt_len >= len(ids):
            left_out.append(pair["id"])
            log(f"distill: {pair['source']} ({pair['id']}): the prompt alone fills max_seq_tokens={max_tokens}; left out")
            continue
        cut += [pair["id"]] if was_cut else []
        items.append((ids, prompt_len))
    return items, cut, left_out


def distill_job(job: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune ``job["base_model"]`` on ``job["pairs_file"]``; write ``model/`` into ``job["work_dir"]``; return the result.

    Resumes from the checkpoint in the work dir when one is there (same settings: the stage key
    names the work dir).
    """
    cfg = DistillConfig.model_validate(job["distill"])
    work_dir = Path(job["work_dir"])
    finished = work_dir / MODEL_DIR / FINISHED
    if finished.is_file():  # trained before the stage was stopped short of publishing: not trained again
        log(f"distill: {work_dir / MODEL_DIR} was finished by an earlier run; reusing it")
        return json.loads(finished.read_text(encoding="utf-8"))
    threads, device = set_threads(0), pick_device("auto")
    bf16 = use_bf16(cfg.precision, device)
    set_seed(cfg.seed)
    model, tokenizer = load_causal_lm(Path(job["base_model"]),
                                      lambda loaded: use_chat_template(loaded, job.get(CHAT_TEMPLATE), job["base_model"]))
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method == "lora":
        import peft  # takes seconds to import; only LoRA runs need it

        model = peft.get_peft_model(model, peft.LoraConfig(
            r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none", task_type="CAUSAL_LM",
            target_modules=list(cfg.lora.target_modules),
            layers_to_transform=list(cfg.lora.layers) if cfg.lora.layers is not None else None))
    elif cfg.method == "full-frozen-embeddings":
        freeze_embeddings(model)
    model.to(device).train()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pairs = read_jsonl(job["pairs_file"])
    train, cut, left_out = _encode_all(tokenizer, [p for p in pairs if not p["heldout"]], cfg.max_seq_tokens, log)
    held, _, _ = _encode_all(tokenizer, [p for p in pairs if p["heldout"]], cfg.max_seq_tokens, log)
    if not train:
        raise ValueError(f"{job['pairs_file']}: no training pair left to learn from")
    trainable = Trainable(model)
    order_cfg = TrainConfig(seed=cfg.seed, batch_size=cfg.batch_size)  # the tagger's batch order, bucket size included
    lengths = [len(ids) for ids, _ in train]
    steps_per_epoch = len(bucketed_batches(lengths, cfg.batch_size, order_cfg.bucket_size, random.Random(0)))
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = adamw(list(trainable.parameters()), device, cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(int(cfg.warmup_ratio * total_steps), total_steps))
    checkpoint = work_dir / CHECKPOINT
    state = {"steps": 0, "step_in_epoch": 0, "epoch_seconds": 0.0, "epoch_tokens": 0, "epoch_loss": 0.0,
             **resume_state(checkpoint, trainable, optimizer, scheduler, lambda _message: None)}
    resumed_from = state["steps"] if checkpoint.exists() else None
    trained = sum(p.numel() for p in trainable.parameters())
    log(f"distill: device={device} bf16={bf16} threads={threads} method={cfg.method} train={len(train)} "
        f"heldout={len(held)} steps={total_steps} trainable={trained:,} cut={len(cut)} left_out={len(left_out)}"
        + (f"; resuming at step {resumed_from} (epoch {state['epoch'] + 1}, batch {state['step_in_epoch'] + 1})"
           if resumed_from is not None else ""))
    rng = replayed_batch_rng(lengths, order_cfg, state["epoch"])
    steps_run = 0
    while state["epoch"] < cfg.epochs:
        batches = bucketed_batches(lengths, cfg.batch_size, order_cfg.bucket_size, rng)
        for indices in batches[state["step_in_epoch"]:]:
            started = time.perf_counter()
            batch = collate([train[i] for i in indices], pad_id, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = batch_loss(model, batch, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trainable.parameters()), order_cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            steps_run += 1
            state["steps"] += 1
            state["step_in_epoch"] += 1
            state["epoch_tokens"] += int(batch["attention_mask"].sum())
            state["epoch_loss"] += float(loss)
            state["epoch_seconds"] += time.perf_counter() - started
            if state["steps"] % cfg.checkpoint_steps == 0 and state["step_in_epoch"] < len(batches):
                save_checkpoint(checkpoint, trainable, optimizer, scheduler, state)
                log(f"distill: step {state['steps']}/{total_steps} loss {state['epoch_loss'] / state['step_in_epoch']:.4f}; checkpoint")
        record = {"epoch": state["epoch"] + 1, "train_loss": round(state["epoch_loss"] / max(len(batches), 1), 4),
                  "heldout_loss": heldout_loss(model, held, cfg, pad_id, device, bf16),
                  "epoch_seconds": round(state["epoch_seconds"], 2),
                  "tokens_per_second": round(state["epoch_tokens"] / max(state["epoch_seconds"], 1e-9), 1)}
        state["history"].append(record)
        state["train_seconds"] += state["epoch_seconds"]
        state.update(epoch=state["epoch"] + 1, step_in_epoch=0, epoch_seconds=0.0, epoch_tokens=0, epoch_loss=0.0)
        save_checkpoint(checkpoint, trainable, optimizer, scheduler, state)
        log(json.dumps(record))
    if cfg.method == "lora":
        model = model.merge_and_unload()
    save_model_dir(model, tokenizer, work_dir / MODEL_DIR)
    vocabulary = answer_vocabulary((ids[prompt_len:] for ids, prompt_len in train + held), tokenizer.eos_token_id,
                                   word_form_tokens(tokenizer, [ids[:prompt_len] for ids, prompt_len in train + held]))
    write_answer_vocabulary(vocabulary, work_dir / MODEL_DIR)
    result = {"epochs": cfg.epochs, "steps": state["steps"], "steps_run": steps_run, "resumed_from_step": resumed_from,
              "train_pairs": len(train), "heldout_pairs": len(held), "cut_answers": len(cut), "left_out": left_out,
              "trainable_parameters": trained, "answer_vocabulary": len(vocabulary.token_ids),
              "max_answer_tokens": vocabulary.max_answer_tokens, "history": state["history"],
              "train_seconds": round(state["train_seconds"], 2),
              "peak_rss_mib": memory_mib()["peak_rss_mib"], "bf16": bf16}
    finished.write_text(json.dumps(result, indent=2), encoding="utf-8")  # written last: the model is complete
    checkpoint.unlink(missing_ok=True)
    return result
