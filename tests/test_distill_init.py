"""Student initialisation: layer subsets and Minitron-style width pruning on tiny models."""

from __future__ import annotations

import pytest
import torch

from draftforge.distill.init import choose_layers, init_student, random_student, set_frozen, student_config
from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

DONOR = ModelShape(
    num_layers=3,
    hidden_size=64,
    num_heads=8,
    num_kv_heads=4,
    intermediate_size=96,
    vocab_size=128,
    tie_embeddings=True,
)


@pytest.fixture(scope="module")
def donor():
    return random_student(DONOR, seed=1).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))


def test_choose_layers():
    assert choose_layers(2, 30, "first_last") == [0, 29]
    assert choose_layers(3, 30, "first_last") == [0, 1, 29]
    assert choose_layers(1, 30, "first_last") == [29]
    assert choose_layers(3, 31, "spread") == [0, 15, 30]
    assert choose_layers(2, 30, [4, 7]) == [4, 7]
    with pytest.raises(DraftforgeError):
        choose_layers(2, 30, [4, 70])
    with pytest.raises(DraftforgeError):
        choose_layers(31, 30, "first_last")


def test_student_config_inherits_reference(donor):
    reference = donor.config.__class__.from_dict(donor.config.to_dict())
    reference.rms_norm_eps = 1e-5
    cfg = student_config(DONOR.replace(num_layers=1), reference)
    assert cfg.rms_norm_eps == 1e-5 and cfg.num_hidden_layers == 1
    assert ModelShape.from_hf_config(cfg) == DONOR.replace(num_layers=1)


@torch.no_grad()
def test_all_layers_copied_or_unpruned_reproduce_the_donor(donor, ids):
    ref = donor(input_ids=ids).logits
    for method in ("layers", "prune"):
        student, info = init_student(DONOR, method, "first_last", donor=donor, calibration_ids=ids)
        assert info["layers"] == [0, 1, 2]
        assert torch.equal(student.eval()(input_ids=ids).logits, ref), method


@torch.no_grad()
def test_layer_subset_copies_the_chosen_layers(donor):
    student, info = init_student(DONOR.replace(num_layers=2), "layers", [2, 0], donor=donor)
    assert info["layers"] == [2, 0]
    assert torch.equal(student.model.layers[0].mlp.up_proj.weight, donor.model.layers[2].mlp.up_proj.weight)
    assert torch.equal(student.model.embed_tokens.weight, donor.model.embed_tokens.weight)
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied


@torch.no_grad()
def test_pruning_drops_dead_neurons_exactly(ids):
    donor = random_student(DONOR.replace(num_layers=1), seed=3).eval()
    dead = torch.arange(0, 96, 3)  # a third of the MLP neurons never activate
    donor.model.layers[0].mlp.up_proj.weight[dead] = 0.0
    ref = donor(input_ids=ids).logits
    student, _ = init_student(
        DONOR.replace(num_layers=1, intermediate_size=64),
        "prune",
        "first_last",
        donor=donor,
        calibration_ids=ids,
    )
    assert not (student.model.layers[0].mlp.up_proj.weight.abs().sum(1) == 0).any()
    assert torch.allclose(student(input_ids=ids).logits, ref, atol=1e-5)


@torch.no_grad()
def test_pruning_drops_the_dead_kv_group(ids):
    donor = random_student(DONOR.replace(num_layers=1), seed=4).eval()
    hd = DONOR.head_dim
    donor.model.layers[0].self_attn.v_proj.weight[1 * hd : 2 * hd] = 0.0  # KV group 1 outputs nothing
    target = DONOR.replace(num_layers=1, hidden_size=48, num_heads=6, num_kv_heads=3)
    student, _ = init_student(target, "prune", "first_last", donor=donor, calibration_ids=ids)
    v = student.model.layers[0].self_attn.v_proj.weight.reshape(3, hd, -1)  # (KV, d, hidden)
    assert (v.abs().sum((1, 2)) > 0).all()


@torch.no_grad()
def test_pruning_narrows_hidden_and_runs(donor, ids):
    target = DONOR.replace(num_layers=2, hidden_size=48, num_heads=6, num_kv_heads=3, intermediate_size=64)
    student, info = init_student(target, "prune", "spread", donor=donor, calibration_ids=ids)
    assert sum(p.numel() for p in student.parameters()) == target.param_count()
    assert info["calibration_tokens"] == ids.numel()
    assert torch.isfinite(student(input_ids=ids).logits).all()


def test_pruning_refuses_impossible_shapes(donor, ids):
    with pytest.raises(DraftforgeError, match="head_dim"):
        init_student(DONOR.replace(hidden_size=48), "prune", "first_last", donor=donor, calibration_ids=ids)
    with pytest.raises(DraftforgeError, match="exceeds"):
        init_student(
            DONOR.replace(intermediate_size=200), "prune", "first_last", donor=donor, calibration_ids=ids
        )
    with pytest.raises(DraftforgeError, match="init.method prune"):
        init_student(
            DONOR.replace(hidden_size=48, num_heads=6, num_kv_heads=3), "layers", "first_last", donor=donor
        )


def test_freezing():
    student = random_student(DONOR.replace(num_layers=1, tie_embeddings=False))
    set_frozen(student, freeze_embeddings=True, freeze_lm_head=False)
    assert not student.model.embed_tokens.weight.requires_grad and student.lm_head.weight.requires_grad
    set_frozen(student, freeze_embeddings=False, freeze_lm_head=True)
    assert not student.lm_head.weight.requires_grad
