"""Cheap acceptance proxies: teacher-forced expected acceptance without generation.

For a draft distribution q and target distribution p at the same position, the probability that
speculative sampling accepts the draft's token is Σ_v min(p(v), q(v)) = 1 − TV(p, q)
(Leviathan et al. 2023, §3.5); with greedy checking it is 1[argmax q = argmax p].
Averaged over (masked) positions this is α; the distiller reports it during training.
"""

from __future__ import annotations

import torch


def acceptance_from_logits(
    draft_logits: torch.Tensor,
    target_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Expected acceptance of draft vs target at every position.

    draft_logits, target_logits: (B, T, V) over the same vocabulary; mask: (B, T), 1 where the
    position counts. Returns {"alpha": mean Σ min(p, q), "greedy_agree": mean argmax agreement,
    "tokens": number of positions counted}; sums are accumulated in float32.
    """
    if draft_logits.shape != target_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(draft_logits.shape)} vs {tuple(target_logits.shape)}")
    if mask is None:
        mask = torch.ones(draft_logits.shape[:-1], dtype=torch.bool, device=draft_logits.device)
    mask = mask.bool()
    t = max(float(temperature), 1e-6)
    q = torch.softmax(draft_logits.float() / t, dim=-1)  # (B, T, V)
    p = torch.softmax(target_logits.float() / t, dim=-1)  # (B, T, V)
    overlap = torch.minimum(p, q).sum(-1)  # (B, T)
    agree = (draft_logits.argmax(-1) == target_logits.argmax(-1)).float()  # (B, T)
    n = int(mask.sum())
    if n == 0:
        return {"alpha": float("nan"), "greedy_agree": float("nan"), "tokens": 0}
    return {
        "alpha": float(overlap[mask].sum() / n),
        "greedy_agree": float(agree[mask].sum() / n),
        "tokens": n,
    }
