"""Writing a search result: `search.json` (`draftforge.search/1`), config.json per top candidate, the
distill recipe, and two plots. Reading nothing, deciding nothing: `search.run` has done that.

Folder layout (`--out DIR`, a new or empty folder):
    search.json                       contract 5: inputs, latency/acceptance provenance, candidates, baselines
    recipe.yaml                       `draftforge distill` recipe for the best shape (first batch size)
    recipe-b<B>.yaml                  the same for every further batch size
    candidates/b<B>-rank<R>/config.json   a transformers config per top candidate and batch size
    latency_vs_layers-b<B>.png        draft step latency vs layers, coloured by width, winner marked
    pareto-b<B>.png                   α vs draft latency: every shape, the Pareto front, the baselines
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from draftforge.files import ensure_new_dir, write_json
from draftforge.provenance import library_versions, now_iso
from draftforge.search import BatchResult, Candidate, SearchResult

SCHEMA = "draftforge.search/1"


def _batch_dict(b: BatchResult) -> dict[str, Any]:
    return {
        "batch_size": b.batch_size,
        "tp": b.tp,
        "target_latency_s": b.t_target_s,
        "trials": b.trials,
        "study_name": b.study_name,
        "evaluated_shapes": len(b.evaluated),
        "why": b.why,
        "candidates": [c.to_dict() for c in b.candidates],
        "baselines": [c.to_dict() for c in b.baselines],
        "pareto": [c.to_dict() for c in b.pareto],
    }


def result_to_json(result: SearchResult) -> dict[str, Any]:
    """The `draftforge.search/1` document. Top-level `candidates`/`baselines` are the first batch
    size's (the one `recipe.yaml` refers to); `by_batch_size` holds every batch size's."""
    first = result.batches[0]
    return {
        "schema": SCHEMA,
        "created": now_iso(),
        "versions": library_versions(("draftforge", "optuna")),
        "inputs": result.inputs,
        "target": result.target.to_dict(),
        "latency_model": result.latency_model,
        "acceptance_model": result.acceptance_model,
        "notes": result.notes,
        "batch_size": first.batch_size,
        "why": first.why,
        "candidates": [c.to_dict() for c in first.candidates],
        "baselines": [c.to_dict() for c in first.baselines],
        "by_batch_size": [_batch_dict(b) for b in result.batches],
    }


def write_outputs(result: SearchResult, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write every output into `out` (refusing a non-empty folder unless `overwrite`); returns paths."""
    folder = ensure_new_dir(out, overwrite=overwrite)
    written: dict[str, Any] = {"folder": str(folder)}
    search_json = write_json(folder / "search.json", result_to_json(result))
    written["search_json"] = str(search_json)
    written["configs"], written["recipes"], written["plots"] = [], [], []
    for i, batch in enumerate(result.batches):
        for cand in batch.candidates:
            path = folder / "candidates" / f"b{batch.batch_size}-rank{cand.rank}" / "config.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(cand.shape.to_hf_config().to_json_string(use_diff=False), encoding="utf-8")
            written["configs"].append(str(path))
        recipe = folder / ("recipe.yaml" if i == 0 else f"recipe-b{batch.batch_size}.yaml")
        recipe.write_text(_recipe(result, batch, search_json if i == 0 else None), encoding="utf-8")
        written["recipes"].append(str(recipe))
        written["plots"] += [str(p) for p in plot_batch(result, batch, folder)]
    return written


def _recipe(result: SearchResult, batch: BatchResult, search_json: Path | None) -> str:
    from draftforge.distill.recipe import render_search_recipe

    gpu = result.inputs["draft_gpu"]
    return render_search_recipe(
        result.config.target,
        batch.candidates[0].shape,
        str(search_json) if search_json is not None else None,
        1,
        None if gpu == "cpu" else gpu,
    )


def plot_batch(result: SearchResult, batch: BatchResult, folder: Path) -> list[Path]:
    """The two PNGs of one batch size (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = batch.candidates[0]
    title = f"{result.target.name}, draft on {result.inputs['draft_gpu']}, batch {batch.batch_size}"
    ev = batch.evaluated

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sc = ax.scatter(
        [c.shape.num_layers for c in ev],
        [c.draft_latency_s * 1e3 for c in ev],
        c=[c.shape.hidden_size for c in ev],
        cmap="viridis",
        s=12,
        alpha=0.7,
    )
    fig.colorbar(sc, ax=ax, label="hidden size")
    ax.scatter(
        [best.shape.num_layers],
        [best.draft_latency_s * 1e3],
        marker="*",
        s=250,
        c="red",
        edgecolors="black",
        label=f"chosen: {best.shape.describe()}",
        zorder=5,
    )
    ax.set_xlabel("layers")
    ax.set_ylabel("predicted draft step latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    p1 = folder / f"latency_vs_layers-b{batch.batch_size}.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(
        [c.draft_latency_s * 1e3 for c in ev], [c.alpha for c in ev], s=8, c="0.7", label="evaluated shapes"
    )
    front = batch.pareto
    ax.plot(
        [c.draft_latency_s * 1e3 for c in front],
        [c.alpha for c in front],
        "-o",
        ms=3,
        c="tab:blue",
        label="Pareto front (latency vs alpha)",
    )
    for label, b in summary_rows(batch)[len(batch.candidates) :]:  # baselines, identical shapes merged
        ax.scatter([b.draft_latency_s * 1e3], [b.alpha], marker="s", s=40, c="tab:orange", zorder=4)
        ax.annotate(
            f"{label} ({b.speedup:.2f}x)",
            (b.draft_latency_s * 1e3, b.alpha),
            fontsize=7,
            xytext=(-4, 6),
            textcoords="offset points",
            ha="right",
        )
    ax.scatter(
        [best.draft_latency_s * 1e3],
        [best.alpha],
        marker="*",
        s=250,
        c="red",
        edgecolors="black",
        zorder=5,
        label=f"chosen: {best.shape.describe()} ({best.speedup:.2f}x)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("predicted draft step latency (ms, log)")
    ax.set_ylabel("predicted acceptance alpha")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    p2 = folder / f"pareto-b{batch.batch_size}.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [p1, p2]


def summary_rows(batch: BatchResult) -> list[tuple[str, Candidate]]:
    """(label, candidate) rows for the terminal table: top candidates, then baselines."""
    rows = [(f"#{c.rank}", c) for c in batch.candidates]
    merged: dict[Any, list[Candidate]] = {}  # baselines of identical shape (llama-7b, llama-2-7b) share a row
    for b in sorted(batch.baselines, key=lambda b: b.latency_per_token_s):
        merged.setdefault((b.shape.describe(), b.params), []).append(b)
    rows += [("/".join(str(b.name) for b in group), group[0]) for group in merged.values()]
    return rows
