"""Distillation losses: pure functions of student and teacher logits.

Conventions: p is the teacher distribution, q the student's; logits are (B, T, V) (or (N, V)) over
the same vocabulary and already aligned (position t predicts token t+1 in both); `mask` is (B, T)
(1 = the position counts) and every loss is a masked mean over positions, accumulated in float32.
A temperature τ divides both logits before the softmax; no τ² factor is applied.

- forward KL   KL(p || q)  — mode covering (the standard KD loss, Hinton et al. 2015).
- reverse KL   KL(q || p)  — mode seeking.
- JSD(β)       β·KL(p || m) + (1−β)·KL(q || m), m = β·p + (1−β)·q (GKD, Agarwal et al. 2024); β = 0 is
               defined as forward KL and β = 1 as reverse KL, the limits of JSD(β)/(β(1−β)).
- TV           ½ Σ |p − q| = 1 − Σ min(p, q) = 1 − α: the loss that directly targets the acceptance
               rate of speculative sampling (DistillSpec, Zhou et al. 2024; Leviathan et al. 2023).
- CE           −log q(label) on hard labels (the data's next tokens).

`distill_loss` combines weighted terms and computes them in chunks of positions, each chunk under
activation checkpointing, so a large vocabulary never materialises more than `chunk_tokens × V`
float32 intermediates at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


# ---- per-position losses on log-probabilities (N, V) -> (N,) -----------------------------------
def _fkl(s_logp: torch.Tensor, t_logp: torch.Tensor, beta: float) -> torch.Tensor:
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1)


def _rkl(s_logp: torch.Tensor, t_logp: torch.Tensor, beta: float) -> torch.Tensor:
    return (s_logp.exp() * (s_logp - t_logp)).sum(-1)


def _jsd(s_logp: torch.Tensor, t_logp: torch.Tensor, beta: float) -> torch.Tensor:
    if beta <= 0.0:
        return _fkl(s_logp, t_logp, beta)
    if beta >= 1.0:
        return _rkl(s_logp, t_logp, beta)
    # log m = log(β p + (1−β) q), computed stably in log space
    m_logp = torch.logsumexp(torch.stack([t_logp + math.log(beta), s_logp + math.log(1.0 - beta)]), dim=0)
    kl_pm = (t_logp.exp() * (t_logp - m_logp)).sum(-1)
    kl_qm = (s_logp.exp() * (s_logp - m_logp)).sum(-1)
    return beta * kl_pm + (1.0 - beta) * kl_qm


def _tv(s_logp: torch.Tensor, t_logp: torch.Tensor, beta: float) -> torch.Tensor:
    return 0.5 * (t_logp.exp() - s_logp.exp()).abs().sum(-1)


#: name -> per-position loss on (student log-probs, teacher log-probs, jsd beta); see module docstring.
TEACHER_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "forward_kl": _fkl,
    "reverse_kl": _rkl,
    "jsd": _jsd,
    "tv": _tv,
}
LOSS_NAMES: tuple[str, ...] = (*TEACHER_LOSSES, "ce")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    values = values.reshape(-1)
    if mask is None:
        return values.mean()
    m = mask.reshape(-1).to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def _pointwise(
    name: str, student_logits, teacher_logits, mask, temperature: float, beta: float
) -> torch.Tensor:
    s = F.log_softmax(_flat(student_logits).float() / temperature, dim=-1)
    t = F.log_softmax(_flat(teacher_logits).float() / temperature, dim=-1)
    return _masked_mean(TEACHER_LOSSES[name](s, t, beta), mask)


# ---- public pure losses (masked means) ---------------------------------------------------------
def forward_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || q_student), masked mean over positions. Logits (..., V); mask (...)."""
    return _pointwise("forward_kl", student_logits, teacher_logits, mask, temperature, 0.0)


def reverse_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL(q_student || p_teacher), masked mean over positions."""
    return _pointwise("reverse_kl", student_logits, teacher_logits, mask, temperature, 0.0)


def jsd(
    student_logits, teacher_logits, mask=None, temperature: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence JSD(β); β=0 forward KL, β=1 reverse KL."""
    return _pointwise("jsd", student_logits, teacher_logits, mask, temperature, beta)


def total_variation(student_logits, teacher_logits, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """½ Σ_v |p(v) − q(v)| = 1 − α, masked mean over positions (0 identical, 1 disjoint supports)."""
    return _pointwise("tv", student_logits, teacher_logits, mask, temperature, 0.0)


def cross_entropy(student_logits, labels, mask=None) -> torch.Tensor:
    """−log q(label); labels (...) aligned with the logits, IGNORE_INDEX (−100) positions skipped."""
    labels = labels.reshape(-1)
    valid = labels != IGNORE_INDEX
    if mask is not None:
        valid = valid & mask.reshape(-1).bool()
    per = F.cross_entropy(_flat(student_logits).float(), labels.clamp_min(0), reduction="none")
    return _masked_mean(per, valid)


# ---- mixtures, chunked ---------------------------------------------------------------------------
def _chunk_sums(
    s_logits: torch.Tensor,
    t_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    weights: torch.Tensor,
    ce_weights: torch.Tensor,
    names: tuple[str, ...],
    temperature: float,
    beta: float,
) -> torch.Tensor:
    """Weighted sum over the chunk's positions of each term, as a (len(names),) tensor."""
    s_logp = F.log_softmax(s_logits.float() / temperature, dim=-1)  # (n, V)
    t_logp = None if t_logits is None else F.log_softmax(t_logits.float() / temperature, dim=-1)
    out = []
    for name in names:
        if name == "ce":
            # hard labels use the untempered student distribution
            per = F.cross_entropy(s_logits.float(), labels.clamp_min(0), reduction="none")  # (n,)
            out.append((per * ce_weights).sum())
        else:
            out.append((TEACHER_LOSSES[name](s_logp, t_logp, beta) * weights).sum())
    return torch.stack(out)


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    terms: Mapping[str, float],
    mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    chunk_tokens: int = 1024,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted mixture Σ w_i · loss_i / Σ w_i, each a masked mean over positions.

    student_logits, teacher_logits: (B, T, V) aligned; mask: (B, T); labels: (B, T) for "ce"
    (IGNORE_INDEX skipped). Returns the scalar loss (differentiable w.r.t. the student's logits)
    and the detached value of every term. Positions are processed `chunk_tokens` at a time, each
    chunk checkpointed when there are several, so memory stays O(chunk_tokens × V) beyond the
    logits themselves.
    """
    names = tuple(n for n, w in terms.items() if w != 0)
    unknown = [n for n in names if n not in LOSS_NAMES]
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; known: {LOSS_NAMES}")
    if "ce" in names and labels is None:
        raise ValueError("the ce term needs labels")
    if any(n != "ce" for n in names) and teacher_logits is None:
        raise ValueError("teacher terms need teacher_logits")
    s = _flat(student_logits)  # (N, V)
    t = None if teacher_logits is None else _flat(teacher_logits).detach()  # (N, V)
    n_pos = s.shape[0]
    w = torch.ones(n_pos, device=s.device) if mask is None else mask.reshape(-1).float()  # (N,)
    lab = None if labels is None else labels.reshape(-1)  # (N,)
    w_ce = w if lab is None else w * (lab != IGNORE_INDEX).float()  # (N,)
    use_checkpoint = s.requires_grad and n_pos > chunk_tokens
    sums = torch.zeros(len(names), device=s.device)
    for start in range(0, n_pos, chunk_tokens):
        sl = slice(start, start + chunk_tokens)
        args = (s[sl], None if t is None else t[sl], None if lab is None else lab[sl], w[sl], w_ce[sl])
        if use_checkpoint:
            # recompute the chunk's softmaxes in backward instead of keeping (N, V) intermediates
            sums = sums + checkpoint(_chunk_sums, *args, names, temperature, beta, use_reentrant=False)
        else:
            sums = sums + _chunk_sums(*args, names, temperature, beta)
    denoms = torch.stack([(w_ce if n == "ce" else w).sum().clamp_min(1.0) for n in names])
    per_term = sums / denoms
    total_w = sum(terms[n] for n in names)
    weights = torch.tensor([terms[n] / total_w for n in names], device=s.device)
    loss = (per_term * weights).sum()
    return loss, {n: float(v) for n, v in zip(names, per_term.detach(), strict=True)}


# ---- offline teacher targets ---------------------------------------------------------------------
def topk_teacher(teacher_logits: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Compress teacher logits (..., V) to their top-k log-probabilities, indices and the vocab size."""
    logp = F.log_softmax(teacher_logits.float(), dim=-1)
    values, indices = logp.topk(k, dim=-1)
    return {"values": values, "indices": indices.to(torch.int32)}


def teacher_logprobs_from_topk(values: torch.Tensor, indices: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Dense teacher log-probabilities (..., V) from cached top-k: exact on the top-k tokens, the
    remaining probability mass spread uniformly over the other V − k tokens."""
    k = values.shape[-1]
    top_mass = values.exp().sum(-1, keepdim=True).clamp(max=1.0)  # (..., 1)
    rest = (1.0 - top_mass).clamp_min(1e-12) / max(vocab_size - k, 1)
    dense = rest.log().expand(*values.shape[:-1], vocab_size).clone()
    dense.scatter_(-1, indices.long(), values.float())
    return dense
