"""`draftforge search`: which draft shape to train for a target on given hardware, and why."""

from __future__ import annotations

import os

import typer

from draftforge.cli._common import JSON_OPTION, console, parse_int_list, print_json


def search(
    gpu: str = typer.Option(
        ...,
        "--gpu",
        help="GPU that runs the draft: catalog name (a100, h100, l4, ...), "
        "`local` or `cpu` (this machine: profiled first if no cached profile).",
    ),
    target: str = typer.Option(
        ..., "--target", help="Target model: catalog name, config.json path or Hub id."
    ),
    target_gpu: str = typer.Option(None, "--target-gpu", help="GPU that runs the target (default: --gpu)."),
    tp: int = typer.Option(
        None,
        "--tp",
        help="Target tensor-parallel degree (default: smallest power of two "
        "that fits the target in --target-gpu memory).",
    ),
    batch_size: str = typer.Option(
        "1", "--batch-size", help="Batch size(s), e.g. 1,8,32: one recommendation each."
    ),
    context: int = typer.Option(512, "--context", help="Cached tokens per sequence."),
    dtype: str = typer.Option(None, "--dtype", help="Weights dtype (default bf16 on GPUs, fp32 on the CPU)."),
    runtime: str = typer.Option("eager", "--runtime", help="eager or cuda-graph."),
    profile: str = typer.Option(None, "--profile", help="Measured profile file for the draft GPU."),
    reprofile: bool = typer.Option(False, "--reprofile", help="Re-measure the local device first."),
    profile_minutes: float = typer.Option(
        3.0, "--profile-minutes", help="Time budget when the local device has to be profiled first."
    ),
    calibration: list[str] = typer.Option(
        None,
        "--calibration",
        help="Eval report (.json) or JSONL of {shape|params, target, alpha} rows that "
        "refit the acceptance prior; repeatable.",
    ),
    min_params: float = typer.Option(None, "--min-params", help="Smallest draft, parameters (e.g. 1e8)."),
    max_params: float = typer.Option(
        None, "--max-params", help="Largest draft (default: a tenth of the target)."
    ),
    max_layers: int = typer.Option(
        None, "--max-layers", help="Deepest draft (default: min(32, target layers))."
    ),
    trials: int = typer.Option(300, "--trials", help="Optuna trials per batch size."),
    objective: str = typer.Option(
        "latency", "--objective", help="latency (per accepted token) or pareto (draft latency vs alpha)."
    ),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (Optuna) or exhaustive (every shape)."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed (the study is deterministic for a seed)."),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Optuna storage: sqlite:///study.db, postgresql://..., "
        "or a journal file (journal:PATH or *.log).",
    ),
    study_name: str = typer.Option(None, "--study-name", help="Resume or join this study in --storage."),
    top: int = typer.Option(5, "--top", help="Candidates to report (and write configs for)."),
    out: str = typer.Option(None, "--out", help="Write search.json, configs, recipe.yaml and plots here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty --out folder."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recommend a draft shape for TARGET on GPU, ranked against the drafts you already have.

    JSON keys (`draftforge.search/1`): schema, created, versions, inputs, target, latency_model,
    acceptance_model {source: prior|calibrated, ...}, notes, batch_size, why, candidates and baselines
    [{rank, shape, params, draft_latency_s, alpha, alpha_low, alpha_high, gamma, tau,
    latency_per_token_s, speedup, tokens_per_s, speedup_low, speedup_high, feasible, reason, name}],
    by_batch_size [{batch_size, tp, candidates, baselines, pareto, why, ...}], and `written` with --out.
    """
    from draftforge import search as search_mod
    from draftforge.search_report import result_to_json

    config = search_mod.SearchConfig(
        gpu=gpu,
        target=target,
        target_gpu=target_gpu,
        tp=tp,
        batch_sizes=tuple(parse_int_list(batch_size, "--batch-size")),
        context=context,
        dtype=dtype,
        runtime=runtime,  # type: ignore[arg-type]
        profile=profile,
        reprofile=reprofile,
        profile_budget_minutes=profile_minutes,
        calibration=tuple(calibration or ()),
        min_params=int(min_params) if min_params is not None else None,
        max_params=int(max_params) if max_params is not None else None,
        max_layers=max_layers,
        trials=trials,
        objective=objective,  # type: ignore[arg-type]
        sampler=sampler,  # type: ignore[arg-type]
        seed=seed,
        storage=storage,
        study_name=study_name,
        top_k=top,
        show_progress=not as_json,
    )
    if out is not None:  # refuse a non-empty folder before searching, not after
        from draftforge.files import ensure_new_dir

        ensure_new_dir(out, overwrite=overwrite)
    result = search_mod.run(config) if as_json else _run_with_progress(search_mod, config)
    doc = result_to_json(result)
    if not as_json:
        _print(result)
    if out is not None:
        from draftforge.search_report import write_outputs

        doc["written"] = written = write_outputs(result, out, overwrite=True)
        if not as_json:
            console().print(
                f"wrote search.json, {len(written['configs'])} config.json, "
                f"{', '.join(os.path.basename(p) for p in written['recipes'])} and {len(written['plots'])} "
                f"plots to {written['folder']}"
            )
    if as_json:
        print_json(doc)


def _run_with_progress(search_mod, config):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=console(),
    ) as bar:

        def start(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)

        return search_mod.run(config, progress=start)


def _print(result) -> None:
    from rich import box
    from rich.table import Table

    from draftforge.search_report import summary_rows

    out = console()
    for note in result.notes:
        out.print(f"[dim]{note}[/dim]")
    acc = result.acceptance_model
    out.print(f"[dim]acceptance: {acc['source']} — {acc['formula']}[/dim]")
    for batch in result.batches:
        table = Table(
            title=f"{result.target.name}: draft on {result.inputs['draft_gpu']}, target on "
            f"{result.inputs['target_gpu']} x{batch.tp}, batch {batch.batch_size}, {result.inputs['runtime']}",
            box=box.SIMPLE_HEAD,
            collapse_padding=True,
            padding=(0, 1),
            pad_edge=False,
        )
        table.add_column("", overflow="ellipsis", no_wrap=True, max_width=11)
        for col in ("L×H", "heads", "ffn", "params", "ms/step", "α", "γ", "ms/tok", "speedup"):
            table.add_column(col, justify="right", no_wrap=True)
        for label, c in summary_rows(batch):
            s = c.shape
            style = "bold green" if c.rank == 1 else ("dim" if c.feasible else "red") if c.name else None
            table.add_row(
                label,
                f"{s.num_layers}×{s.hidden_size}",
                f"{s.num_heads}/{s.num_kv_heads}",
                str(s.intermediate_size),
                _params(c.params),
                f"{c.draft_latency_s * 1e3:.2f}",
                f"{c.alpha:.2f}",
                str(c.gamma),
                f"{c.latency_per_token_s * 1e3:.1f}",
                f"{c.speedup:.2f}x",
                style=style,
            )
        out.print(table)
        if any(not b.feasible for b in batch.baselines):
            out.print("[red]red baselines do not fit the draft GPU's memory (scored anyway)[/red]")
        best = batch.candidates[0]
        out.print(
            f"[bold]recommended for batch {batch.batch_size}:[/bold] {best.shape.describe()} "
            f"({_params(best.params)}), gamma={best.gamma}, predicted {best.speedup:.2f}x "
            f"({best.speedup_low:.2f}x-{best.speedup_high:.2f}x over the alpha band "
            f"{best.alpha_low:.2f}-{best.alpha_high:.2f})"
        )
        out.print(f"[bold]why:[/bold] {batch.why}")


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def register(app: typer.Typer) -> None:
    app.command("search")(search)
