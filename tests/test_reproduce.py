"""The pure parts of scripts/reproduce.py: the contrasting shape, prunability, and the RESULTS renderer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from draftforge.shapes import ModelShape

_SPEC = importlib.util.spec_from_file_location(
    "reproduce", Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"
)
reproduce = importlib.util.module_from_spec(_SPEC)
sys.modules["reproduce"] = reproduce  # dataclasses look their module up
_SPEC.loader.exec_module(reproduce)

SMOLLM2 = ModelShape(30, 576, 9, 3, 1536, 49152, tie_embeddings=True, max_positions=8192)


def _shape(layers, hidden, heads, kv, ffn):
    return ModelShape(layers, hidden, heads, kv, ffn, 49152, tie_embeddings=True, max_positions=8192)


def test_contrast_of_a_shallow_draft_is_deeper_narrower_and_same_size():
    best = _shape(3, 384, 6, 3, 1536)
    other, kind = reproduce.contrast_shape(best, max_layers=30, max_hidden=576)
    assert kind == "deep-narrow"
    assert other.num_layers > best.num_layers and other.hidden_size < best.hidden_size
    assert other.param_count() == pytest.approx(best.param_count(), rel=0.10)
    assert other.num_kv_heads <= 3 and other.num_heads // other.num_kv_heads <= 3


def test_contrast_of_a_deep_draft_is_shallower_wider():
    best = _shape(12, 256, 4, 2, 1024)
    other, kind = reproduce.contrast_shape(best, max_layers=30, max_hidden=576)
    assert kind == "shallow-wide"
    assert other.num_layers < best.num_layers and other.hidden_size > best.hidden_size
    assert other.param_count() == pytest.approx(best.param_count(), rel=0.10)


def test_first_prunable_skips_shapes_the_donor_cannot_give():
    cands = [
        {"rank": 1, "shape": _shape(3, 320, 5, 5, 1280).to_dict()},  # 5 kv heads > 3
        {"rank": 2, "shape": _shape(9, 256, 4, 1, 896).to_dict()},  # 4 queries per kv head > 3
        {"rank": 3, "shape": _shape(3, 384, 6, 3, 1536).to_dict()},
    ]
    rank, shape = reproduce.first_prunable(cands, SMOLLM2)
    assert rank == 3 and shape.num_layers == 3


def _cand(shape, rank, speedup):
    return {
        "rank": rank,
        "shape": shape.to_dict(),
        "params": shape.param_count(),
        "draft_latency_s": 0.008,
        "alpha": 0.7,
        "alpha_low": 0.6,
        "alpha_high": 0.8,
        "gamma": 2,
        "speedup": speedup,
    }


def test_render_reports_every_section_from_the_numbers_given():
    a, b = _shape(3, 384, 6, 3, 1536), _shape(30, 192, 3, 1, 768)
    row = {
        "gamma": 2,
        "alpha": 0.31,
        "tau": 1.5,
        "tokens_per_s": 7.5,
        "target_tokens_per_s": 9.0,
        "speedup": 0.83,
        "draft_step_s": 0.006,
        "hf_speedup": 0.8,
    }
    drafts = [
        {
            "label": "recommended (shallow-wide)",
            "shape": s,
            "wall_s": 600.0,
            "distill": {
                "steps": 100,
                "tokens": 25600,
                "initial_metrics": {"eval/alpha": 0.01, "eval/greedy_agree": 0.0},
                "final_metrics": {"eval/alpha": 0.3, "eval/greedy_agree": 0.25},
            },
            "predicted": {"draft_step_s": 0.005, "alpha": 0.73, "gamma": 2, "speedup": 1.31},
            "measured": {"humaneval": row, "chat-mini": {**row, "hf_speedup": None}},
            "plots": {"humaneval": "results/x.png"},
        }
        for s in (a, b)
    ]
    ctx = {
        "command": "python scripts/reproduce.py --device cpu",
        "date": "2026-11-26",
        "total_minutes": 55.0,
        "machine": "AMD EPYC, cpu",
        "versions": "torch 2.13",
        "run_dir": "runs/x",
        "profile": {
            "command": "draftforge profile",
            "points": 100,
            "mape": 0.04,
            "within_10pct": 0.95,
            "method": "grouped k-fold",
        },
        "search1": {"command": "draftforge search a", "candidates": [_cand(a, 1, 1.31)], "why": "because"},
        "search2": {
            "command": "draftforge search b",
            "candidates": [_cand(b, 1, 0.9)],
            "acceptance": '"calibrated"',
        },
        "drafts": drafts,
        "chosen_rank": 1,
        "calibration_files": ["e1", "e2", "e3", "e4"],
        "steps": [{"name": "profile", "command": "draftforge profile", "wall_s": 290.0}],
        "limits": ["small budget"],
    }
    text = reproduce.render(ctx)
    assert "L3 H384 A6/3 I1536" in text and "L30 H192 A3/1 I768" in text
    assert "0.010 → 0.300" in text  # proxy alpha before -> after
    assert "1.31x / 0.83x" in text  # predicted / measured speedup
    assert "Did the recommendation move? **yes**" in text
    assert "![acceptance by draft position" in text and "small budget" in text
