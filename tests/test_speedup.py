from __future__ import annotations

import math

import pytest

from draftforge import speedup as sp
from draftforge.errors import DraftforgeError


def test_expected_tokens_hand_values():
    # α = 0.5, γ = 2: 1 + 0.5 + 0.25 = 1.75
    assert sp.expected_tokens(0.5, 2) == pytest.approx(1.75)
    # α = 0.8, γ = 4: (1 - 0.8^5) / 0.2 = 3.3616
    assert sp.expected_tokens(0.8, 4) == pytest.approx(3.3616)


def test_expected_tokens_edges():
    assert sp.expected_tokens(0.0, 5) == 1.0
    assert sp.expected_tokens(1.0, 5) == 6.0
    assert sp.expected_tokens(1 - 1e-9, 3) == pytest.approx(4.0, abs=1e-6)
    assert sp.expected_tokens(0.7, 1) == pytest.approx(1.7)
    assert sp.expected_tokens(0.7, 0) == 1.0


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("gamma", [1, 3, 7])
def test_alpha_tau_round_trip(alpha, gamma):
    t = sp.tau(alpha, gamma)
    assert sp.alpha_from_tau(t, gamma) == pytest.approx(alpha, abs=1e-7)


def test_alpha_from_tau_bounds():
    assert sp.alpha_from_tau(5.0, 4) == pytest.approx(1.0, abs=1e-9)
    assert sp.alpha_from_tau(1.0, 4) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(DraftforgeError, match="tau must be in"):
        sp.alpha_from_tau(6.0, 4)


def test_speedup_reduces_to_leviathan_theorem():
    # With T_verify = T_target and c = T_draft / T_target, speedup is Thm 3.8.
    alpha, gamma, c = 0.8, 4, 0.05
    expected = (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))
    assert sp.speedup(alpha, gamma, t_draft=c * 20e-3, t_verify=20e-3, t_target=20e-3) == pytest.approx(
        expected
    )
    assert sp.leviathan_speedup(alpha, gamma, c) == pytest.approx(expected)


def test_speedup_hand_value():
    # α=0.5, γ=2: E=1.75; iteration 2*2ms + 12ms = 16ms; plain decoding 10ms/token -> 1.75*10/16
    assert sp.speedup(0.5, 2, 2e-3, 12e-3, 10e-3) == pytest.approx(1.09375)
    assert sp.latency_per_token(0.5, 2, 2e-3, 12e-3) == pytest.approx(16e-3 / 1.75)
    assert sp.throughput(0.5, 2, 2e-3, 12e-3, batch_size=4) == pytest.approx(4 * 1.75 / 16e-3)


def test_zero_acceptance_is_a_slowdown():
    assert sp.speedup(0.0, 3, 1e-3, 10e-3, 10e-3) == pytest.approx(10 / 13)


def test_optimal_gamma_is_exhaustive_minimum():
    t_target = 30e-3

    def t_verify(k: int) -> float:
        return t_target * (1 + 0.02 * (k - 1))

    best = sp.optimal_gamma(0.8, 2e-3, t_verify, t_target, max_gamma=12)
    lat = [sp.latency_per_token(0.8, g, 2e-3, t_verify(g + 1)) for g in range(1, 13)]
    assert best.gamma == 1 + lat.index(min(lat))
    assert best.speedup == pytest.approx(t_target / min(lat))
    assert best.tau == pytest.approx(sp.tau(0.8, best.gamma))


def test_optimal_gamma_grows_with_alpha():
    def t_verify(k):
        return 30e-3

    gammas = [sp.optimal_gamma(a, 2e-3, t_verify, 30e-3).gamma for a in (0.5, 0.8, 0.95)]
    assert gammas == sorted(gammas) and gammas[0] < gammas[-1]


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan])
def test_bad_alpha(alpha):
    with pytest.raises(DraftforgeError, match="alpha must be in"):
        sp.expected_tokens(alpha, 3)
