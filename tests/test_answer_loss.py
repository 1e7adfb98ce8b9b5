"""The lean distillation loss equals the model's own loss, in value and gradients, on tiny random models."""

from __future__ import annotations

import pytest
import torch

from engine.answer_loss import answer_loss
from engine.distillation import collate

TOLERANCE = 1e-5  # fp32, absolute on the loss and on every gradient entry (relative to the largest entry of that tensor)


def tiny_llama() -> torch.nn.Module:
    """A two-layer Llama (SmolLM2's architecture) with tied embeddings and random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                        max_position_embeddings=64))


def tiny_gemma3(softcap: float | None) -> torch.nn.Module:
    """A two-layer Gemma 3 text model (the 270M's architecture) with tied embeddings, optionally soft-capped logits."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                                              max_position_embeddings=64, sliding_window=8,
                                              final_logit_softcapping=softcap, attn_implementation="eager"))


def batch() -> dict[str, torch.Tensor]:
    """Three pairs of prompt + answer of different lengths, right-padded as the distill stage pads them."""
    generator = torch.Generator().manual_seed(1)
    items = []
    for length, prompt in ((20, 12), (14, 5), (9, 8)):
        ids = torch.randint(3, 90, (length,), generator=generator).tolist()
        items.append((ids, prompt))
    return collate(items, pad_id=0, device=torch.device("cpu"))


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient, cloned, then cleared."""
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("make", [tiny_llama, lambda: tiny_gemma3(None), lambda: tiny_gemma3(5.0)],
                         ids=["llama", "gemma3", "gemma3-softcapped"])
@pytest.mark.parametrize("chunk_tokens", [1, 4, 1000])
def test_the_chunked_answer_loss_and_its_gradients_equal_the_models_own(make, chunk_tokens: int) -> None:
    model = make().float()
    data = batch()
    expected = model(**data).loss
    expected.backward()
    want = gradients(model)
    got = answer_loss(model, data, chunk_tokens)
    got.backward()
    have = gradients(model)
    assert abs(float(got) - float(expected)) < TOLERANCE
    assert want.keys() == have.keys() and want
    for name, grad in want.items():
        scale = max(float(grad.abs().max()), 1e-12)
        assert float((have[name] - grad).abs().max()) / scale < TOLERANCE, name


def test_the_head_sees_only_answer_positions_a_chunk_at_a_time() -> None:
    model = tiny_llama()
    data = batch()
    rows: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    try:
        answer_loss(model, data, chunk_tokens=4).backward()
    finally:
        hook.remove()
    answers = int((data["labels"][:, 1:] != -100).sum())
    assert answers == (20 - 12) + (14 - 5) + (9 - 8)
    assert max(rows) <= 4  # never batch x sequence positions at once, in the forward pass or its recomputation
    assert sum(rows) == 2 * answers  # each answer position once forward, once recomputed for the backward pass


def saved_bytes_and_gradients(model: torch.nn.Module, data: dict[str, torch.Tensor]) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes of the tensors autograd keeps for the backward pass of :func:`answer_loss` (outside recomputed regions),
    and the gradients."""
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = answer_loss(model, data, chunk_tokens=4)
    loss.backward()
    return sum(saved), gradients(model)


@pytest.mark.parametrize("make", [tiny_llama, lambda: tiny_gemma3(None)], ids=["llama", "gemma3"])
def test_gradient_checkpointing_keeps_less_for_the_backward_pass_and_the_same_gradients(make) -> None:
    model = make().float().train()
    data = batch()
    kept, want = saved_bytes_and_gradients(model, data)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    kept_checkpointed, have = saved_bytes_and_gradients(model, data)
    assert kept_checkpointed < kept / 2
    for name, grad in want.items():
        scale = max(float(grad.abs().max()), 1e-12)
        assert float((have[name] - grad).abs().max()) / scale < TOLERANCE, name
