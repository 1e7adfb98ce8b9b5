"""Trained models in the artifact store, found by a readable reference (``mner predict --run``).

A ``train`` output's manifest records its ``variant`` and its ``dataset`` (the name in the config;
outputs trained before the name was recorded show ``?``). Newest means the latest ``created`` time
of the manifest (the manifest file's mtime breaks ties, and stands in for a missing time). A
reference is one of:

- ``latest``: the newest trained model in the store;
- ``latest:VARIANT``: the newest of that variant, e.g. ``latest:text+knowledge``;
- ``DATASET/VARIANT``: the newest of that dataset and variant, e.g. ``twitter2015/text+knowledge``;
- ``DATASET/latest``: the newest of that dataset, whatever the variant;
- a train-stage directory (one holding ``tagger.json``), or a train key (a unique prefix is enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mner.store import CREATED_FORMAT, MANIFEST, ArtifactStore

TRAIN_STAGE = "train"
MODEL_FILE = "tagger.json"
LATEST = "latest"
DISTILL_STAGE = "distill"
DISTILLED_MODEL = "model"  # the model directory inside a distill output
SPELLINGS = "latest, latest:VARIANT, DATASET/VARIANT, DATASET/latest, a train directory or a train key (prefix)"
LISTED = 20


@dataclass(frozen=True)
class TrainedModel:
    """One published train output: where it lies, what it was trained on, and when."""

    dir: Path
    key: str
    dataset: str | None
    variant: str | None
    created: str
    newness: tuple[float, int]

    def describe(self) -> str:
        """``DATASET/VARIANT (created, dir)``, with ``?`` for what the manifest does not say."""
        return f"{self.dataset or '?'}/{self.variant or '?'} ({self.created or 'no time'}, {self.dir})"


class ModelNotFound(LookupError):
    """A reference that names no single trained model; the message lists what the store holds."""

    def __init__(self, reference: str, root: Path, models: list[TrainedModel]) -> None:
        held = "; ".join(model.describe() for model in models[:LISTED]) or "no trained model (`mner run` trains some)"
        if len(models) > LISTED:
            held += f"; and {len(models) - LISTED} older"
        super().__init__(f"{reference!r} names no single trained model in {root}, which holds: {held}. "
                         f"Spell it {SPELLINGS}")


def _newness(entry: dict[str, Any]) -> tuple[float, int]:
    """(created as a timestamp, manifest mtime in ns): the order of "newest"; the mtime where no time is recorded."""
    mtime = (Path(entry["dir"]) / MANIFEST).stat().st_mtime_ns
    try:
        created = datetime.strptime(entry["created"], CREATED_FORMAT).timestamp()
    except (TypeError, ValueError):
        created = mtime / 1e9
    return created, mtime


def trained_models(root: str | Path) -> list[TrainedModel]:
    """Every published train output of the store at ``root``, newest first."""
    models = []
    for entry in ArtifactStore(root).entries(TRAIN_STAGE):
        if entry["incomplete"]:
            continue
        manifest = entry["manifest"]
        variant = manifest.get("variant") or manifest.get("config", {}).get("variant")
        models.append(TrainedModel(Path(entry["dir"]), entry["key"], manifest.get("dataset"), variant,
                                   entry["created"], _newness(entry)))
    return sorted(models, key=lambda model: model.newness, reverse=True)


def pick_model(reference: str, models: list[TrainedModel]) -> TrainedModel | None:
    """The model ``reference`` names among ``models`` (newest first), or None when it names none or several."""
    dataset: str | None = None
    variant: str | None = None
    if reference.startswith(f"{LATEST}:"):
        variant = reference.removeprefix(f"{LATEST}:")
    elif "/" in reference:
        dataset, variant = reference.rsplit("/", 1)
        variant = None if variant == LATEST else variant
    elif reference != LATEST:
        keyed = [model for model in models if reference and model.key.startswith(reference)]
        return keyed[0] if len(keyed) == 1 else None
    return next((model for model in models if dataset in (None, model.dataset) and variant in (None, model.variant)),
                None)


def resolve_model(reference: str, root: str | Path) -> Path:
    """The train-stage directory ``reference`` names (see the module doc); :class:`ModelNotFound` otherwise."""
    if (Path(reference) / MODEL_FILE).is_file():
        return Path(reference)
    models = trained_models(root)
    chosen = pick_model(reference, models)
    if chosen is None:
        raise ModelNotFound(reference, ArtifactStore(root).root, models)
    return chosen.dir


class DistilledModelNotFound(LookupError):
    """The store holds no distilled model for ``mner predict --llm`` with ``stage1.distill.enabled``."""


def _distilled_with(entry: dict[str, Any], settings: dict[str, Any] | None, sources: dict[str, str] | None) -> bool:
    """Whether a ``distill`` output was trained with ``settings`` (entries of its stage config, e.g. ``distill`` and
    ``answer_form``) on the sources with these content hashes (None: any)."""
    manifest = entry["manifest"]
    config = manifest.get("config", {})
    if settings is not None and any(config.get(name) != value for name, value in settings.items()):
        return False
    return all(manifest.get("inputs", {}).get(name) == digest for name, digest in (sources or {}).items())


def latest_distilled(root: str | Path, settings: dict[str, Any] | None = None,
                     sources: dict[str, str] | None = None) -> tuple[Path, str]:
    """The model directory of the newest published ``distill`` output of the store at ``root``, and that output's key.

    With ``settings`` (entries of the stage's config: ``distill``, ``answer_form``) and ``sources`` (its sources' content hashes
    by input name, e.g. ``sources.answers``), only an output trained with both counts.
    """
    store = ArtifactStore(root)
    entries = [entry for entry in store.entries(DISTILL_STAGE)
               if not entry["incomplete"] and (Path(entry["dir"]) / DISTILLED_MODEL / "config.json").is_file()]
    matching = [entry for entry in entries if _distilled_with(entry, settings, sources)]
    if not matching:
        held = (f"holds {len(entries)} distilled model(s), none trained with this config's stage1.distill settings, "
                "teacher answers and base model" if entries else "holds no distilled model")
        raise DistilledModelNotFound(
            f"stage1.distill.enabled, but {store.root} {held}: run the pipeline with this config first "
            "(`mner run ... --until llm`), or name a model with --set stage1.llm.local_model=DIR")
    newest = max(matching, key=_newness)
    return Path(newest["dir"]) / DISTILLED_MODEL, newest["key"]
