from __future__ import annotations

import json
import math

import pytest

from draftforge import acceptance
from draftforge.acceptance import AcceptanceModel, CalibrationPoint, calibrate, fit, prior
from draftforge.catalog import get_target
from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

LLAMA65 = get_target("llama-65b").shape


def _llama(layers: int, hidden: int, ffn: int | None = None) -> ModelShape:
    return ModelShape(layers, hidden, hidden // 128, hidden // 128, ffn or 4 * hidden, 32000)


def test_prior_is_the_least_squares_fit_of_leviathan_table3():
    a, b = acceptance.fit_prior_to_leviathan()
    p = prior()
    assert (p.intercept, p.slope) == pytest.approx((a, b), abs=5e-4)
    assert b == pytest.approx(0.074, abs=1e-3)  # ~0.07 per decade: slow, log-linear growth
    # the published points (0.61 / 0.71 / 0.75) lie within 0.01 of the line and well inside the band
    for draft, target, alpha in acceptance.LEVIATHAN_LAMDA_T0:
        est = p.predict_ratio(math.log10(draft / target), None)
        assert est.alpha == pytest.approx(alpha, abs=0.01)
        assert est.low < alpha < est.high


def test_alpha_grows_slowly_with_size():
    p = prior()
    sizes = [_llama(4, h) for h in (512, 1024, 2048, 4096)]
    alphas = [p.predict(s, LLAMA65).alpha for s in sizes]
    assert alphas == sorted(alphas)
    decades = math.log10(sizes[-1].non_embedding_params() / sizes[0].non_embedding_params())
    assert decades == pytest.approx(1.8, abs=0.1)  # 64x the parameters...
    assert (alphas[-1] - alphas[0]) / decades == pytest.approx(0.074, abs=1e-3)  # ...buys 0.074 per decade


def test_depth_vs_width_matters_only_weakly_except_very_shallow():
    p = prior()
    wide = _llama(4, 4096, 11008)  # ~0.81B non-embedding
    deep = _llama(16, 2048, 5632)  # ~0.82B non-embedding
    assert wide.non_embedding_params() == pytest.approx(deep.non_embedding_params(), rel=0.05)
    assert abs(p.predict(wide, LLAMA65).alpha - p.predict(deep, LLAMA65).alpha) < 0.015
    # one layer at the same size is clearly worse (Kaplan et al.: very shallow nets fall off the trend)
    one = _llama(1, 8192, 4 * 8192)
    assert p.predict(one, LLAMA65).alpha < p.predict(wide, LLAMA65).alpha - 0.03


def test_band_and_clipping():
    p = prior()
    est = p.predict(_llama(4, 2048), LLAMA65)
    assert est.low == pytest.approx(est.alpha - 0.08) and est.high == pytest.approx(est.alpha + 0.08)
    tiny = p.predict_ratio(-20.0, 1)
    assert tiny.alpha == p.alpha_min and tiny.low >= 0.0
    huge = p.predict_ratio(5.0, 80)
    assert huge.alpha == p.alpha_max and huge.high <= 1.0


def _rows(a: float, b: float, target: str = "llama-65b") -> list[dict]:
    """Rows on a known line alpha = a + b*log10(N_d/N_t) - 0.06/L (exact shapes)."""
    t = get_target(target).shape
    rows = []
    for layers, hidden in [(2, 1024), (4, 2048), (4, 4096), (8, 4096), (12, 5120)]:
        s = _llama(layers, hidden)
        x = math.log10(s.non_embedding_params() / t.non_embedding_params())
        rows.append({"shape": s.to_dict(), "target": target, "alpha": a + b * x - 0.06 / layers})
    return rows


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_calibration_recovers_a_known_line(tmp_path):
    path = _write_jsonl(tmp_path / "points.jsonl", _rows(0.70, 0.05))
    model = calibrate([path])
    assert model.source == "calibrated"
    assert model.intercept == pytest.approx(0.70, abs=0.01)
    assert model.slope == pytest.approx(0.05, abs=0.005)
    assert model.band == pytest.approx(0.02)  # exact points: the band floor
    d = model.to_dict()
    assert d["source"] == "calibrated" and d["n_points"] == 5 and d["files"] == [str(path)]
    assert prior().to_dict()["source"] == "prior"


def test_calibration_with_one_point_moves_only_the_intercept():
    p = prior()
    pt = CalibrationPoint(log_ratio=-2.0, layers=4, alpha=0.80, source="x")
    model = fit([pt])
    assert model.slope == p.slope
    assert model.predict_ratio(-2.0, 4).alpha == pytest.approx(0.80)
    assert model.band == pytest.approx(p.band / 2)


def test_calibration_from_params_rows_and_target_params(tmp_path):
    rows = [
        {"params": 1e9, "target_params": 65e9, "alpha": 0.70, "layers": 5},
        {"params": 7e9, "target": "llama-65b", "alpha": 0.78},
    ]
    model = calibrate([_write_jsonl(tmp_path / "p.jsonl", rows)])
    assert model.points[0].layers == 5 and model.points[1].layers is None
    assert model.points[0].log_ratio == pytest.approx(math.log10(1 / 65))


def test_bad_rows_are_all_reported_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"params": 1e9, "target": "llama-65b", "alpha": 0.7}),  # good
                "{not json",
                json.dumps({"params": 1e9, "target": "llama-65b", "alpha": 1.5}),
                json.dumps({"params": 1e9, "alpha": 0.7}),
                json.dumps({"params": 1e9, "target": "no-such-model", "alpha": 0.7}),
                json.dumps({"target": "llama-65b", "alpha": 0.7}),
                json.dumps({"params": 1e9, "target": "llama-65b", "alpha": 0.7, "acc": 1}),
                json.dumps({"shape": {"num_layers": 0}, "target": "llama-65b", "alpha": 0.7}),
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(DraftforgeError) as err:
        calibrate([path])
    msg = str(err.value)
    for fragment in (
        "line 2: not JSON",
        "line 3: alpha must be a number in [0, 1]",
        "line 4: give the target",
        "line 5: unknown target",
        "line 6: give the draft's shape",
        "line 7: unknown key(s) acc",
        "line 8: shape is not a valid shape",
    ):
        assert fragment in msg, fragment
    assert "line 1" not in msg


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DraftforgeError, match="not found"):
        calibrate([tmp_path / "nope.jsonl"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DraftforgeError, match="no calibration rows"):
        calibrate([empty])


def eval_report(draft_shape: ModelShape, target: str, alphas: list[float], iterations: list[int]) -> dict:
    """A hand-written `draftforge.eval/1` report following contract 2."""
    t = get_target(target)
    results = []
    for gamma, (alpha, iters) in enumerate(zip(alphas, iterations, strict=True), start=2):
        tau = (1 - alpha ** (gamma + 1)) / (1 - alpha)
        results.append(
            {
                "gamma": gamma,
                "alpha": alpha,
                "tau": tau,
                "per_position_acceptance": [alpha] * gamma,
                "tokens_per_s": 10.0,
                "target_tokens_per_s": 5.0,
                "speedup": 2.0,
                "draft_time_s": 1.0,
                "verify_time_s": 2.0,
                "iterations": iters,
                "generated_tokens": int(iters * tau),
                "proxy_alpha": alpha - 0.05,
                "per_category": {"code": {"alpha": alpha, "tau": tau, "speedup": 2.0, "n": 3}},
            }
        )
    return {
        "schema": "draftforge.eval/1",
        "created": "2026-01-01T00:00:00+00:00",
        "versions": {},
        "device": {},
        "draft": {
            "spec": "./draft",
            "path": "/tmp/draft",
            "params": draft_shape.param_count(),
            "shape": draft_shape.to_dict(),
        },
        "target": {"spec": target, "path": None, "params": t.shape.param_count(), "shape": t.shape.to_dict()},
        "settings": {
            "prompts": "humaneval",
            "num_prompts": 8,
            "max_new_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 0,
        },
        "results": results,
        "hf_assisted": None,
        "best": 0,
    }


def test_calibration_from_eval_reports(tmp_path):
    draft = _llama(4, 2048)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(eval_report(draft, "llama-65b", [0.6, 0.9], [300, 100])), encoding="utf-8")
    (pt,) = acceptance.load_points(path)
    assert pt.alpha == pytest.approx(
        (0.6 * 300 + 0.9 * 100) / 400
    )  # iteration-weighted mean over the γ sweep
    assert pt.layers == 4
    assert pt.log_ratio == pytest.approx(acceptance.size_log_ratio(draft, LLAMA65))
    model = calibrate([path])
    assert model.source == "calibrated"
    assert model.predict(draft, LLAMA65).alpha == pytest.approx(pt.alpha)


def test_eval_report_with_bad_alpha_or_foreign_schema(tmp_path):
    report = eval_report(_llama(4, 2048), "llama-65b", [0.6], [10])
    report["results"][0]["alpha"] = "high"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(DraftforgeError, match=r"results\[0\]\.alpha"):
        calibrate([bad])
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "draftforge.profile/1"}), encoding="utf-8")
    with pytest.raises(DraftforgeError, match="expected 'draftforge.eval/1'"):
        calibrate([foreign])


def test_model_is_frozen():
    with pytest.raises(AttributeError):
        AcceptanceModel().slope = 1.0  # type: ignore[misc]
