"""``mner tag`` and the ``mner-tag`` flow on real tiny taggers: formats, resuming after a kill, bad input, knowledge routes,
and the Dask runner against the thread runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stage_checks import published_run_ids
from tests.tag_models import read_rows, sample_posts, tiny_training, write_posts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(prefect_harness, tmp_path_factory) -> dict[str, str]:
    """A text-only and a text+knowledge tagger (PGIM's knowledge file), one epoch on a few demo posts; and their store."""
    from flows.pipeline import pipeline

    root = tmp_path_factory.mktemp("store") / "artifacts"
    trained = pipeline(overrides=tiny_training(tmp_path_factory.mktemp("data"), root), until="train")
    return {"root": str(root), "text": trained["train (text)"], "knowledge": trained["train (text+knowledge)"]}


def _entities(path: str | Path) -> list[list[tuple]]:
    return [[(e["type"], e["start"], e["end"], e["text"]) for e in row["entities"]] for row in read_rows(path)]


def test_jsonl_text_and_conll_files_give_the_same_entities(models, tmp_path: Path) -> None:
    from flows.tag import tag

    files = write_posts(tmp_path / "in", sample_posts(40))
    found = {}
    for name, path in files.items():
        result = tag(input=str(path), model=models["text"], output=str(tmp_path / name), shard_size=16,
                     overrides={"artifacts_root": models["root"]})
        assert (result["posts"], result["tagged"], result["rejected"]) == (40, 40, 0), (name, result)
        found[name] = _entities(result["files"]["tagged.jsonl"])
    assert sum(map(len, found["posts.jsonl"])) > 0  # the tagger finds entities, so equal lists say something
    assert found["posts.jsonl"] == found["posts.txt"] == found["posts.conll"] == found["untagged.conll"]
    ids = [row["id"] for row in read_rows(tmp_path / "posts.conll" / "tagged.jsonl")]
    assert ids == [f"p{i}" for i in range(40)]  # CoNLL posts are named by their IMGID


def test_bad_lines_are_named_with_file_and_line_and_past_the_share_the_run_fails(models, tmp_path: Path) -> None:
    from flows.tag import TooManyRejected, tag

    posts = [json.dumps({"id": p["id"], "text": p["text"]}) for p in sample_posts(8)]
    lines = [posts[0], '{"id": "broken", "text": "no closing brace"', posts[1], json.dumps({"id": "blank", "text": "   "}),
             posts[2], json.dumps({"id": "pic", "text": "Seen at the Louvre", "image": "no-such-picture"}),
             json.dumps({"id": "long", "text": " ".join(["Paris"] * 80)}), *posts[3:]]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "in" / "lines.txt").write_text("Lady Gaga in NYC!\n\nObama in Paris\n", encoding="utf-8")
    common = {"input": str(tmp_path / "in"), "model": models["text"], "overrides": {"artifacts_root": models["root"]},
              "images": str(tmp_path), "output": str(tmp_path / "out")}
    result = tag(**common, max_rejected_share=0.5)
    rejected = {row["where"]: row for row in read_rows(tmp_path / "out" / "rejected.jsonl")}
    assert sorted(rejected) == ["bad.jsonl:2", "bad.jsonl:4", "bad.jsonl:6", "bad.jsonl:7", "lines.txt:2"], rejected
    assert rejected["bad.jsonl:2"]["reason"].startswith("not valid JSON")
    assert rejected["bad.jsonl:4"]["reason"] == rejected["lines.txt:2"]["reason"] == "empty post"
    assert rejected["bad.jsonl:6"]["reason"].startswith("missing image 'no-such-picture'")
    assert "longer than the model's budget" in rejected["bad.jsonl:7"]["reason"]
    assert "max_length=64" in rejected["bad.jsonl:7"]["reason"]
    assert (result["posts"], result["tagged"], result["rejected"]) == (15, 10, 5), result
    assert len(read_rows(tmp_path / "out" / "tagged.jsonl")) == 10
    assert result["rejected_by_file"] == {"bad.jsonl": {"rejected": 4, "posts": 12}, "lines.txt": {"rejected": 1, "posts": 3}}

    with pytest.raises(TooManyRejected) as failed:
        tag(**common, max_rejected_share=0.2)
    message = str(failed.value)
    assert "5 of 15 posts rejected (33.3%)" in message and "max_rejected_share=0.2" in message
    assert "bad.jsonl (4 of 12), lines.txt (1 of 3)" in message and str(tmp_path / "out" / "rejected.jsonl") in message


def test_a_text_knowledge_model_without_z_is_refused_naming_the_fix(models, tmp_path: Path) -> None:
    from flows.tag import tag
    from mner.model_routes import RouteRefused

    files = write_posts(tmp_path / "in", sample_posts(6))
    common = {"model": models["knowledge"], "overrides": {"artifacts_root": models["root"]}}
    with pytest.raises(RouteRefused) as refused:
        tag(input=str(files["posts.txt"]), **common)  # the model's route: Z from a file, and plain text brings none
    assert "reads knowledge Z from a file, and these posts bring none" in str(refused.value)
    assert "--knowledge-file FILE" in str(refused.value) and "knowledge=llm" in str(refused.value)
    with pytest.raises(RouteRefused, match="is a text\\+knowledge model .* needs knowledge Z for every post"):
        tag(input=str(files["posts.jsonl"]), knowledge="none", **common)
    with pytest.raises(RouteRefused, match="is text-only"):
        tag(input=str(files["posts.jsonl"]), model=models["text"], knowledge="file",
            overrides={"artifacts_root": models["root"]})

    knowledge = tmp_path / "z.jsonl"
    knowledge.write_text("".join(json.dumps({"id": f"p{i}", "knowledge": f"Z number {i}: a singer from New York"}) + "\n"
                                 for i in range(5)), encoding="utf-8")
    result = tag(input=str(files["posts.jsonl"]), knowledge_file=str(knowledge), with_knowledge=True,
                 max_rejected_share=0.5, output=str(tmp_path / "out"), **common)
    assert result["route"] == "file" and (result["tagged"], result["rejected"]) == (5, 1)
    assert [row["knowledge"] for row in read_rows(tmp_path / "out" / "tagged.jsonl")] == \
        [f"Z number {i}: a singer from New York" for i in range(5)]
    assert read_rows(tmp_path / "out" / "rejected.jsonl")[0]["reason"].startswith("no knowledge Z for id 'p5'")


def test_predict_takes_a_route_as_tag_does_and_refuses_a_knowledge_model_without_z(models) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    def predict(model: str, *more: str):  # noqa: ANN202 - click's Result
        return CliRunner().invoke(app, ["predict", "--run", models[model], "--text", "Obama visits Paris today",
                                        "--artifacts-root", models["root"], *more])

    refused = predict("knowledge")  # its route: Z from a file, and one post on the command line brings none
    assert refused.exit_code == 2
    assert "reads knowledge Z from a file, and this post brings none: give --knowledge-text TEXT" in refused.output
    assert "--knowledge llm" in refused.output and "Traceback" not in refused.output
    none = predict("knowledge", "--knowledge", "none")
    assert none.exit_code == 2 and "needs knowledge Z for every post; choose a route: --knowledge-text" in none.output
    given = predict("knowledge", "--knowledge-text", "Paris is a city in France")
    assert given.exit_code == 0, given.output
    assert json.loads(given.stdout)["knowledge"] == "Paris is a city in France"
    retrieved = predict("knowledge", "--knowledge", "retrieved")  # the demo config's train posts and teacher answers
    assert retrieved.exit_code == 0, retrieved.output
    assert json.loads(retrieved.stdout)["knowledge"].startswith("Named entities")
    as_text = predict("knowledge", "--knowledge", "Paris is a city in France")  # what --knowledge meant before
    assert as_text.exit_code == 2 and "is not a knowledge route" in as_text.output and "--knowledge-text" in as_text.output
    text_only = predict("text", "--knowledge-text", "Paris is a city in France")
    assert text_only.exit_code == 2 and "is text-only: it never read knowledge Z" in text_only.output
    plain = predict("text")
    assert plain.exit_code == 0 and json.loads(plain.stdout)["knowledge"] == ""


def _published_shards(root: Path) -> dict[str, str]:
    return {key: run for key, run in published_run_ids(root).items() if key.startswith("tag-shard/")}


def test_a_killed_run_tags_only_the_missing_shards_and_merges_the_same_output(models, tmp_path: Path) -> None:
    from flows.tag import tag

    posts = write_posts(tmp_path / "in", sample_posts(300))["posts.jsonl"]  # 30 shards of 10
    root = tmp_path / "store"
    command = [str(Path(sys.executable).with_name("mner")), "tag", str(posts), "--run", models["text"],
               "--artifacts-root", str(root), "--shard-size", "10"]
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(_published_shards(root)) < 3 and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(30)
    survivors = _published_shards(root)
    assert 3 <= len(survivors) < 30, f"{len(survivors)} shards were published before the kill"

    result = tag(input=str(posts), model=models["text"], shard_size=10, overrides={"artifacts_root": str(root)})
    after = _published_shards(root)
    assert result["shards"] == {"computed": 30 - len(survivors), "cached": len(survivors)}
    assert len(after) == 30 and all(after[key] == run for key, run in survivors.items())  # survivors reused as they were

    whole = tag(input=str(posts), model=models["text"], shard_size=10, overrides={"artifacts_root": str(tmp_path / "whole")})
    assert whole["shards"] == {"computed": 30, "cached": 0}
    merged = (Path(result["output"]) / "tagged.jsonl").read_bytes()
    assert merged == (Path(whole["output"]) / "tagged.jsonl").read_bytes() and merged.count(b"\n") == 300


def test_the_dask_runner_gives_byte_identical_output_to_the_thread_runner(models, tmp_path: Path, monkeypatch) -> None:
    from prefect_dask import DaskTaskRunner

    from flows.tag import tag

    executed: dict[str, tuple[int, int]] = {}
    real_exit = DaskTaskRunner.__exit__

    def counting_exit(self, *exc):  # records, just before the local cluster closes, what each worker process ran
        if self._client is not None:
            executed.update(self._client.run(lambda dask_worker: (dask_worker.state.executed_count, os.getpid())))
        return real_exit(self, *exc)

    monkeypatch.setattr(DaskTaskRunner, "__exit__", counting_exit)
    posts = write_posts(tmp_path / "in", sample_posts(60))["posts.txt"]
    outputs = {}
    for kind in ("threads", "dask"):
        result = tag(input=str(posts), model=models["text"], shard_size=12, conll=True, overrides={
            "artifacts_root": str(tmp_path / kind), "stage1.runner.kind": kind, "stage1.runner.max_workers": 2})
        assert result["shards"]["computed"] == 5
        outputs[kind] = [(Path(result["output"]) / name).read_bytes() for name in ("tagged.jsonl", "tagged.conll")]
    assert outputs["dask"] == outputs["threads"]
    assert len(executed) == 2 and sum(count for count, _ in executed.values()) == 5, executed
    assert os.getpid() not in {pid for _, pid in executed.values()}


def test_the_llm_route_asks_the_local_llm_once_per_post_and_reuses_the_answer_cache(models, tmp_path: Path) -> None:
    """Route llm on a real local llama.cpp server (SmolLM2): Z in the output, one cached answer per post, and a
    refreshed run (every shard tagged again) answered from that cache, which it leaves untouched."""
    from flows.tag import tag

    files = write_posts(tmp_path / "in", sample_posts(4))
    root = tmp_path / "store"
    overrides = {"artifacts_root": str(root), "stage1.prompt.n_examples": 0, "stage1.llm.max_tokens": 16}
    first = tag(input=str(files["posts.txt"]), model=models["knowledge"], knowledge="llm", with_knowledge=True,
                overrides=overrides)
    assert first["route"] == "llm" and first["tagged"] == 4, first
    assert all(row["knowledge"].strip() for row in read_rows(Path(first["output"]) / "tagged.jsonl"))
    tagged = (Path(first["output"]) / "tagged.jsonl").read_bytes()
    cache = {p: p.stat().st_mtime_ns for p in (root / "cache" / "llm").rglob("*.json")}
    assert len(cache) == 4
    again = tag(input=str(files["posts.txt"]), model=models["knowledge"], knowledge="llm", with_knowledge=True,
                overrides=overrides, refresh=True)
    assert again["shards"] == {"computed": 1, "cached": 0}
    assert {p: p.stat().st_mtime_ns for p in (root / "cache" / "llm").rglob("*.json")} == cache
    assert (Path(again["output"]) / "tagged.jsonl").read_bytes() == tagged


def test_a_model_trained_on_retrieved_entity_lists_is_tagged_with_the_same_route_and_form(prefect_harness,
                                                                                          tmp_path: Path) -> None:
    from flows.pipeline import pipeline
    from engine.distillation import teacher_answers
    from flows.tag import tag
    from mner import pgim
    from mner.formats import read_conll
    from mner.post_tokens import rebuild_post

    overrides = {**tiny_training(tmp_path / "data", tmp_path / "store"), "variants": ["text+knowledge"],
                 "stage1.knowledge.backend": "retrieved", "stage1.knowledge.answer_form": "entities",
                 "stage1.knowledge.retrieved.k": 1}
    model = pipeline(overrides=overrides, until="train")["train (text+knowledge)"]
    train = read_conll(overrides["dataset.train"], repair=True).sentences
    found, _ = teacher_answers(Path(__file__).resolve().parents[1] / "data/sample/knowledge_train.txt", train)
    teacher = {sample_id: text for sample_id, (text, _) in found.items()}
    posts = tmp_path / "posts.jsonl"  # train posts as a user would write them: each one's nearest train post is itself
    answered = [s for s in train if teacher.get(s.id)][:4]
    posts.write_text("".join(json.dumps({"id": s.id, "text": rebuild_post(s.tokens)[0]}) + "\n" for s in answered),
                     encoding="utf-8")
    result = tag(input=str(posts), model=model, with_knowledge=True, output=str(tmp_path / "out"),
                 overrides={k: v for k, v in overrides.items() if k.startswith(("dataset.", "artifacts_root"))})
    assert result["route"] == "retrieved" and result["tagged"] == 4
    for row in read_rows(tmp_path / "out" / "tagged.jsonl"):
        assert row["knowledge"] == pgim.answer_in_form(teacher[row["id"]], "entities")
        assert "reasoning" not in row["knowledge"].lower() and row["knowledge"].lower().startswith("named entities")
