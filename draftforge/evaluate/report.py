"""The eval report `draftforge.eval/1`: its keys, a reader that validates them, a table and a plot.

Top-level keys (contract between evaluate, search calibration and publish):
- `schema`, `created`, `versions`, `device` (provenance.device_fingerprint)
- `draft`, `target`: {spec, path, params, shape (ModelShape.to_dict() or null)}
- `settings`: {prompts, num_prompts, max_new_tokens, temperature, top_p, seed}
- `results`: one entry per γ swept: {gamma, alpha, tau, per_position_acceptance (γ floats: P(draft
  position k accepted | positions < k accepted), null where no round reached k), tokens_per_s,
  target_tokens_per_s, speedup, draft_time_s, verify_time_s, iterations, generated_tokens,
  proxy_alpha, per_category: {category: {alpha, tau, speedup, n}}}
- `hf_assisted`: {gamma, tokens_per_s, speedup, outputs_identical} for transformers' assisted
  generation with the same pair at the first γ of the sweep (greedy runs only), else null
- `best`: index into `results` of the highest speedup

alpha is the per-token acceptance Σ accepted / Σ checked (accepted tokens plus the rejected one per
round); tau the mean tokens per iteration; tokens_per_s counts generated tokens over decode wall time
(prefill included); speedup = tokens_per_s / target_tokens_per_s, both measured in the same run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from draftforge.errors import DraftforgeError
from draftforge.files import read_versioned

SCHEMA = "draftforge.eval/1"
TOP_KEYS = (
    "schema",
    "created",
    "versions",
    "device",
    "draft",
    "target",
    "settings",
    "results",
    "hf_assisted",
    "best",
)
MODEL_KEYS = ("spec", "path", "params", "shape")
SETTINGS_KEYS = ("prompts", "num_prompts", "max_new_tokens", "temperature", "top_p", "seed")
RESULT_KEYS = (
    "gamma",
    "alpha",
    "tau",
    "per_position_acceptance",
    "tokens_per_s",
    "target_tokens_per_s",
    "speedup",
    "draft_time_s",
    "verify_time_s",
    "iterations",
    "generated_tokens",
    "proxy_alpha",
    "per_category",
)
CATEGORY_KEYS = ("alpha", "tau", "speedup", "n")
HF_KEYS = ("gamma", "tokens_per_s", "speedup", "outputs_identical")


def problems(report: dict[str, Any]) -> list[str]:
    """Every way `report` departs from `draftforge.eval/1` (empty when valid)."""
    out: list[str] = []

    def need(obj: Any, keys: tuple[str, ...], where: str) -> bool:
        if not isinstance(obj, dict):
            out.append(f"{where} must be an object")
            return False
        missing = [k for k in keys if k not in obj]
        if missing:
            out.append(f"{where} lacks {', '.join(missing)}")
        return not missing

    if not need(report, TOP_KEYS, "report"):
        return out
    if report["schema"] != SCHEMA:
        out.append(f"schema is {report['schema']!r}, expected {SCHEMA!r}")
    need(report["draft"], MODEL_KEYS, "draft")
    need(report["target"], MODEL_KEYS, "target")
    need(report["settings"], SETTINGS_KEYS, "settings")
    results = report["results"]
    if not isinstance(results, list) or not results:
        out.append("results must be a non-empty list")
        return out
    for i, entry in enumerate(results):
        if need(entry, RESULT_KEYS, f"results[{i}]"):
            if len(entry["per_position_acceptance"]) != entry["gamma"]:
                out.append(f"results[{i}].per_position_acceptance must have gamma={entry['gamma']} entries")
            for cat, stats in entry["per_category"].items():
                need(stats, CATEGORY_KEYS, f"results[{i}].per_category[{cat!r}]")
    if report["hf_assisted"] is not None:
        need(report["hf_assisted"], HF_KEYS, "hf_assisted")
    best = report["best"]
    if not isinstance(best, int) or not 0 <= best < len(results):
        out.append(f"best must index results (0..{len(results) - 1}), got {best!r}")
    return out


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an eval report; a foreign, corrupt or incomplete file is a DraftforgeError."""
    report = read_versioned(path, SCHEMA)
    found = problems(report)
    if found:
        raise DraftforgeError(f"{path} is not a complete {SCHEMA} report: " + "; ".join(found))
    return report


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(report: dict[str, Any]):
    """A rich Table: one row per γ, plus transformers' assisted generation and the target alone."""
    from rich.table import Table

    tbl = Table(title=f"draft {report['draft']['spec']}  →  target {report['target']['spec']}")
    for col in ("γ", "α", "τ", "proxy α", "tok/s", "speedup", "draft s", "verify s", "per position"):
        tbl.add_column(col, justify="right")
    for i, r in enumerate(report["results"]):
        mark = " *" if i == report["best"] else ""
        tbl.add_row(
            f"{r['gamma']}{mark}",
            _fmt(r["alpha"], ".3f"),
            _fmt(r["tau"], ".2f"),
            _fmt(r["proxy_alpha"], ".3f"),
            _fmt(r["tokens_per_s"], ".1f"),
            _fmt(r["speedup"], ".2f") + "×",
            _fmt(r["draft_time_s"], ".2f"),
            _fmt(r["verify_time_s"], ".2f"),
            "/".join(_fmt(a, ".2f") for a in r["per_position_acceptance"]),
        )
    hf = report["hf_assisted"]
    if hf is not None:
        same = "identical" if hf["outputs_identical"] else "DIFFERENT outputs"
        tbl.add_row(
            f"HF {hf['gamma']}", "", "", "", _fmt(hf["tokens_per_s"], ".1f"), _fmt(hf["speedup"], ".2f") + "×",
            "", "", same,
        )  # fmt: skip
    base = report["results"][0]["target_tokens_per_s"]
    tbl.add_row("target", "", "", "", _fmt(base, ".1f"), "1.00×", "", "", "")
    return tbl


def category_table(report: dict[str, Any]):
    """A rich Table of α, τ and speedup per prompt category at the best γ."""
    from rich.table import Table

    best = report["results"][report["best"]]
    tbl = Table(title=f"per category (γ = {best['gamma']})")
    for col in ("category", "n", "α", "τ", "speedup"):
        tbl.add_column(col, justify="right" if col != "category" else "left")
    for cat, s in sorted(best["per_category"].items()):
        tbl.add_row(
            cat, str(s["n"]), _fmt(s["alpha"], ".3f"), _fmt(s["tau"], ".2f"), _fmt(s["speedup"], ".2f") + "×"
        )
    return tbl


def plot_acceptance(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG of per-position acceptance (one line per γ) with the pooled α as a dashed reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in report["results"]:
        ys = [float("nan") if a is None else a for a in r["per_position_acceptance"]]
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=f"γ={r['gamma']} (α={_fmt(r['alpha'], '.2f')})")
    ax.set_xticks(range(1, max(r["gamma"] for r in report["results"]) + 1))
    ax.set_xlabel("draft position k")
    ax.set_ylabel("P(accept k | 1..k-1 accepted)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{report['draft']['spec']} → {report['target']['spec']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
