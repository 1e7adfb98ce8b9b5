"""RESULTS.md's LLM throughput table: each row names its model and prompt; rows from before those fields say so."""

from __future__ import annotations

import sys

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from render_stage1 import llm_section  # noqa: E402

ORIGIN = {"command": "python benchmarks/llm_throughput.py --pipeline", "commit": "abc1234", "date": "2026-11-29 10:00 UTC",
          "machine": "a CPU"}
COMMON = {"processes": 1, "prompts": 32, "max_tokens": 128, "ratio_vs_sequential": 1.0, **ORIGIN}
OLD = {"mode": "sequential", "concurrency": 1, "threads_per_process": 1, "seconds": 40.0, "samples_per_second": 0.8, **COMMON}
SEQUENTIAL = {**OLD, "model": "SmolLM2-135M-Instruct", "prompt": "5-shot pgim_v1, Twitter-2017 test", "prompt_tokens_mean": 1160.5,
              "samples_per_second": 0.2}
DISTILLED = {**COMMON, "mode": "transformers batched", "precision": "bf16", "concurrency": 64, "threads_per_process": 2,
             "model": "distilled SmolLM2-135M-Instruct (k1)", "prompt": "0-shot distill_v1, Twitter-2017 test",
             "prompt_tokens_mean": 87.7, "seconds": 8.0, "samples_per_second": 4.0, "ratio_vs_sequential": 20.0,
             "same_as_sequential": None, "same_as_first_batch": 32}


def test_rows_name_model_and_prompt_and_a_distilled_row_is_not_compared_with_the_base_server() -> None:
    md = "\n".join(llm_section([OLD, SEQUENTIAL, DISTILLED]))
    assert "| sequential | - | - | 1 | 1x1 | 32 | 128 | 40.0 | 0.8 | 1.0 | - | - |" in md
    assert "| sequential | SmolLM2-135M-Instruct | 5-shot pgim_v1, Twitter-2017 test (1160.5) | 1 | 1x1 | 32 | 128 |" in md
    assert ("| transformers batched bf16 | distilled SmolLM2-135M-Instruct (k1) | 0-shot distill_v1, Twitter-2017 test (87.7) "
            "| 64 | 1x2 | 32 | 128 | 8.0 | 4.0 | 20.0 | - | 32 |") in md
    assert "- `python benchmarks/llm_throughput.py --pipeline` (commit abc1234, 2026-11-29 10:00 UTC)" in md
    assert llm_section([]) == []
