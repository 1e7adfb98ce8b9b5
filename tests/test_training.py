"""The training loop: bucketed batches, and resuming after the process is killed mid-run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PROJECT, SAMPLE

from engine.taggers import BEST_WEIGHTS, bucketed_batches, load_tagger
from engine.runtime import resolve_encoder
from engine.training import CHECKPOINT, train_tagger
from mner.config import DEFAULT_ENCODER, ModelConfig, TrainConfig
from mner.formats import read_conll
from mner.samples import Sample
from mner.tags import entity_types, label_list

SCORES = ("loss", "dev_f1", "dev_precision", "dev_recall")  # what an epoch computed (not its timings)


def test_bucketed_batches_cover_every_sentence_once() -> None:
    lengths = [random.Random(i).randint(5, 200) for i in range(203)]
    batches = bucketed_batches(lengths, batch_size=8, bucket_size=5, rng=random.Random(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(203))
    assert all(len(b) <= 8 for b in batches)
    # inside a batch lengths are close: each batch is a slice of a length-sorted bucket
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 60


def _tiny_examples(n: int) -> list[Sample]:
    return read_conll(SAMPLE / "train.txt", repair=True).sentences[:n]


def run_tiny(work: Path, epochs: int) -> dict:
    """Train on 24 sample sentences for ``epochs`` epochs in ``work`` (used in a child process too)."""
    rows = _tiny_examples(24)
    labels = label_list(entity_types([t for r in rows for t in r.tags]))
    # one thread wherever it runs, so that a killed child and a later run in this process compute alike
    cfg = TrainConfig(epochs=epochs, batch_size=4, patience=10, seed=7, precision="fp32", num_threads=1)
    logs: list[str] = []
    result = train_tagger(rows, rows[:8], labels, ModelConfig(max_length=64), cfg, work, False, logs.append)
    return {"result": result.__dict__, "logs": logs}


def test_resume_after_kill(tmp_path: Path) -> None:
    work = tmp_path / "train"
    # killed by itself at a fixed point: one step into epoch 3, after epoch 2's checkpoint (tests/kill_tagger_training.py)
    child = subprocess.run([sys.executable, "-m", "tests.kill_tagger_training", str(work)], cwd=PROJECT,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stdout[-2000:] + child.stderr[-3000:]
    assert torch.load(work / CHECKPOINT, weights_only=False)["state"]["epoch"] == 2
    out = run_tiny(work, epochs=4)
    assert any(line.startswith("resuming after epoch 2") for line in out["logs"]), out["logs"]
    history = out["result"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]

    # the resumed run ends where an uninterrupted run of the same seed ends: same history, same weights
    # (compared to rounding: both ran on one thread)
    reference_run = run_tiny(tmp_path / "straight", epochs=4)
    assert not any(line.startswith("resuming") for line in reference_run["logs"])
    straight = reference_run["result"]
    for resumed, reference in zip(history, straight["history"], strict=True):
        assert {k: resumed[k] for k in SCORES} == pytest.approx({k: reference[k] for k in SCORES}, rel=1e-3, abs=1e-4)
    assert out["result"]["best_epoch"] == straight["best_epoch"]
    for record in straight["history"]:  # where memory went, per epoch: the training loop, then dev scoring
        assert 0 < record["rss_mib_after_train"] <= record["peak_rss_mib_after_train"] <= record["peak_rss_mib_after_dev"]
        assert 0 < record["rss_mib_after_dev"] <= record["peak_rss_mib_after_dev"]
    resumed_weights = torch.load(work / BEST_WEIGHTS, weights_only=True)
    reference_weights = torch.load(tmp_path / "straight" / BEST_WEIGHTS, weights_only=True)
    assert resumed_weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert torch.allclose(resumed_weights[name].float(), tensor.float(), rtol=1e-3, atol=1e-5), name
    assert not (work / CHECKPOINT).exists()  # removed once training finished
    assert json.loads((work / "history.json").read_text())["epochs_run"] == 4
    tagger, encoder = load_tagger(work)
    rows = _tiny_examples(3)
    from engine.taggers import predict

    tags = predict(tagger, [encoder.encode(r.tokens) for r in rows], torch.device("cpu"), False)
    assert [len(t) for t in tags] == [len(r.tokens) for r in rows]


def test_predict_command_prints_entities_as_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    run_tiny(tmp_path / "model", epochs=1)
    text = "RT @CNN : Obama visits Paris today"
    result = CliRunner().invoke(app, ["predict", "--run", str(tmp_path / "model"), "--text", text])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["tokens"] == ["RT", "@", "CNN", ":", "Obama", "visits", "Paris", "today"]  # split as mner tag splits
    assert answer["tokenization"] == "twitter2017" and len(answer["tags"]) == len(answer["tokens"])
    for entity in answer["entities"]:
        assert entity["text"] == text[entity["chars"][0]:entity["chars"][1]]
        assert answer["tags"][entity["start"]] == "B-" + entity["type"]
    missing = CliRunner().invoke(app, ["predict", "--run", "nope", "--text", text, "--artifacts-root", str(tmp_path)])
    assert missing.exit_code != 0 and "names no single trained model" in missing.output


@pytest.mark.parametrize(("warmup", "total"), [(0, 7), (3, 10), (10, 10), (1, 3)])
def test_the_warmup_schedule_matches_transformers(warmup: int, total: int) -> None:
    """Our linear warm-up and decay gives transformers' learning rates at every step."""
    from transformers import get_linear_schedule_with_warmup

    from engine.training import linear_warmup_decay

    def rates(make) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        scheduler = make(optimizer)
        seen = []
        for _ in range(total + 2):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    ours = rates(lambda o: torch.optim.lr_scheduler.LambdaLR(o, linear_warmup_decay(warmup, total)))
    assert ours == pytest.approx(rates(lambda o: get_linear_schedule_with_warmup(o, warmup, total)))
    assert max(ours) > 0


def test_default_threads_follow_the_cores_and_omp_num_threads(monkeypatch) -> None:
    from engine.runtime import available_cores, set_threads

    cores, before = len(os.sched_getaffinity(0)), torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert available_cores() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores() == 1 and set_threads(0) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 7))
    assert available_cores() == cores
    assert set_threads(2) == 2  # an explicit train.num_threads wins
    torch.set_num_threads(before)


def test_memory_readings_follow_what_the_process_holds() -> None:
    import numpy as np

    from engine.runtime import memory_mib

    before = memory_mib()
    block = np.ones(300 * 2**20, dtype=np.uint8)  # 300 MiB, every page touched
    held = memory_mib()
    assert held["rss_mib"] - before["rss_mib"] > 250
    assert held["peak_rss_mib"] >= held["rss_mib"] > 0
    del block
    after = memory_mib()
    assert held["rss_mib"] - after["rss_mib"] > 250  # the reading is of now, not of the peak
    assert after["peak_rss_mib"] > held["rss_mib"] - 5  # the kernel's high-water mark lags by a few pages at most


@pytest.mark.slow
def test_a_compiled_encoder_computes_the_eager_losses_and_saves_weights_an_eager_tagger_loads(tmp_path: Path) -> None:
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor_config

    from transformers import AutoTokenizer, BertConfig, BertModel

    encoder = tmp_path / "tiny-bert"  # a 2-layer encoder compiles in seconds; compilation, not size, is under test
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(DEFAULT_ENCODER))
    tokenizer.save_pretrained(encoder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(encoder)
    rows = _tiny_examples(8)
    labels = label_list(entity_types([t for r in rows for t in r.tags]))
    settings = {"epochs": 2, "batch_size": 4, "patience": 10, "seed": 7, "precision": "fp32", "num_threads": 1}

    def run(name: str, compile_encoder: bool):
        return train_tagger(rows, rows[:4], labels, ModelConfig(encoder=str(encoder), max_length=64),
                            TrainConfig(**settings, compile_encoder=compile_encoder), tmp_path / name, False, [].append)

    eager = run("eager", False)
    torch._dynamo.reset()
    counters.clear()
    # the compiled graph draws dropout masks from eager's random stream, so that the two runs can be compared
    with inductor_config.patch(fallback_random=True):
        compiled = run("compiled", True)
    assert counters["stats"]["unique_graphs"] >= 1  # the encoder ran as compiled graphs
    for ours, theirs in zip(compiled.history, eager.history, strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-3)
    weights = torch.load(tmp_path / "compiled" / BEST_WEIGHTS)
    assert list(weights) == list(torch.load(tmp_path / "eager" / BEST_WEIGHTS))  # no "_orig_mod." in the names
    tagger, _ = load_tagger(tmp_path / "compiled")
    assert all(torch.equal(tagger.state_dict()[name], tensor) for name, tensor in weights.items())
    torch._dynamo.reset()
