"""A character-level dataset (Chinese, MSRA-style: no IMGID lines, no images) end to end: ``mner data check``,
``mner run`` text-only, then ``mner tag`` and ``mner predict`` on raw text, split per character as the training file is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from flows.tag import tag  # at import: Prefect's log handler keeps the stderr of its first import, not a CliRunner's
from tests.char_corpus import char_config, write_char_corpus
from tests.conftest import PROJECT
from tests.tag_models import read_rows

pytestmark = pytest.mark.slow

# raw posts: spaces (ASCII and ideographic) between words, Latin letters and digits inside, a character outside the
# encoder's vocabulary (龘, 🀄) and one it drops entirely (a zero-width space)
POSTS = ["张伟在北京的清华大学工作。", "李娜 昨天访问了 上海，和NBA的王芳见面。", "2008年，据新华社报道，刘洋到达广州🀄。",
         "赵敏\u3000加入了龘腾讯公司\u200b。"]


def _mner(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``mner ARGS`` in a child process of this project, on the suite's Prefect server; fails the test on a non-zero exit."""
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory) -> dict:
    """The corpus, its config, and the text-only model ``mner run`` trained on it (2 epochs), in a store of its own."""
    from prefect.settings import PREFECT_API_URL

    base = tmp_path_factory.mktemp("charlevel")
    files = write_char_corpus(base / "data")
    config = base / "msra-style.yaml"
    config.write_text(yaml.safe_dump(char_config(files, base / "artifacts", epochs=2), allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    scores = json.loads(_mner(["run", "-c", str(config), "--json"], env).stdout)
    return {"files": files, "root": base / "artifacts", "env": env, "scores": scores, "model": scores["text"]["model"]}


def test_data_check_reads_a_character_level_file_without_imgid_lines(tmp_path: Path) -> None:
    files = write_char_corpus(tmp_path)
    done = CliRunner().invoke(app, ["data", "check", *map(str, files.values())])
    assert done.exit_code == 0, done.output
    train = done.output.split(f"{files['train']}:")[1].split(f"{files['dev']}:")[0]
    assert "tweets:   30" in train and "image ids: no" in train and "LOC" in train and "ORG" in train and "PER" in train


def test_a_text_only_run_records_the_chars_convention_with_the_model(trained: dict) -> None:
    assert set(trained["scores"]) == {"text"}
    manifest = json.loads((Path(trained["model"]) / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["dataset"], manifest["tokenization"]) == ("msra-style", "chars")
    assert trained["scores"]["text"]["test_f1"] > 0  # it learnt to find entities, so the tags below say something


def test_tag_splits_raw_text_per_character_and_predict_agrees(trained: dict, tmp_path: Path) -> None:
    posts = tmp_path / "posts.txt"
    posts.write_text("".join(f"{post}\n" for post in POSTS), encoding="utf-8")
    done = _mner(["tag", str(posts), "--run", trained["model"], "--artifacts-root", str(trained["root"]),
                  "-o", str(tmp_path / "out")], trained["env"])
    result = json.loads(done.stdout)
    assert (result["tokenization"], result["posts"], result["tagged"]) == ("chars", len(POSTS), len(POSTS)), result
    rows = read_rows(tmp_path / "out" / "tagged.jsonl")
    labels = {"O", *(f"{edge}-{kind}" for edge in "BI" for kind in ("PER", "LOC", "ORG"))}
    for post, row in zip(POSTS, rows):
        assert row["tokens"] == [char for char in post if not char.isspace()]
        assert len(row["tags"]) == len(row["tokens"]) and set(row["tags"]) <= labels
        for entity in row["entities"]:
            first, last = entity["chars"]
            assert entity["text"] == post[first:last]
            assert entity["text"].replace(" ", "").replace("\u3000", "") == "".join(row["tokens"][entity["start"]:entity["end"]])
    assert sum(len(row["entities"]) for row in rows) > 0  # the agreement below is over found entities, not only O tags

    for post, row in zip(POSTS, rows):
        answer = CliRunner().invoke(app, ["predict", "--run", trained["model"], "--artifacts-root", str(trained["root"]),
                                          "--text", post])
        assert answer.exit_code == 0, answer.output
        predicted = json.loads(answer.stdout)
        assert predicted["tokenization"] == "chars"
        assert (predicted["tokens"], predicted["tags"], predicted["entities"]) == (row["tokens"], row["tags"], row["entities"])


def test_tag_reads_a_conll_file_of_characters_and_names_entities_without_spaces(trained: dict, tmp_path: Path) -> None:
    result = tag(input=str(trained["files"]["test"]), model=trained["model"], output=str(tmp_path / "out"),
                 overrides={"artifacts_root": str(trained["root"])})
    rows = read_rows(result["files"]["tagged.jsonl"])
    assert result["tagged"] == 8 and all(len(row["tokens"]) == len(row["tags"]) for row in rows)
    entities = [entity for row in rows for entity in row["entities"]]
    assert entities and all(entity["text"] == "".join(row["tokens"][entity["start"]:entity["end"]])
                            for row in rows for entity in row["entities"])
