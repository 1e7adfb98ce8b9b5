"""An encoder attention that runs in float32 on the CPU: there PyTorch's fused attention is faster in fp32 than in bf16.

Measured on the 2-core Xeon with AMX (PyTorch 2.13, benchmarks/profile_training.py): forward and
backward of ``scaled_dot_product_attention`` on ``[16, 12, 200, 32]`` took about 47 ms in bf16 and
25 ms in fp32, and the bf16 backward was the largest single cost of a [T;Z] training step. Under
bf16 autocast the encoder's linear layers stay in bf16; only the attention kernel is upcast, which
is at least as accurate as the bf16 one. On other devices the tensors pass through unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: The name under which Hugging Face models find this attention (``attn_implementation``).
CPU_FP32_SDPA = "sdpa_cpu_fp32"


def cpu_fp32_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Hugging Face's ``sdpa`` attention, computed in float32 (autocast off) when the tensors are on the CPU."""
    if query.device.type != "cpu" or query.dtype == torch.float32:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return output.to(dtype), weights


AttentionInterface.register(CPU_FP32_SDPA, cpu_fp32_sdpa_forward)
