"""The shipped configs validate, with every relative path resolved against the file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mner.config import load_config

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "configs").glob("*.yaml")))
def test_shipped_config_validates(name: str) -> None:
    cfg = load_config(PROJECT / "configs" / name)
    assert cfg.dataset.train.is_absolute() and cfg.dataset.train.name == "train.txt"
    assert cfg.stage1.prompt.template_dir.is_dir(), f"{name}: prompt.template_dir {cfg.stage1.prompt.template_dir} is missing"


def test_the_distilled_config_is_the_local_zero_shot_route() -> None:
    cfg = load_config(PROJECT / "configs" / "twitter2017-distilled.yaml")
    assert cfg.stage1.distill.enabled and cfg.stage1.distill.method == "full"
    assert (cfg.stage1.knowledge.backend, cfg.stage1.llm.backend, cfg.stage1.prompt.n_examples) == ("llm", "transformers", 0)
    assert cfg.stage1.prompt.template_dir == PROJECT / "prompts" / "distill_v1"
    assert cfg.stage1.llm.max_tokens == 128
