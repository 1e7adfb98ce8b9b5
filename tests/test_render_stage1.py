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


def test_the_bases_table_shows_each_distilled_base_with_its_verbatim_share_beside_chatgpts() -> None:
    from render_stage1 import bases_section

    common = {"dataset": "twitter2017", "pairs": 1024, "epochs": 1, "peak_rss_mib": 5000, "test_tweets": 200,
              "chatgpt_verbatim_share": 0.9, "max_tokens": 128, **ORIGIN, "command": "python benchmarks/distill_bases.py"}
    smol = {**common, "base": "smollm2", "trainable_parameters": 134515008, "epoch_seconds": 300.0, "tokens_per_second": 600.0,
            "heldout_loss": 1.2, "verbatim_share": 0.812, "mean_words": 60.1, "prompts_per_second": 4.1,
            "first_answers": ["Obama is a person.", ""]}
    gemma = {**smol, "base": "gemma3-270m", "trainable_parameters": 268098176, "heldout_loss": 1.9, "verbatim_share": 0.845,
             "first_answers": ["Obama: PER."]}
    md = "\n".join(bases_section([smol, gemma]))
    assert ("| twitter2017 | smollm2 | full | full | - | 1024 | 1 | 134,515,008 | 300.0 | 600.0 | 1.2 | 5000 | test (200) | "
            "**81.2%** | 90.0% | - | - | 60.1 | 4.1 | abc1234 | 2026-11-29 10:00 UTC |") in md
    assert "| gemma3-270m | full | full | - | 1024 | 1 | 268,098,176 |" in md and "**84.5%**" in md
    assert "- *smollm2, full* (1024 pairs): (empty)" in md and "- *gemma3-270m, full* (1024 pairs): Obama: PER." in md
    frozen = {**gemma, "method": "full-frozen-embeddings", "answer_form": "entities", "split": "dev", "tweets": 300}
    assert "| gemma3-270m | full-frozen-embeddings | entities | - | 1024 | 1 |" in "\n".join(bases_section([frozen]))
    similar = {**frozen, "overrides": {"stage1.prompt.similar_answers": 3}, "answer_precision": 0.5,
               "chatgpt_answer_precision": 0.75}
    assert "| entities | 3 | 1024 |" in "\n".join(bases_section([similar]))
    assert "| 90.0% | 50.0% | 75.0% | 60.1 |" in "\n".join(bases_section([similar]))
    assert "| dev (300) |" in "\n".join(bases_section([frozen]))
    assert bases_section([]) == []


def test_the_student_table_compares_each_mode_with_the_generate_row_of_its_own_run() -> None:
    from render_stage1 import student_section

    def row(mode: str, rate: float, date: str, batch: int = 16) -> dict:
        return {"dataset": "twitter2017", "model": "artifacts/distill/k/model", "mode": mode, "split": "dev", "prompts": 128,
                "batch": batch, "prompts_per_second": rate, "equal_to_generate": 1.0, "verbatim_share": 0.9,
                "chatgpt_verbatim_share": 0.91, "answer_precision": 0.5, "chatgpt_answer_precision": 0.5,
                "mean_answer_tokens": 30.0, "cut_at_cap": 0, "answer_vocabulary": 19770, "max_answer_tokens": 83,
                **ORIGIN, "date": date, "command": f"python benchmarks/student_speed.py --batch {batch}"}

    runs = [row("generate", 1.0, "10:00"), row("answer vocabulary", 2.5, "10:03"),
            row("generate", 3.0, "11:00", batch=64), row("answer vocabulary", 6.0, "11:04", batch=64),
            {**row("answer vocabulary", 9.0, "12:00"), "command": "python benchmarks/student_speed.py --prompts 8"}]
    lines = [line for line in student_section(runs) if line.startswith("| twitter2017")]
    assert [line.split(" | ")[6] for line in lines] == ["1.00x", "2.50x", "1.00x", "2.00x", "-"]
