"""`mner tag` on Twitter-2017 test posts as raw text: posts/s against `mner predict` in a loop, peak RSS, and F1.

    python benchmarks/tag_throughput.py --text-model twitter2017/text [--knowledge-model twitter2017/text+knowledge]
        [--distilled-config configs/twitter2017-distilled.yaml]
        [--distilled-model artifacts/distill/KEY/model] [--shard-size 1024]
        [--modes text file llm] [--posts 5000] [--predict-posts 20] [--rss-posts 1000 100000] [--f1 text file]

The models are named as `mner predict --run` names them, in the project's store (``$MNER_ARTIFACTS_ROOT``).

Each test post's text is rebuilt from its tokens as a user would type it (mner.post_tokens.rebuild_post) and
repeated, with new ids, up to ``--posts``. Each mode runs `mner tag` end to end (a fresh store: nothing cached),
file to JSONL, as a command, and then `mner predict` over the first ``--predict-posts`` of the same posts, one
command per post as users run it today: text-only; [T;Z] with Z from a file (PGIM's test answers as JSONL);
with ``--distilled-config``, [T;Z] with Z from a distilled local model (route ``distilled``): ``--distilled-model``
(a distill output's ``model/`` folder), else the config's own distilled model in the store, else the undistilled
SmolLM2 base in its place. Every `mner tag` run cuts the input into ``--shard-size`` posts per shard (recorded).
``--rss-posts`` tags that many posts with the text-only model and records the peak RSS of the `mner tag`
process. ``--f1`` scores the text-only and file models on the raw text and on the given tokens (entities
compared by character span in the rebuilt text). Each row goes to benchmarks/results/tag_throughput.jsonl as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import append_rows, distilled_label, provenance  # noqa: E402

from engine.llm_server import default_model_path  # noqa: E402
from mner.config import default_artifacts_root, load_config  # noqa: E402
from mner.formats import read_conll  # noqa: E402
from mner.pgim import read_knowledge  # noqa: E402
from mner.post_tokens import rebuild_post  # noqa: E402
from mner.posts import SHARD_SIZE as SHARD_SIZE_DEFAULT  # noqa: E402
from mner.tags import iob2_spans  # noqa: E402
from mner.trained import DistilledModelNotFound, latest_distilled, resolve_model  # noqa: E402
from tasks.distill import distilled_by  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tag_throughput.jsonl"
DATA = ROOT.parent / "shared" / "data" / "twitter2017"
MNER = str(Path(sys.executable).with_name("mner"))


def write_inputs(folder: Path, count: int, knowledge: bool) -> tuple[Path, Path | None]:
    """``count`` test posts as JSONL (ids ``<IMGID>``, then ``<IMGID>#<copy>``), and their PGIM knowledge as JSONL when asked."""
    sentences = read_conll(DATA / "test.txt", repair=True).sentences
    answers = read_knowledge(DATA / "pgim" / "knowledge_test.txt", sentences).knowledge if knowledge else None
    posts, z = folder / f"posts-{count}.jsonl", folder / f"knowledge-{count}.jsonl"
    with open(posts, "w", encoding="utf-8") as out, open(z, "w", encoding="utf-8") as zout:
        for index in range(count):
            sentence = sentences[index % len(sentences)]
            post_id = sentence.image_id if index < len(sentences) else f"{sentence.image_id}#{index // len(sentences)}"
            out.write(json.dumps({"id": post_id, "text": rebuild_post(sentence.tokens)[0]}, ensure_ascii=False) + "\n")
            if answers is not None:
                zout.write(json.dumps({"id": post_id, "knowledge": answers[index % len(sentences)]}, ensure_ascii=False) + "\n")
    return posts, (z if knowledge else None)


def run_tag(posts: Path, model: str, store: Path, *extra: str, shard_size: int = SHARD_SIZE_DEFAULT) -> dict:
    """`mner tag` as a command into a fresh store: its result, wall seconds, the peak RSS of its process (MiB) and the
    CPU seconds it used (its Prefect server, a child, left out): on a shared machine, posts per CPU-second do not
    depend on what else runs."""
    command = [MNER, "tag", str(posts), "--run", model, "--artifacts-root", str(store), "-o", str(store / "out"),
               "--shard-size", str(shard_size), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, cpu = 0.0, 0.0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(next(s for s in status.splitlines() if s.startswith("VmHWM:")).split()[1]) / 1024)
            ticks = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
            cpu = max(cpu, sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK"))
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(0.2)
    out = process.stdout.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return {**json.loads(out[out.index("{"):]), "wall": time.perf_counter() - started, "peak_rss_mib": round(peak, 1),
            "cpu_seconds": round(cpu, 1)}


def run_predict(posts: Path, model: str, count: int, extra: list[str], knowledge: Path | None = None) -> float:
    """Posts/s of `mner predict` run once per post over the first ``count`` posts."""
    rows = [json.loads(line) for line in posts.read_text(encoding="utf-8").splitlines()[:count]]
    z = {row["id"]: row["knowledge"] for row in map(json.loads, knowledge.read_text().splitlines())} if knowledge else {}
    started = time.perf_counter()
    for row in rows:
        with_z = ["--knowledge-text", z[row["id"]]] if knowledge else []
        subprocess.run([MNER, "predict", "--run", model, "--text", row["text"], *with_z, *extra], check=True,
                       capture_output=True)
    return len(rows) / (time.perf_counter() - started)


def f1_rows(model: str, store: Path, folder: Path, knowledge: bool, shard_size: int) -> dict:
    """Entity P/R/F1 (by character span in the rebuilt text) of `mner tag` on the raw test posts and on the given tokens."""
    sentences = read_conll(DATA / "test.txt", repair=True).sentences
    spans = {s.image_id: rebuild_post(s.tokens)[1] for s in sentences}
    gold = {(s.image_id, spans[s.image_id][e.start][0], spans[s.image_id][e.end - 1][1], e.type)
            for s in sentences for e in iob2_spans(s.tags)}
    posts, z = write_inputs(folder, len(sentences), knowledge)
    extra = ["--knowledge-file", str(z)] if z else []
    scores = {}
    for name, given in (("raw_text", posts), ("given_tokens", DATA / "test.txt")):
        out = run_tag(given, model, store / name, *extra, shard_size=shard_size)
        rows = [json.loads(line) for line in Path(out["files"]["tagged.jsonl"]).read_text(encoding="utf-8").splitlines()]
        found = set()
        for row in rows:
            post = row["id"].split("#")[0]
            for e in row["entities"]:
                chars = e.get("chars") or [spans[post][e["start"]][0], spans[post][e["end"] - 1][1]]
                found.add((post, chars[0], chars[1], e["type"]))
        hit = len(found & gold)
        p, r = hit / max(len(found), 1), hit / len(gold)
        scores[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-9), 4)}
    return scores


def main() -> None:
    """Run the modes asked for and append one row per mode."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-model", required=True)
    parser.add_argument("--knowledge-model")
    parser.add_argument("--distilled-config")
    parser.add_argument("--distilled-model", type=Path, help="a distill output's model/ folder for the llm mode")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE_DEFAULT, help="posts per shard of every mner tag run")
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--distilled-posts", type=int, default=128)
    parser.add_argument("--predict-posts", type=int, default=20)
    parser.add_argument("--rss-posts", type=int, nargs="*", default=[])
    parser.add_argument("--modes", nargs="*", default=["text", "file", "llm"], choices=["text", "file", "llm"],
                        help="throughput runs: text-only, Z from a file, Z from the local LLM")
    parser.add_argument("--f1", nargs="*", default=[], choices=["text", "file"], help="F1 of these models")
    args = parser.parse_args()
    store = default_artifacts_root()  # the references name models of the project's store; each run tags into a fresh one
    args.text_model = str(resolve_model(args.text_model, store))
    args.knowledge_model = str(resolve_model(args.knowledge_model, store)) if args.knowledge_model else None
    where, rows = provenance(), []
    load = lambda: Path("/proc/loadavg").read_text().split()[0]  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="tag-throughput-") as tmp:
        folder = Path(tmp)
        modes = [("text-only", args.text_model, [], [], args.posts, False)] if "text" in args.modes else []
        if args.knowledge_model and "file" in args.modes:
            modes.append(("[T;Z], Z from a file", args.knowledge_model, [], [], args.posts, True))
        if args.distilled_config and "llm" in args.modes:
            try:
                distilled = args.distilled_model or latest_distilled(store, *distilled_by(load_config(args.distilled_config)))[0]
                label = f"[T;Z], Z from the {distilled_label(Path(distilled))}"
            except DistilledModelNotFound:  # the same network before distillation: the same cost per generated token
                distilled, label = default_model_path(), "[T;Z], Z from the local LLM (SmolLM2 base, not distilled)"
            config = ["-c", args.distilled_config, "--set", f"stage1.llm.local_model={distilled}"]  # answer caches stay cold
            modes.append((label, args.knowledge_model or args.text_model, [*config, "--knowledge", "distilled"],
                          ["--llm", *config], args.distilled_posts, False))
        for mode, model, extra, predict_extra, count, knowledge in modes:
            posts, z = write_inputs(folder, count, knowledge)
            out = run_tag(posts, model, folder / f"store-{len(rows)}", *extra, *(["--knowledge-file", str(z)] if z else []),
                          shard_size=args.shard_size)
            fresh = ["--artifacts-root", str(folder / f"predict-{len(rows)}")] if predict_extra else []
            predicted = run_predict(posts, model, args.predict_posts, [*predict_extra, *fresh], z)
            rows.append({"mode": mode, "posts": count, "tag_posts_per_second": out["posts_per_second"],
                         "tag_command_posts_per_second": round(count / out["wall"], 1),
                         "tag_posts_per_cpu_second": round(count / max(out["cpu_seconds"], 0.1), 1),
                         "predict_posts_per_second": round(predicted, 3), "predict_posts": args.predict_posts,
                         "peak_rss_mib": out["peak_rss_mib"], "rejected": out["rejected"], "shard_size": args.shard_size,
                         "load_1min": load(), **where})
            print(json.dumps(rows[-1]), flush=True)
            append_rows(RESULTS, rows[-1:])
        for count in args.rss_posts:
            posts, _ = write_inputs(folder, count, False)
            out = run_tag(posts, args.text_model, folder / f"rss-{count}", shard_size=args.shard_size)
            rows.append({"mode": "peak RSS, text-only", "posts": count, "tag_posts_per_second": out["posts_per_second"],
                         "tag_command_posts_per_second": round(count / out["wall"], 1), "peak_rss_mib": out["peak_rss_mib"],
                         "shard_size": args.shard_size, "load_1min": load(), **where})
            print(json.dumps(rows[-1]), flush=True)
            append_rows(RESULTS, rows[-1:])
        for name in args.f1:
            variant, model = {"text": ("text-only", args.text_model),
                              "file": ("[T;Z], Z from a file", args.knowledge_model)}[name]
            if model:
                scores = f1_rows(model, folder / f"f1-{name}", folder, name == "file", args.shard_size)
                rows.append({"mode": f"F1 {variant}", "posts": 723, **scores, "load_1min": load(), **where})
                print(json.dumps(rows[-1]), flush=True)
                append_rows(RESULTS, rows[-1:])


if __name__ == "__main__":
    main()
