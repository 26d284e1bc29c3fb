"""Speculative-decoding arithmetic (pure; no torch).

Terms (DESIGN.md): α (`alpha`) per-token acceptance probability; γ (`gamma`) draft tokens proposed
per iteration; τ (`tau`) mean tokens produced per iteration including the target's own token
(1 ≤ τ ≤ γ+1, the seed paper's "TAR"); c draft/target step-time ratio.
Formulas: Leviathan et al. 2023 (arXiv 2211.17192) §3, Chen et al. 2023 (arXiv 2302.01318).
Times are in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from draftforge.errors import DraftforgeError


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise DraftforgeError(f"alpha must be in [0, 1], got {alpha!r}")


def _check_gamma(gamma: int) -> None:
    if not isinstance(gamma, int) or gamma < 0:
        raise DraftforgeError(f"gamma must be a non-negative integer, got {gamma!r}")


def expected_tokens(alpha: float, gamma: int) -> float:
    """E(α, γ) = (1 − α^(γ+1)) / (1 − α): mean tokens per iteration, bonus token included (= τ).

    Limits: α = 0 gives 1 (only the target's token), α = 1 gives γ + 1.
    """
    _check_alpha(alpha)
    _check_gamma(gamma)
    if alpha >= 1.0 - 1e-12:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def tau(alpha: float, gamma: int) -> float:
    """τ for i.i.d. acceptance: identical to `expected_tokens`."""
    return expected_tokens(alpha, gamma)


def alpha_from_tau(tau_value: float, gamma: int, tol: float = 1e-12) -> float:
    """Invert τ = E(α, γ) for α by bisection (E is increasing in α on [0, 1])."""
    _check_gamma(gamma)
    if not 1.0 <= tau_value <= gamma + 1 + 1e-9:
        raise DraftforgeError(f"tau must be in [1, gamma+1] = [1, {gamma + 1}], got {tau_value!r}")
    if gamma == 0 or tau_value <= 1.0:
        return 0.0
    if tau_value >= gamma + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if expected_tokens(mid, gamma) < tau_value:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def iteration_time(gamma: int, t_draft: float, t_verify: float) -> float:
    """Time of one iteration: γ draft steps plus one target forward over γ+1 tokens."""
    _check_gamma(gamma)
    return gamma * t_draft + t_verify


def latency_per_token(alpha: float, gamma: int, t_draft: float, t_verify: float) -> float:
    """Seconds per produced (accepted) token: (γ·T_draft + T_verify(γ+1)) / E(α, γ)."""
    return iteration_time(gamma, t_draft, t_verify) / expected_tokens(alpha, gamma)


def throughput(alpha: float, gamma: int, t_draft: float, t_verify: float, batch_size: int = 1) -> float:
    """Tokens per second produced by speculative decoding (summed over the batch)."""
    return batch_size / latency_per_token(alpha, gamma, t_draft, t_verify)


def speedup(alpha: float, gamma: int, t_draft: float, t_verify: float, t_target: float) -> float:
    """Walltime speedup over plain decoding: E(α, γ) · T_target(1) / (γ·T_draft + T_verify(γ+1)).

    With t_verify = t_target and c = t_draft / t_target this is Leviathan et al. Thm 3.8:
    (1 − α^(γ+1)) / ((1 − α)(γc + 1)).
    """
    return expected_tokens(alpha, gamma) * t_target / iteration_time(gamma, t_draft, t_verify)


def leviathan_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al. Thm 3.8 in its closed form (verification assumed as fast as one step)."""
    return expected_tokens(alpha, gamma) / (gamma * c + 1.0)


@dataclass(frozen=True)
class GammaChoice:
    gamma: int
    tau: float
    latency_per_token: float
    speedup: float


def optimal_gamma(
    alpha: float,
    t_draft: float,
    t_verify: Callable[[int], float],
    t_target: float,
    max_gamma: int = 16,
) -> GammaChoice:
    """Best γ in 1..max_gamma by exhaustive integer search (minimises latency per token).

    `t_verify(k)` gives the target's forward time for k = γ+1 tokens, so that the growth of the
    verification cost with γ is honoured rather than assumed flat.
    """
    if max_gamma < 1:
        raise DraftforgeError(f"max_gamma must be >= 1, got {max_gamma}")
    best: GammaChoice | None = None
    for gamma in range(1, max_gamma + 1):
        tv = t_verify(gamma + 1)
        lat = latency_per_token(alpha, gamma, t_draft, tv)
        if best is None or lat < best.latency_per_token - 1e-15:
            best = GammaChoice(gamma, expected_tokens(alpha, gamma), lat, t_target / lat)
    assert best is not None
    return best
