"""Trained models found by a readable reference (``mner predict --run latest``, ``DATASET/VARIANT``, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mner.store import ArtifactStore
from mner.trained import DistilledModelNotFound, ModelNotFound, latest_distilled, resolve_model, trained_models


def _train_output(store: ArtifactStore, variant: str, dataset: str | None, seed: int) -> Path:
    """A published train output as the train stage writes it: its model file, and variant and dataset in the manifest."""
    run = store.begin("train", {"data": "d"}, {"variant": variant, "train": {"seed": seed}}, "v1")
    (run.work_dir / "tagger.json").write_text("{}")
    extra = {"variant": variant, **({"dataset": dataset} if dataset else {})}
    return Path(run.publish(extra).dir)


@pytest.fixture()
def store(tmp_path: Path) -> dict[str, Path]:
    """Four train outputs, oldest first: one from before datasets were recorded, then tiny-a's two, then tiny-b's."""
    store = ArtifactStore(tmp_path / "store")
    return {"old": _train_output(store, "text", None, 1), "a/text": _train_output(store, "text", "tiny-a", 2),
            "a/tk": _train_output(store, "text+knowledge", "tiny-a", 3), "b/text": _train_output(store, "text", "tiny-b", 4)}


def test_latest_and_the_dataset_and_variant_filters_pick_the_newest_match(store: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert [m.dir for m in trained_models(root)] == [store["b/text"], store["a/tk"], store["a/text"], store["old"]]
    assert resolve_model("latest", root) == store["b/text"]
    assert resolve_model("latest:text+knowledge", root) == store["a/tk"]
    assert resolve_model("latest:text", root) == store["b/text"]
    assert resolve_model("tiny-a/text", root) == store["a/text"]
    assert resolve_model("tiny-a/latest", root) == store["a/tk"]
    assert resolve_model(store["old"].name[:8], root) == store["old"]  # a key prefix
    assert resolve_model(str(store["a/text"]), tmp_path / "elsewhere") == store["a/text"]  # a directory, any store


def test_a_reference_that_names_no_model_lists_the_store_and_the_spellings(store: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "store"
    for reference in ("tiny-b/text+knowledge", "tiny-c/latest", "latest:text+image", "nope", ""):
        with pytest.raises(ModelNotFound) as caught:
            resolve_model(reference, root)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{reference!r} names no single trained model")
        for model in trained_models(root):
            assert f"{model.dataset or '?'}/{model.variant} ({model.created}, {model.dir})" in message
        assert "?/text" in message and "Spell it latest, latest:VARIANT, DATASET/VARIANT, DATASET/latest" in message
    with pytest.raises(ModelNotFound, match="holds: no trained model"):
        resolve_model("latest", tmp_path / "empty")


def test_predict_refuses_an_unknown_reference_in_one_line(store: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["predict", "--run", "tiny-b/text+knowledge", "--text", "Obama in Paris",
                                      "--artifacts-root", str(tmp_path / "store")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --run: 'tiny-b/text+knowledge' names no single trained model")
    assert str(store["b/text"]) in lines[0]


def _distill_output(store: ArtifactStore, epochs: int, answers: str, form: str = "full") -> Path:
    """A published distill output as the stage writes it: a model directory, its settings and sources in the manifest."""
    sources = {"sources.answers": answers, "sources.base_model": "base"}
    run = store.begin("distill", sources, {"distill": {"epochs": epochs}, "answer_form": form}, "v1")
    (run.work_dir / "model").mkdir()
    (run.work_dir / "model" / "config.json").write_text("{}")
    return Path(run.publish().dir) / "model"


def test_predict_asks_the_distilled_model_of_its_own_settings_and_answers_not_the_newest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    mine = _distill_output(store, 1, "answers-a")
    longer = _distill_output(store, 2, "answers-a")
    fold = _distill_output(store, 1, "answers-fold")
    listing = _distill_output(store, 1, "answers-a", form="entities")
    one = {"distill": {"epochs": 1}, "answer_form": "full"}
    assert latest_distilled(store.root) == (listing, listing.parent.name)  # no settings: the newest
    assert latest_distilled(store.root, one, {"sources.answers": "answers-a"})[0] == mine
    assert latest_distilled(store.root, {**one, "distill": {"epochs": 2}}, {"sources.answers": "answers-a"})[0] == longer
    assert latest_distilled(store.root, one, {"sources.answers": "answers-fold"})[0] == fold
    assert latest_distilled(store.root, {**one, "answer_form": "entities"}, {"sources.answers": "answers-a"})[0] == listing
    with pytest.raises(DistilledModelNotFound, match="holds 4 distilled model\\(s\\), none trained with this config's"):
        latest_distilled(store.root, one, {"sources.answers": "answers-a", "sources.base_model": "other"})
