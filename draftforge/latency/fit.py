"""Fitting latency models to measurements, and judging them on shapes the fit never saw.

- `fit_coefficients`: non-negative least squares (Lawson-Hanson, scipy.optimize.nnls) of seconds on
  `features.FEATURES`, in relative error (each row divided by its measured time) so that a 1 ms
  draft counts as much as a 100 ms one.
- `held_out_report`: grouped k-fold over whole (layers, hidden) combinations: every prediction comes
  from a fit that never saw that combination; MAPE, share within ±10%, worst case.
- `calibrate_analytic`: the spec-sheet model's constants (effective bandwidth and FLOP/s, per-layer
  and per-forward overhead) fitted to the same measurements, for a side-by-side comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from draftforge.errors import DraftforgeError
from draftforge.latency.features import FEATURE_NAMES, feature_row
from draftforge.latency.model import FittedLatencyModel, LatencyModel, Measurement


def design_matrix(measurements: Sequence[Measurement], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): X (N, F) features in `FEATURE_NAMES` order, y (N,) measured median seconds."""
    X = np.array(
        [feature_row(m.shape, m.batch_size, m.context, m.tokens, dtype) for m in measurements], dtype=float
    )
    y = np.array([m.median_s for m in measurements], dtype=float)
    return X, y


def fit_coefficients(X: np.ndarray, y: np.ndarray, relative: bool = True) -> np.ndarray:
    """Non-negative coefficients c (F,) minimising Σ ((X c − y) / y)² (or Σ (X c − y)² if not relative).

    Columns are scaled to unit norm before NNLS (features span 1 to 1e12) and the scale is undone after.
    A feature that never varies away from zero gets coefficient 0.
    """
    if len(y) == 0:
        raise DraftforgeError("no measurements to fit a latency model to; profile at least one shape")
    w = 1.0 / y if relative else np.ones_like(y)
    A = X * w[:, None]
    b = y * w
    norms = np.linalg.norm(A, axis=0)
    used = norms > 0
    from scipy.optimize import nnls

    coef_scaled, _ = nnls(A[:, used] / norms[used], b, maxiter=50 * A.shape[1])
    coef = np.zeros(X.shape[1])
    coef[used] = coef_scaled / norms[used]
    return coef


def fit_model(
    measurements: Sequence[Measurement],
    dtype: str,
    runtime: str,
    device: str,
    error_report: dict[str, Any] | None = None,
    source: str | None = None,
) -> FittedLatencyModel:
    """A `FittedLatencyModel` fitted to all `measurements`."""
    X, y = design_matrix(measurements, dtype)
    coef = fit_coefficients(X, y)
    return FittedLatencyModel(
        coefficients={name: float(c) for name, c in zip(FEATURE_NAMES, coef, strict=True)},
        dtype=dtype,
        runtime=runtime,
        device=device,
        measured_on=device,
        source=source,
        error_report=error_report,
    )


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE, share within ±5/±10/±20% and the worst relative error of `predicted` against `measured`."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = (p - m) / m
    worst = int(np.argmax(np.abs(rel)))
    return {
        "n": len(m),
        "mape": float(np.mean(np.abs(rel))),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "within_20pct": float(np.mean(np.abs(rel) <= 0.20)),
        "worst_error": float(rel[worst]),
        "worst_index": worst,
        "bias": float(np.median(rel)),
    }


def group_folds(groups: Sequence[tuple[int, int]], folds: int) -> list[list[int]]:
    """Split distinct groups into `folds` folds (deterministic, interleaved by sorted order).

    Returns, per fold, the measurement indices held out.
    """
    distinct = sorted(set(groups))
    folds = max(2, min(folds, len(distinct)))
    fold_of = {g: i % folds for i, g in enumerate(distinct)}
    out: list[list[int]] = [[] for _ in range(folds)]
    for idx, g in enumerate(groups):
        out[fold_of[g]].append(idx)
    return out


def held_out_report(
    measurements: Sequence[Measurement],
    dtype: str,
    folds: int = 5,
    fitter: Callable[[Sequence[Measurement]], LatencyModel] | None = None,
) -> dict[str, Any]:
    """Error of the fit on (layers, hidden) combinations it never saw (grouped k-fold).

    `fitter(train_measurements) -> LatencyModel` defaults to the NNLS fitted model. Needs at least
    two distinct (layers, hidden) combinations.
    """
    groups = [m.group for m in measurements]
    if len(set(groups)) < 2:
        raise DraftforgeError(
            "a held-out error needs at least two distinct (layers, hidden) combinations; "
            "profile longer (--budget-minutes) or with a wider grid"
        )
    fitter = fitter or (lambda train: fit_model(train, dtype, "eager", "fold"))
    predicted = np.zeros(len(measurements))
    fold_idx = group_folds(groups, folds)
    for held in fold_idx:
        held_set = set(held)
        train = [m for i, m in enumerate(measurements) if i not in held_set]
        model = fitter(train)
        for i in held:
            m = measurements[i]
            predicted[i] = model.forward_time(m.shape, m.batch_size, m.context, m.tokens)
    stats = error_stats(predicted, [m.median_s for m in measurements])
    worst = measurements[stats.pop("worst_index")]
    return {
        "method": "grouped k-fold: each prediction from a fit without its (layers, hidden) combination",
        "folds": len(fold_idx),
        "groups": len(set(groups)),
        **stats,
        "worst": {**worst.to_dict(), "predicted_s": float(predicted[measurements.index(worst)])},
        "predicted_s": [float(p) for p in predicted],
    }


def evaluate_model(model: LatencyModel, measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Errors of any `LatencyModel` on `measurements` (no refit)."""
    predicted = [model.forward_time(m.shape, m.batch_size, m.context, m.tokens) for m in measurements]
    stats = error_stats(predicted, [m.median_s for m in measurements])
    stats.pop("worst_index")
    return {"model": model.label, **stats}


# ---- the spec-sheet model, calibrated -------------------------------------------------------------
def calibrate_analytic(
    measurements: Sequence[Measurement],
    dtype: str,
    runtime: str,
    device: str = "cpu",
    source: str | None = None,
):
    """An `AnalyticLatencyModel` whose constants are fitted to `measurements`.

    Fits four numbers in log space (scipy least_squares on relative error): effective memory
    bandwidth, effective FLOP/s, fixed cost per layer and per forward. On a catalog GPU they are
    expressed as efficiencies of its spec sheet; on the CPU (no spec sheet) the model runs on a
    stand-in `Hardware` whose peak figures are the fitted effective ones (efficiencies 1).
    """
    from scipy.optimize import least_squares

    from draftforge.catalog import Hardware, get_hardware
    from draftforge.latency.analytic import AnalyticConstants, AnalyticLatencyModel

    try:
        spec = get_hardware(device)
    except DraftforgeError:
        spec = None
    if spec is None or not spec.has_spec_sheet:
        spec = None
    y = np.array([m.median_s for m in measurements], dtype=float)

    def build(theta: np.ndarray) -> AnalyticLatencyModel:
        bw, flops, per_layer, per_forward = np.exp(theta)
        defaults = AnalyticConstants()
        layer_oh = {**defaults.layer_overhead_s, runtime: float(per_layer)}
        step_oh = {**defaults.step_overhead_s, runtime: float(per_forward)}
        if spec is not None:
            consts = AnalyticConstants(
                bandwidth_efficiency=float(bw / spec.memory_bandwidth),
                compute_efficiency=float(flops / spec.peak_flops),
                layer_overhead_s=layer_oh,
                step_overhead_s=step_oh,
            )
            hw = spec
        else:
            consts = AnalyticConstants(
                bandwidth_efficiency=1.0,
                compute_efficiency=1.0,
                layer_overhead_s=layer_oh,
                step_overhead_s=step_oh,
            )
            hw = Hardware(
                name=device,
                display_name=f"{device} (calibrated stand-in)",
                kind="cpu",
                peak_flops=float(flops),
                memory_bandwidth=float(bw),
            )
        return AnalyticLatencyModel(
            hardware=hw,
            dtype=dtype,
            runtime=runtime,
            constants=consts,
            calibrated_from=source or "measurements",
        )

    terms = _analytic_terms(measurements, dtype)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return analytic_predict(terms, np.exp(theta)) / y - 1.0

    # The roofline's max() leaves the FLOP/s figure without gradient while no point is compute-bound,
    # so start from several ridge points (FLOP/s per byte/s) and keep the best fit.
    bandwidth = spec.memory_bandwidth * 0.6 if spec is not None else 10e9
    best = None
    for ridge in (0.5, 2.0, 8.0, 50.0, 300.0):
        x0 = np.log([bandwidth, bandwidth * ridge, 50e-6, 200e-6])
        result = least_squares(residuals, x0, method="trf", max_nfev=200)
        if best is None or result.cost < best.cost:
            best = result
    return build(best.x)


def _analytic_terms(measurements: Sequence[Measurement], dtype: str) -> np.ndarray:
    """Per measurement (N, 5): layers, layer bytes (weights + KV), layer FLOPs, LM-head bytes and FLOPs,
    exactly as `AnalyticLatencyModel.breakdown` counts them at tp=1."""
    from draftforge.shapes import dtype_bytes

    b = dtype_bytes(dtype)
    rows = []
    for m in measurements:
        s, n_new = m.shape, m.batch_size * m.tokens
        rows.append(
            (
                s.num_layers,
                s.layer_weight_bytes(dtype) + m.batch_size * (m.context + m.tokens) * 2 * s.kv_dim * b,
                n_new * s.layer_flops_per_token(m.context),
                s.lm_head_weight_bytes(dtype),
                n_new * 2.0 * s.vocab_size * (s.embed_dim or s.hidden_size),
            )
        )
    return np.array(rows, dtype=float)


def analytic_predict(terms: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Vectorised spec-sheet forward time (tp=1) for params (bandwidth B/s, FLOP/s, s per layer,
    s per forward): layers x (max(bytes/BW, FLOPs/F) + per-layer) + max(head) + per-forward."""
    bw, flops, per_layer, per_forward = params
    layers, lb, lf, hb, hf = terms.T
    return (
        layers * (np.maximum(lb / bw, lf / flops) + per_layer) + np.maximum(hb / bw, hf / flops) + per_forward
    )


def calibrated_summary(model) -> dict[str, Any]:
    """The fitted figures of a calibrated analytic model (what `model.calibrated_analytic` rebuilds from)."""
    c = model.constants
    return {
        "label": model.label,
        "hardware": model.hardware.name,
        "effective_bandwidth_b_s": model.hardware.memory_bandwidth * c.bandwidth_efficiency,
        "effective_flops": model.hardware.peak_flops * c.compute_efficiency,
        "bandwidth_efficiency": c.bandwidth_efficiency if model.hardware.has_spec_sheet else None,
        "compute_efficiency": c.compute_efficiency if model.hardware.has_spec_sheet else None,
        "layer_overhead_s": c.layer_overhead_s[model.runtime],
        "step_overhead_s": c.step_overhead_s[model.runtime],
    }
