"""One's own data (issue 34): a dataset is the demo sample's or the config's own, never a mix, and a knowledge or
caption file of other posts fails the run instead of leaving their Z or captions empty."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from mner.formats import read_conll
from mner.pgim import AlignmentError
from tests.conftest import SAMPLE

SPLITS = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
_OPENED: list[str] | None = None  # while recording: every path opened in this process


def _record_opens(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)  # stays for the process (audit hooks cannot be removed); records only inside opened()


@contextlib.contextmanager
def opened() -> Iterator[list[str]]:
    """The paths every thread of this process opens inside the block (the interpreter's audit event ``open``)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _own_posts(folder: Path, count: int = 6) -> dict[str, Path]:
    """The first ``count`` posts of each sample split, copied into ``folder`` as one's own CoNLL files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, name in SPLITS.items():
        blocks = [b for b in (SAMPLE / name).read_text(encoding="utf-8").split("\n\n") if b.strip()][:count]
        files[split] = folder / f"own_{split}.txt"
        files[split].write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return files


def test_an_own_dataset_with_files_left_out_never_reads_the_demo_sample(prefect_harness, tmp_path: Path) -> None:
    from flows.pipeline import pipeline
    from mner.samples import read_samples

    files = _own_posts(tmp_path / "data")
    train = read_conll(files["train"], repair=True).sentences
    answers = tmp_path / "data" / "answers.jsonl"  # the teacher's answers for one's own train posts
    answers.write_text("".join(json.dumps({"id": s.id, "knowledge": f"{s.tokens[0]} is named here"}) + "\n"
                               for s in train), encoding="utf-8")
    config = tmp_path / "own.yaml"  # no knowledge, captions, images or examples: nothing of the sample may fill them
    config.write_text("dataset: {name: own, train: data/own_train.txt, dev: data/own_dev.txt, test: data/own_test.txt}\n"
                      "stage1: {knowledge: {backend: retrieved, retrieved: {answers: data/answers.jsonl}}}\n"
                      f"artifacts_root: {tmp_path / 'store'}\n", encoding="utf-8")
    with opened() as paths:
        joined = pipeline(config_file=str(config), until="knowledge")["knowledge"]
    assert any(path.startswith(str(tmp_path / "data")) for path in paths)  # the recording saw the run's own reads
    sample = str(SAMPLE.resolve()) + os.sep
    assert [path for path in paths if path.startswith(sample)] == []
    rows = read_samples(Path(joined) / "train.jsonl")
    assert [s.id for s in rows] == [s.id for s in train]
    assert all(s.caption == "" for s in rows)  # no caption file: no captions (the sample's would have given some)
    assert all(s.knowledge and s.knowledge.endswith("is named here") for s in rows)  # Z by the route, from own answers


def test_a_caption_file_of_other_posts_fails_the_run_naming_the_file_share_and_posts(prefect_harness,
                                                                                   tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    files = _own_posts(tmp_path / "data")
    others = tmp_path / "data" / "captions.txt"  # captions of images none of these posts has
    others.write_text("".join(f"other{i}.jpg :a picture\n" for i in range(6)), encoding="utf-8")
    overrides = {"dataset.name": "own", **{f"dataset.{split}": str(path) for split, path in files.items()},
                 "dataset.captions": str(others), "variants": ["text"], "artifacts_root": str(tmp_path / "store")}
    train = read_conll(files["train"], repair=True).sentences
    with pytest.raises(AlignmentError) as failed:
        pipeline(overrides=overrides, until="knowledge")
    message = str(failed.value)
    assert message.startswith(f"{others}: a caption for 0 of 6 train posts (0.0%), below dataset.min_aligned_share=0.99")
    assert f"the first posts without: {', '.join(s.id for s in train)}" in message and "set dataset.captions" in message
    assert not (tmp_path / "store" / "knowledge").exists()  # it stopped before the knowledge join
    done = pipeline(overrides={**overrides, "dataset.min_aligned_share": 0}, until="knowledge")  # the check off
    assert Path(done["knowledge"]).is_dir()


def _load(files: dict[str, Path], root: Path) -> dict[str, Any]:
    from tasks.data import load_splits

    return load_splits.fn(sources={k: str(v) for k, v in files.items()}, repair_bio=True, artifacts_root=str(root))


def test_a_knowledge_file_that_aligns_with_too_few_posts_fails_the_join(tmp_path: Path) -> None:
    from tasks.data import join_knowledge

    files = _own_posts(tmp_path / "data")
    data, root = _load(files, tmp_path / "store"), str(tmp_path / "store")
    train = read_conll(files["train"], repair=True).sentences
    others = {f"knowledge_{split}": str(SAMPLE / "knowledge_test.txt") for split in SPLITS}  # the sample's test posts
    with pytest.raises(AlignmentError) as failed:
        join_knowledge.fn(data=data, sources=others, artifacts_root=root, knowledge_source="file", min_aligned_share=0.99)
    message = str(failed.value)
    assert message.startswith(f"{SAMPLE / 'knowledge_test.txt'}: knowledge for 0 of 6 train posts (0.0%), below "
                              "dataset.min_aligned_share=0.99; the first posts without: " + ", ".join(s.id for s in train))
    assert "set dataset.knowledge_train to the knowledge file of dataset.train" in message

    blocks = [b for b in (SAMPLE / "knowledge_train.txt").read_text(encoding="utf-8").split("\n\n") if b.strip()]
    five = tmp_path / "five_of_six.txt"  # the train posts' own blocks, the fourth left out
    five.write_text("\n\n".join(blocks[:3] + blocks[4:6]) + "\n", encoding="utf-8")
    own = {"knowledge_train": str(five), "knowledge_dev": str(SAMPLE / "knowledge_valid.txt"),
           "knowledge_test": str(SAMPLE / "knowledge_test.txt")}  # dev and test: the sample's, whose first posts these are
    with pytest.raises(AlignmentError, match=rf"knowledge for 5 of 6 train posts \(83\.3%\).*without: {train[3].id}\."):
        join_knowledge.fn(data=data, sources=own, artifacts_root=root, knowledge_source="file", min_aligned_share=0.99)
    joined = join_knowledge.fn(data=data, sources=own, artifacts_root=root, knowledge_source="file", min_aligned_share=0.8)
    report = json.loads((Path(joined["dir"]) / "alignment.json").read_text(encoding="utf-8"))
    assert report["train"]["without_knowledge"] == [train[3].id]  # below the share the gap is reported, as before


def test_teacher_answers_for_other_posts_fail_the_retrieved_stage(tmp_path: Path) -> None:
    from tasks.retrieved import retrieved_knowledge

    files = _own_posts(tmp_path / "data")
    data = _load(files, tmp_path / "store")
    train = read_conll(files["train"], repair=True).sentences
    answers = SAMPLE / "knowledge_test.txt"  # the teacher's answers for the sample's test posts, none of these
    with pytest.raises(AlignmentError, match=rf"^{answers}: teacher answers for 0 of 6 train posts \(0\.0%\).* without: "
                                             rf"{train[0].id}, .*set stage1\.knowledge\.retrieved\.answers"):
        retrieved_knowledge.fn(data=data, captions=None, ocr=None, sources={"answers": str(answers)}, k=1, embedder="random",
                               encoder="offline:all-MiniLM-L6-v2", min_score=-1.0, seed=0,
                               artifacts_root=str(tmp_path / "store"), min_aligned_share=0.99)
