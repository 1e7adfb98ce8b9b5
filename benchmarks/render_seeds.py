"""RESULTS.md sections over several seeds: stage 2 on today's code (issue 15) and local knowledge at test time (issue 14).

Used by benchmarks/render_results.py. ``seeds_section`` summarises the stage2.jsonl rows of one label
(one row per dataset, variant and seed) as mean ± sample standard deviation, and pairs [T;Z] with
text-only seed by seed; ``swap_section`` does the same for benchmarks/knowledge_swap.py's rows
(and the retired crossfit_knowledge.py's); ``z_budget_section`` shows what each sub-token budget cuts of Z.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from harness import closing, commands, cpu, head

VARIANTS = ("text", "text+knowledge")
SPLIT_ORDER = ("train", "dev", "test")


def spread(values: list[float], signed: bool = False) -> str:
    """``mean ± sd`` of fractions, in points (sd over seeds, n-1; just the mean for one value); ``signed`` for differences."""
    mean = f"{100 * statistics.fmean(values):{'+' if signed else ''}.2f}"
    return mean if len(values) < 2 else f"{mean} ± {100 * statistics.stdev(values):.2f}"


def seed_of(row: dict) -> int:
    """The tagger's training seed of a stage2, knowledge_swap or route_seeds row."""
    if "tagger" in row:
        return row["tagger"]["seed"]
    return row["seed"] if "seed" in row else row["overrides"].get("train.seed", 42)


def by_seed(rows: list[dict]) -> dict[int, dict]:
    """The newest row per training seed (:func:`seed_of`)."""
    return {seed_of(r): r for r in rows}


def per_seed(rows: Iterable[dict]) -> str:
    """Test F1 of each row, in points, in the rows' order (one row per seed)."""
    return " / ".join(f"{100 * r['test_f1']:.2f}" for r in rows)


def knowledge_backend(row: dict) -> str:
    """The ``stage1.knowledge.backend`` a stage2.jsonl row ran with (rows before the field: ``file``, PGIM's answers)."""
    return row.get("knowledge_backend") or row.get("overrides", {}).get("stage1.knowledge.backend", "file")


def seeds_sections(stage2: list[dict], label: str = "seeds") -> list[str]:
    """:func:`seeds_section` of ``label`` for each knowledge backend its [T;Z] rows ran with, PGIM's file first."""
    backends = {knowledge_backend(r) for r in stage2 if r.get("label") == label and r["variant"] == "text+knowledge"}
    return [line for backend in sorted(backends or {"file"}, key=lambda b: (b != "file", b))
            for line in seeds_section(stage2, label, backend)]


def seeds_section(stage2: list[dict], label: str = "seeds", backend: str = "file") -> list[str]:
    """Stage 2 over seeds: per dataset and variant mean ± sd of dev and test F1, and [T;Z] − text paired by seed.

    The [T;Z] rows are those of knowledge ``backend``; text-only rows, which read no Z, are the label's whatever their backend.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in stage2:
        if r.get("label") == label and "test_f1" in r and (r["variant"] == "text" or knowledge_backend(r) == backend):
            groups[(r["dataset"], r["variant"])].append(r)
    if not groups:
        return []
    first = next(iter(groups.values()))[0]
    settings = {k: v for k, v in first["overrides"].items() if k not in ("train.seed", "stage1.knowledge.backend")}
    knowledge = "PGIM's ChatGPT knowledge" if backend == "file" else f"`stage1.knowledge.backend: {backend}`"
    md = [f"## Stage 2 over seeds on today's code: text-only vs [T;Z] ({knowledge}), label `{label}`", "",
          f"Offline all-MiniLM-L6-v2 + CRF with `{json.dumps(settings)}`, the rest at the defaults; the best dev epoch is "
          "scored on test, once per seed. ± is the standard deviation over seeds (n−1).", "",
          *head("| dataset | variant | seeds | dev F1 | test F1 | per-seed test F1 | train sent/s | peak RSS MiB | commit |")]
    for (dataset, variant), rows in sorted(groups.items()):
        seeds = by_seed(rows)
        md.append(f"| {dataset} | {variant} | {', '.join(map(str, seeds))} | {spread([r['dev_f1'] for r in seeds.values()])} | "
                  f"**{spread([r['test_f1'] for r in seeds.values()])}** | "
                  f"{per_seed(seeds.values())} | "
                  f"{statistics.fmean(r['train_sentences_per_second'] for r in seeds.values()):.1f} | "
                  f"{max(r['peak_rss_mib'] for r in seeds.values()):.0f} | "
                  f"{', '.join(sorted({r['commit'] for r in seeds.values()}))} |")
    md.append("")
    for dataset in sorted({d for d, _ in groups}):
        text, tz = (by_seed(groups.get((dataset, v), [])) for v in VARIANTS)
        paired = sorted(set(text) & set(tz))
        if paired:
            gains = [tz[s]["test_f1"] - text[s]["test_f1"] for s in paired]
            md.append(f"- {dataset}: [T;Z] − text-only, paired by seed ({', '.join(map(str, paired))}): "
                      f"**{spread(gains, signed=True)}** test F1 "
                      f"(per seed {' / '.join(f'{100 * g:+.2f}' for g in gains)})")
    rows = [r for group in groups.values() for r in group]
    machines = {d: sorted({r["machine"] for (d2, _), g in groups.items() if d2 == d for r in g}) for d, _ in groups}
    if len({m for ms in machines.values() for m in ms}) == 1:
        md += ["", f"Machine: {rows[-1]['machine']}."]
    else:  # timings and peak memory compare within a machine only
        md += ["", "Machines (timings and memory compare within one machine only): "
               + "; ".join(f"{d}: {' and '.join(ms)}" for d, ms in sorted(machines.items())) + "."]
    md += [""] + commands(rows)
    return md


def swap_section(swaps: list[dict], stage2: list[dict], bases: dict[str, str] | None = None) -> list[str]:
    """Issue 14: local knowledge against ChatGPT's and text-only, one section per dataset (:func:`dataset_swap_section`)."""
    datasets = dict.fromkeys(r["dataset"] for r in swaps)
    return [line for dataset in datasets
            for line in dataset_swap_section([r for r in swaps if r["dataset"] == dataset], stage2, bases or {})]


def dataset_swap_section(swaps: list[dict], stage2: list[dict], bases: dict[str, str]) -> list[str]:
    """One dataset's [T;Z] taggers trained on ChatGPT's Z, scored with Z from each source, and the distilled pipeline.

    Text-only rows of the taggers' label pair by seed; a dataset with pipeline rows only pairs with ``seeds``.
    ``bases`` names the base of a distilled model by its distill key (benchmarks/distill_bases.py's rows).
    """
    newest = {(r["source"], r["model"], r["tagger"]["seed"]): r for r in swaps}  # older runs stay in knowledge_swap.jsonl
    dataset = swaps[-1]["dataset"]
    label = next((r["tagger"]["label"] for r in reversed(swaps) if r["tagger"]["label"] != "pipeline"), "seeds")
    text = by_seed([r for r in stage2 if r.get("label") == label and r["dataset"] == dataset
                    and r["variant"] == "text" and "test_f1" in r])
    md = [f"## Knowledge at test time from a local model: {dataset}, [T;Z] taggers trained on ChatGPT's Z (issue 14)", "",
          f"The [T;Z] taggers of the `{label}` rows above (trained and model-selected on PGIM's ChatGPT Z), scored on dev "
          "and test with Z from each source in place of ChatGPT's. Local answers: greedy, at most 128 new tokens, on "
          "this machine (`stage1.llm.backend: transformers`, bf16), generated through the llm stage's shard function. "
          f"`distilled, own train Z` is the whole pipeline of the distilled config instead (`mner run -c "
          f"configs/{dataset}-distilled.yaml`): its tagger is trained on the distilled model's train Z, same settings. "
          "`distilled, cross-fitted train Z` (benchmarks/crossfit_knowledge.py, retired: its reruns close this page) trains "
          "it on train Z written by fold models that never saw those tweets' answers; dev and test Z are the full "
          "distilled model's.", "",
          *head("| source | model | seeds | dev F1 | test F1 | minus text-only (paired) | gold test entities verbatim in Z | "
                "generation prompts/s (dev, test) | machine |")]
    for source, answering in dict.fromkeys((s, m) for s, m, _ in newest):  # one line per source and model
        rows = {seed: r for (s, m, seed), r in newest.items() if (s, m) == (source, answering)}
        gains = [r["test_f1"] - text[seed]["test_f1"] for seed, r in rows.items() if seed in text]
        r = next(iter(rows.values()))
        epochs = f"{r.get('epochs')} epoch{'s' * (r.get('epochs') != 1)}"
        base = distilled_base(r, bases)
        trained = f" ({r['pairs']} pairs, {epochs}, held-out loss {r['heldout_loss']})" if "pairs" in r else ""
        model = (f"{base}: " if base else "") + r["model"] + trained + _folds(r)
        rates = ", ".join(str(r.get("generation", {}).get(s, {}).get("prompts_per_second") or "cached")
                          for s in ("dev", "test")) if "generation" in r else "-"
        machines = " and ".join(sorted({cpu(x) for x in rows.values()}))
        md.append(f"| {source} | {model} | {', '.join(map(str, rows))} | {spread([x['dev_f1'] for x in rows.values()])} | "
                  f"**{spread([x['test_f1'] for x in rows.values()])}** | {spread(gains, signed=True) if gains else '-'} | "
                  f"{100 * r['test_verbatim_share']:.1f}% | {rates} | {machines} |")
    crossfit = [r for r in newest.values() if "train_verbatim_share" in r]
    if crossfit:
        shares = crossfit[-1]["train_verbatim_share"]
        md += ["", "Gold *train* entities verbatim in the train Z each tagger learns from: "
               + ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares.items())
               + " (ChatGPT's, the distilled model's own, the fold models')."]
    chatgpt = [r for (s, _, _), r in newest.items() if s == "chatgpt"]
    mismatch = [r for r in chatgpt if abs(r["test_f1"] - r["tagger"]["test_f1"]) > 1e-9]
    md += ["", "Check of this harness: with ChatGPT's Z it reproduces the pipeline's own test F1 of every tagger"
           + ("." if chatgpt and not mismatch else f": NOT for {len(mismatch)} of {len(chatgpt)} taggers.")
           if chatgpt else ""]
    md += closing(list(newest.values()), swaps)
    md += examples_block(newest)
    details = {json.dumps(r.get("generation", {}), sort_keys=True) for r in newest.values() if r["source"] != "chatgpt"}
    return md + (["Generation details (prompts, generated, cached, seconds):", ""] + [f"- `{d}`" for d in sorted(details)] + [""]
                 if details else [])


def distilled_base(row: dict, bases: dict[str, str]) -> str | None:
    """The base of the distilled model that answered in ``row``: by its distill key in ``bases``, else the
    ``base_model`` file the row records, else the one its command set (rows written before it was recorded)."""
    named = next((name for key, name in bases.items() if f"distilled-{key}:" in row["model"]), None)
    if named or "distilled-" not in row["model"]:
        return named
    setting = re.search(r"stage1\.distill\.base_model=(\S+)", row.get("command", ""))
    return row.get("base_model") or (Path(setting.group(1)).name if setting else None)


def _folds(row: dict) -> str:
    """The fold models of a cross-fitted row: pairs and held-out loss of each."""
    if "folds" not in row:
        return ""
    return (f"; train Z from {len(row['folds'])} fold models ({' / '.join(str(f['pairs']) for f in row['folds'])} pairs, "
            f"held-out loss {' / '.join(str(f['heldout_loss']) for f in row['folds'])})")


def examples_block(newest: dict[tuple[str, str, int], dict]) -> list[str]:
    """The first test tweets with each source's Z side by side (from the newest row of each source that kept them)."""
    per_source = {}
    for (source, _, _), r in newest.items():
        if r.get("examples") and source not in per_source:
            per_source[source] = {e["id"]: e for e in r["examples"]}
    if not per_source:
        return []
    first = next(iter(per_source.values()))
    md = ["### Reading the answers: the first test tweets, Z from each source", ""]
    for tweet_id, example in first.items():
        md += [f"**{example['tweet']}** (gold: {', '.join(example['entities']) or 'none'})", ""]
        md += [f"- *{source}*: {shown[tweet_id]['z'] or '(empty)'}" for source, shown in per_source.items() if tweet_id in shown]
        md.append("")
    return md


def z_budget_section(budgets: list[dict]) -> list[str]:
    """Issue 15's Z budget: how much of Z each ``model.max_length`` cuts per split (benchmarks/z_budget.py)."""
    if not budgets:
        return []
    newest = {(r["dataset"], r["split"]): r for r in budgets}
    sizes = list(next(iter(newest.values()))["budgets"])
    md = ["## Z budget: what `model.max_length` cuts of Z, before any training", "",
          "Length of `[CLS] T [SEP] Z [SEP]` in the encoder's sub-tokens, with PGIM's ChatGPT Z, and per budget the share of "
          "sentences whose Z is cut (with the share of Z sub-tokens dropped). T is never cut. A budget that cuts nothing on "
          "a split feeds the tagger the same inputs as any larger one.", "",
          *head("| dataset | split | sentences | length mean / median / p90 / p99 / max | "
                + " | ".join(f"cut at {b}" for b in sizes) + " |")]
    for (dataset, split), r in sorted(newest.items(), key=lambda item: (item[0][0], SPLIT_ORDER.index(item[0][1]))):
        length = " / ".join(str(r["length"][k]) for k in ("mean", "median", "p90", "p99", "max"))
        cuts = " | ".join(f"{100 * v['z_cut_share']:.1f}% ({100 * v['z_pieces_dropped_share']:.1f}%)"
                          for v in r["budgets"].values())
        md.append(f"| {dataset} | {split} | {r['sentences']} | {length} | {cuts} |")
    md += ["", f"Encoder: `{r['encoder']}`; the configs' budget: {r['config_max_length']}.", ""]
    return md + commands(list(newest.values()))


BF16_DISTILL = ("`(bf16)`: that distill ran in bf16 (`precision: auto` on a CPU with bf16, where the distilled model "
                "also answers in bf16).")  # the route tables' mark beside a distill's minutes (step_minutes)


def pairing_label(row: dict) -> str:
    """The stage2 label a route_seeds row pairs with: its ``--train-label`` where its taggers trained in fp32, as the
    labels' text-only rows did; a row trained in bf16 (``precision: auto`` on a CPU with bf16) gets a label of its own."""
    precision = row.get("tagger_precision") or row.get("overrides", {}).get("train.precision") or "fp32"
    return row["train_label"] if precision == "fp32" else f"{row['train_label']}, {precision} tagger"


def step_minutes(steps: list[dict], step: str) -> str:
    """Minutes of the run that computed ``step`` among route_seeds rows' ``steps`` (the largest), ``-`` if none ran it;
    `` (bf16)`` where that run's result says it trained in bf16 (``precision: auto`` on a CPU or GPU with bf16)."""
    ran = [s[step] for s in steps if step in s]
    if not ran:
        return "-"
    computed = max(ran, key=lambda found: found["seconds"])
    return f"{computed['seconds'] / 60:.1f}" + (" (bf16)" if computed.get("result", {}).get("bf16") else "")


def routes_section(routes: list[dict]) -> list[str]:
    """Knowledge routes through the whole pipeline per seed (benchmarks/route_seeds.py): scores and the cost of each step."""
    if not routes:
        return []
    md = ["## Knowledge routes through the whole pipeline, per seed (`benchmarks/route_seeds.py`)", "",
          "Each route is `mner run -c CONFIG` as a user runs it: its knowledge stage (the distill stage and the distilled "
          "model's Z for every split, or the retrieved answers), then a [T;Z] tagger per seed with the training settings "
          "of the stage2 label it pairs with. Minutes are wall-clock minutes of the step on the row's machine: distil, Z "
          "for every split, and training plus scoring one tagger; a step found in the store costs seconds, so the distil "
          "and Z columns show the run that computed the step (the largest figure among the rows of the same route, base "
          "and config, whatever their label or overrides). The route's label is the stage2 "
          "label its taggers pair with, with `bf16 tagger` where they trained in bf16 (`train.precision: auto` on a CPU "
          "with bf16), which no text-only row did; " + BF16_DISTILL + " `verbatim`: gold test entities "
          "found word for word in the test Z.", "",
          *head("| dataset | route | answer form | base | config | seeds | dev F1 | test F1 | per-seed test F1 | verbatim | "
                "distil min | Z min | tagger min (mean) | commit |")]
    groups: dict[tuple, list[dict]] = {}
    for r in routes:
        groups.setdefault((r["dataset"], r["route"], r["answer_form"], str(r.get("base_model")), r["config"],
                           json.dumps(r["overrides"], sort_keys=True), pairing_label(r)), []).append(r)
    for (dataset, route, form, base, config, _, label), rows in sorted(groups.items()):
        rows = list(by_seed(rows).values())
        steps = [r["steps"] for r in rows]
        train = statistics.fmean(s["train"]["seconds"] for s in steps) / 60
        route_steps = [r["steps"] for r in routes if (r["dataset"], r["route"], r["answer_form"], str(r.get("base_model")),
                                                      r["config"]) == (dataset, route, form, base, config)]
        md.append(f"| {dataset} | {route} (`{label}`) | {form} | {base if base != 'None' else '-'} | `{config}` | "
                  f"{', '.join(str(r['seed']) for r in rows)} | {spread([r['dev_f1'] for r in rows])} | "
                  f"**{spread([r['test_f1'] for r in rows])}** | {per_seed(rows)} | "
                  f"{100 * rows[0]['test_verbatim_share']:.1f}% | {step_minutes(route_steps, 'distill')} | {step_minutes(route_steps, 'knowledge')} | {train:.1f} | "
                  f"{', '.join(sorted({r['commit'] for r in rows}))} |")
    return md + closing(routes)
