"""Teacher-forced acceptance proxy on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from draftforge.evaluate.proxy import acceptance_from_logits


def test_identical_logits_accept_everything():
    logits = torch.randn(2, 5, 11)
    out = acceptance_from_logits(logits, logits.clone())
    assert out["alpha"] == pytest.approx(1.0, abs=1e-6) and out["greedy_agree"] == 1.0 and out["tokens"] == 10


def test_hand_computed_overlap_and_mask():
    # position 0: p = (0.5, 0.5), q = (0.9, 0.1) -> Σ min = 0.6, argmax agree (tie resolved to index 0)
    # position 1: p = (0.2, 0.8), q = (0.8, 0.2) -> Σ min = 0.4, argmax disagree
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8]]).log()[None]
    q = torch.tensor([[0.9, 0.1], [0.8, 0.2]]).log()[None]
    out = acceptance_from_logits(q, p)
    assert out["alpha"] == pytest.approx(0.5) and out["greedy_agree"] == pytest.approx(0.5)
    only_second = acceptance_from_logits(q, p, mask=torch.tensor([[0, 1]]))
    assert only_second == {"alpha": pytest.approx(0.4), "greedy_agree": 0.0, "tokens": 1}


def test_temperature_sharpens_and_empty_mask_is_nan():
    p = torch.tensor([[[2.0, 0.0, 0.0]]])
    q = torch.tensor([[[0.0, 2.0, 0.0]]])
    warm = acceptance_from_logits(q, p, temperature=1.0)["alpha"]
    cold = acceptance_from_logits(q, p, temperature=0.25)["alpha"]
    assert cold < warm
    out = acceptance_from_logits(q, p, mask=torch.zeros(1, 1))
    assert out["tokens"] == 0 and math.isnan(out["alpha"])
    with pytest.raises(ValueError, match="shapes differ"):
        acceptance_from_logits(q, torch.zeros(1, 1, 4))
