"""Distillation losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from draftforge.distill.losses import (
    IGNORE_INDEX,
    cross_entropy,
    distill_loss,
    forward_kl,
    jsd,
    reverse_kl,
    teacher_logprobs_from_topk,
    topk_teacher,
    total_variation,
)


def _logits(probs):
    return torch.tensor(probs, dtype=torch.float64).log().float()


def test_identical_distributions_give_zero():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 17)
    for fn in (forward_kl, reverse_kl, jsd, total_variation):
        assert float(fn(x, x.clone())) == pytest.approx(0.0, abs=1e-6)


def test_forward_and_reverse_kl_hand_computed():
    p = [0.5, 0.5]  # teacher
    q = [0.9, 0.1]  # student
    fkl = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    rkl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(forward_kl(_logits([q]), _logits([p]))) == pytest.approx(fkl, rel=1e-5)
    assert float(reverse_kl(_logits([q]), _logits([p]))) == pytest.approx(rkl, rel=1e-5)


def test_tv_hand_computed_and_disjoint_supports_give_one():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    assert float(total_variation(_logits([q]), _logits([p]))) == pytest.approx(0.3, abs=1e-6)
    disjoint_t = torch.tensor([[50.0, 50.0, -50.0, -50.0]])
    disjoint_s = torch.tensor([[-50.0, -50.0, 50.0, 50.0]])
    assert float(total_variation(disjoint_s, disjoint_t)) == pytest.approx(1.0, abs=1e-6)


def test_jsd_endpoints_are_the_kls_and_midpoint_hand_computed():
    torch.manual_seed(1)
    s, t = torch.randn(3, 11), torch.randn(3, 11)
    assert float(jsd(s, t, beta=0.0)) == pytest.approx(float(forward_kl(s, t)), rel=1e-6)
    assert float(jsd(s, t, beta=1.0)) == pytest.approx(float(reverse_kl(s, t)), rel=1e-6)
    # the endpoints are the limits of JSD(β) / (β(1−β))
    eps = 1e-3
    assert float(jsd(s, t, beta=eps)) / (eps * (1 - eps)) == pytest.approx(float(forward_kl(s, t)), rel=1e-2)
    assert float(jsd(s, t, beta=1 - eps)) / (eps * (1 - eps)) == pytest.approx(
        float(reverse_kl(s, t)), rel=1e-2
    )
    # disjoint supports: JSD(1/2) = log 2
    big = torch.tensor([[30.0, -30.0]]), torch.tensor([[-30.0, 30.0]])
    assert float(jsd(big[1], big[0], beta=0.5)) == pytest.approx(math.log(2), rel=1e-5)


def test_temperature_flattens_both():
    s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert float(total_variation(s, t, temperature=1e3)) < 1e-3 < float(total_variation(s, t))


def test_masked_mean_ignores_masked_positions():
    t = torch.zeros(1, 2, 3)
    s = torch.zeros(1, 2, 3)
    s[0, 1] = torch.tensor([10.0, -10.0, -10.0])  # position 1 differs a lot
    mask = torch.tensor([[1, 0]])
    assert float(forward_kl(s, t, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(forward_kl(s, t)) > 1.0


def test_cross_entropy_hard_labels():
    s = _logits([[0.25, 0.75], [0.5, 0.5]]).unsqueeze(0)  # (1, 2, 2)
    labels = torch.tensor([[1, IGNORE_INDEX]])
    assert float(cross_entropy(s, labels)) == pytest.approx(-math.log(0.75), rel=1e-5)


def test_mixture_is_weighted_mean_and_chunking_is_exact():
    torch.manual_seed(2)
    s = torch.randn(2, 7, 13, requires_grad=True)
    t = torch.randn(2, 7, 13)
    mask = torch.tensor([[1, 1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1, 1]])
    labels = torch.randint(0, 13, (2, 7))
    labels[0, 2] = IGNORE_INDEX
    terms = {"forward_kl": 0.5, "tv": 0.25, "ce": 0.25}
    whole, parts = distill_loss(s, t, terms, mask=mask, labels=labels, chunk_tokens=10_000)
    expected = (
        0.5 * forward_kl(s, t, mask)
        + 0.25 * total_variation(s, t, mask)
        + 0.25 * cross_entropy(s, labels, mask)
    )
    assert float(whole.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert parts["tv"] == pytest.approx(float(total_variation(s.detach(), t, mask)), rel=1e-5)
    (g_whole,) = torch.autograd.grad(whole, s)
    chunked, _ = distill_loss(s, t, terms, mask=mask, labels=labels, chunk_tokens=3)
    (g_chunked,) = torch.autograd.grad(chunked, s)
    assert float(chunked.detach()) == pytest.approx(float(whole.detach()), rel=1e-6)
    assert torch.allclose(g_whole, g_chunked, atol=1e-6)


def test_mixture_errors():
    s = torch.randn(1, 2, 5)
    with pytest.raises(ValueError, match="unknown"):
        distill_loss(s, s, {"nope": 1.0})
    with pytest.raises(ValueError, match="labels"):
        distill_loss(s, s, {"ce": 1.0})
    with pytest.raises(ValueError, match="teacher"):
        distill_loss(s, None, {"forward_kl": 1.0})


def test_topk_teacher_round_trip():
    torch.manual_seed(3)
    t = torch.randn(2, 4, 50) * 3
    packed = topk_teacher(t, k=50)
    dense = teacher_logprobs_from_topk(packed["values"], packed["indices"], 50)
    assert torch.allclose(dense, torch.log_softmax(t, -1), atol=1e-5)
    packed = topk_teacher(t, k=8)
    dense = teacher_logprobs_from_topk(packed["values"], packed["indices"], 50)
    assert torch.allclose(dense.exp().sum(-1), torch.ones(2, 4), atol=1e-5)
    top = torch.log_softmax(t, -1).topk(8, -1)
    assert torch.allclose(dense.gather(-1, top.indices), top.values, atol=1e-6)
