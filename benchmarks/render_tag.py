"""RESULTS.md section for `mner tag` (benchmarks/tag_throughput.py): posts/s against `mner predict`, peak RSS, F1."""

from __future__ import annotations

from harness import closing, cpu, head


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def tag_section(rows: list[dict], llm_rows: list[dict]) -> list[str]:
    """Throughput and memory of `mner tag` beside `mner predict`, the distilled LLM's own rate, and raw-text F1."""
    if not rows:
        return []
    speed = [r for r in rows if "predict_posts_per_second" in r]
    memory = [r for r in rows if r["mode"].startswith("peak RSS")]
    scores = [r for r in rows if r["mode"].startswith("F1")]
    md = ["## Tagging raw posts at scale: `mner tag` (Twitter-2017 test posts as raw text)", "",
          "Each test post's text is rebuilt from its tokens as a user would type it and repeated with new ids; `mner tag`",
          "runs end to end as a command into a fresh store (file to JSONL; the Prefect server it starts included in",
          "\"command\"), `mner predict` once per post over the first posts of the same file, in the same run. Posts per",
          "CPU-second count the `mner tag` process's own CPU time: on this shared machine, wall-clock rates depend on the",
          "load (given with each row).", ""]
    if speed:
        md += head("| mode | posts | posts per shard | mner tag posts/s (flow) | mner tag posts/s (command) | mner tag posts "
                   "per CPU-second | mner predict posts/s (posts) | speed-up | peak RSS MiB | load (1 min) | machine | commit | date |")
        for r in speed:
            ratio = r["tag_command_posts_per_second"] / r["predict_posts_per_second"] if r["predict_posts_per_second"] else 0
            md.append(f"| {r['mode']} | {r['posts']} | {r.get('shard_size', '-')} | **{r['tag_posts_per_second']}** | {r['tag_command_posts_per_second']} | "
                      f"{r.get('tag_posts_per_cpu_second', '-')} | "
                      f"{r['predict_posts_per_second']} ({r['predict_posts']}) | {ratio:.0f}x | {r['peak_rss_mib']:.0f} | "
                      f"{r['load_1min']} | {cpu(r)} | {r['commit']} | {r['date']} |")
        for model in (r["mode"].partition("Z from the ")[2] for r in speed):
            same = [llm for llm in llm_rows if llm.get("model") == model] if model.startswith("distilled") else []
            if same:
                best = max(same, key=lambda llm: llm["samples_per_second"])
                md += ["", f"With Z from the {model}, `mner tag` is generation-bound: `benchmarks/llm_throughput.py` "
                           f"generated with the same model at {best['samples_per_second']} prompts/s (batch "
                           f"{best['concurrency']}, {best.get('precision', '?')}, {best['prompt']}, at most "
                           f"{best['max_tokens']} new tokens; commit {best['commit']}, {best['date']})."]
    if memory:
        md += ["", *head("| posts (text-only) | posts per shard | peak RSS of the `mner tag` process, MiB | posts/s (flow) | "
                         "load (1 min) | commit | date |")]
        md += [f"| {r['posts']:,} | {r.get('shard_size', '-')} | **{r['peak_rss_mib']:.0f}** | {r['tag_posts_per_second']} | {r['load_1min']} | "
               f"{r['commit']} | {r['date']} |" for r in memory]
    if scores:
        md += ["", *head("| model | raw text P / R / F1 | given tokens P / R / F1 | commit | date |")]
        md += [f"| {r['mode'].removeprefix('F1 ')} | {_pct(r['raw_text']['precision'])} / {_pct(r['raw_text']['recall'])} / "
               f"**{_pct(r['raw_text']['f1'])}** | {_pct(r['given_tokens']['precision'])} / "
               f"{_pct(r['given_tokens']['recall'])} / **{_pct(r['given_tokens']['f1'])}** | {r['commit']} | {r['date']} |"
               for r in scores]
        md += ["", "Entities are compared by character span in the rebuilt text, so a post tokenized differently from "
                   "the file still scores on what it marks."]
    return md + closing(rows)
