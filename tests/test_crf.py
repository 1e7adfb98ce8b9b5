"""Tests for models.crf.CRF against pytorch-crf (torchcrf) and for IOB2-constrained decoding."""

from __future__ import annotations

import pytest
import torch
import torchcrf

from mner.tags import invalid_continuation, label_list
from models.crf import CRF, iob2_penalties

# torchcrf builds a uint8 mask itself when none is given; torch warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:where received a uint8 condition tensor:UserWarning")

BATCH, LENGTH, TAGS = 5, 7, 6
LENGTHS = [7, 3, 1, 5, 7]


def _inputs(seed: int = 0, num_tags: int = TAGS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    emissions = torch.randn(BATCH, LENGTH, num_tags)
    tags = torch.randint(num_tags, (BATCH, LENGTH))
    mask = torch.arange(LENGTH).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)
    return emissions, tags, mask


def _pair(batch_first: bool, num_tags: int = TAGS) -> tuple[CRF, torchcrf.CRF]:
    torch.manual_seed(123)
    ours = CRF(num_tags, batch_first=batch_first)
    ref = torchcrf.CRF(num_tags, batch_first=batch_first)
    with torch.no_grad():
        ref.start_transitions.copy_(ours.start_transitions)
        ref.end_transitions.copy_(ours.end_transitions)
        ref.transitions.copy_(ours.transitions)
    return ours, ref


def test_init_and_parameters() -> None:
    crf = CRF(TAGS)
    names = {name for name, _ in crf.named_parameters()}
    assert names == {"start_transitions", "end_transitions", "transitions"}
    for p in crf.parameters():
        assert p.abs().max() <= 0.1
    assert crf.batch_first is True
    assert {"start_penalty", "transition_penalty"} <= set(crf.state_dict())


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "token_mean"])
def test_log_likelihood_and_gradients_match_torchcrf(batch_first: bool, reduction: str) -> None:
    ours, ref = _pair(batch_first)
    emissions, tags, mask = _inputs()
    # padded tags may be garbage for us; torchcrf needs valid indices, so keep them valid
    if not batch_first:
        emissions, tags, mask = emissions.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1)
    em_ours = emissions.clone().requires_grad_(True)
    em_ref = emissions.clone().requires_grad_(True)
    llh_ours = ours(em_ours, tags, mask=mask, reduction=reduction)
    llh_ref = ref(em_ref, tags, mask=mask, reduction=reduction)
    assert llh_ours.shape == llh_ref.shape
    assert torch.allclose(llh_ours, llh_ref, atol=1e-5)
    llh_ours.sum().backward()
    llh_ref.sum().backward()
    assert torch.allclose(em_ours.grad, em_ref.grad, atol=1e-5)
    for name in ("start_transitions", "end_transitions", "transitions"):
        assert torch.allclose(getattr(ours, name).grad, getattr(ref, name).grad, atol=1e-5), name


@pytest.mark.parametrize("batch_first", [True, False])
def test_decode_matches_torchcrf(batch_first: bool) -> None:
    ours, ref = _pair(batch_first)
    for seed in range(10):
        emissions, _, mask = _inputs(seed)
        if not batch_first:
            emissions, mask = emissions.transpose(0, 1), mask.transpose(0, 1)
        got = ours.decode(emissions, mask=mask)
        assert got == ref.decode(emissions, mask=mask)
        assert [len(p) for p in got] == LENGTHS
    emissions, _, _ = _inputs()
    if not batch_first:
        emissions = emissions.transpose(0, 1)
    assert ours.decode(emissions) == ref.decode(emissions)


def test_padded_tags_are_ignored_and_mask_none() -> None:
    ours, ref = _pair(True)
    emissions, tags, mask = _inputs()
    garbage = tags.masked_fill(~mask, -100)
    assert torch.allclose(ours(emissions, garbage, mask, "none"), ours(emissions, tags, mask, "none"))
    assert torch.allclose(ours(emissions, tags), ref(emissions, tags), atol=1e-5)


def test_first_timestep_must_be_on() -> None:
    crf = CRF(TAGS)
    emissions, tags, mask = _inputs()
    mask[1, 0] = False
    with pytest.raises(ValueError, match="first timestep"):
        crf(emissions, tags, mask)
    with pytest.raises(ValueError, match="first timestep"):
        crf.decode(emissions, mask)
    with pytest.raises(ValueError, match="reduction"):
        crf(emissions, tags, reduction="avg")  # type: ignore[arg-type]


def test_bf16_emissions_computed_in_float32() -> None:
    crf = CRF(TAGS)
    emissions, tags, mask = _inputs()
    low = emissions.to(torch.bfloat16)
    llh = crf(low, tags, mask, reduction="none")
    assert llh.dtype == torch.float32
    assert torch.allclose(llh, crf(low.float(), tags, mask, reduction="none"))
    assert crf.decode(low, mask) == crf.decode(low.float(), mask)


LABELS = label_list(["LOC", "ORG", "PER"])  # O, B-LOC, I-LOC, B-ORG, I-ORG, B-PER, I-PER


def _valid_iob2(path: list[int]) -> bool:
    previous = "O"
    for index in path:
        if invalid_continuation(previous, LABELS[index]):
            return False
        previous = LABELS[index]
    return True


def test_penalties() -> None:
    start, transitions = iob2_penalties(LABELS)
    forbidden_start = {LABELS[j] for j in range(len(LABELS)) if start[j] < 0}
    assert forbidden_start == {"I-LOC", "I-ORG", "I-PER"}
    for i, previous in enumerate(LABELS):
        for j, tag in enumerate(LABELS):
            assert bool(transitions[i, j] < 0) == invalid_continuation(previous, tag), (previous, tag)


def test_constrained_decode_is_valid_iob2() -> None:
    crf = CRF(len(LABELS), labels=LABELS)
    ref = torchcrf.CRF(len(LABELS), batch_first=True)
    with torch.no_grad():
        ref.start_transitions.copy_(crf.start_transitions)
        ref.end_transitions.copy_(crf.end_transitions)
        ref.transitions.copy_(crf.transitions)
    inside = torch.tensor([label.startswith("I-") for label in LABELS])
    invalid_seen = 0
    for seed in range(20):
        emissions, tags, mask = _inputs(seed, len(LABELS))
        emissions = emissions * 2 + inside.float() * 4.0  # strongly favour I- tags
        paths = crf.decode(emissions, mask)
        assert all(_valid_iob2(p) for p in paths)
        assert [len(p) for p in paths] == LENGTHS
        free = crf.decode(emissions, mask, constrained=False)
        assert free == ref.decode(emissions, mask)
        invalid_seen += sum(not _valid_iob2(p) for p in free)
        # the constraints apply at decode time only
        with torch.no_grad():
            assert torch.allclose(crf(emissions, tags, mask, "none"), ref(emissions, tags, mask, "none"), atol=1e-5)
    assert invalid_seen > 0  # the test data would break IOB2 without the constraints
    crf.constrained = False
    emissions, _, mask = _inputs(0, len(LABELS))
    assert crf.decode(emissions, mask) == ref.decode(emissions, mask)


def test_constrain_checks_label_count_and_state_dict_roundtrip() -> None:
    crf = CRF(len(LABELS))
    with pytest.raises(ValueError, match="labels"):
        crf.constrain(LABELS[:-1])
    crf.constrain(LABELS)
    fresh = CRF(len(LABELS))
    fresh.load_state_dict(crf.state_dict())
    assert torch.equal(fresh.transition_penalty, crf.transition_penalty)
