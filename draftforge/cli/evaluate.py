"""`draftforge evaluate`: real speculative decoding of a draft against its target."""

from __future__ import annotations

import sys

import typer

from draftforge.cli._common import JSON_OPTION, console, parse_int_list, print_json


def evaluate(
    draft: str = typer.Option(
        ..., "--draft", help="Draft model: a folder (e.g. from `draftforge distill`) or Hub id."
    ),
    target: str = typer.Option(
        ...,
        "--target",
        help="Target model: a folder, a Hub id, or a catalog name (smollm2-135m works offline).",
    ),
    prompts: str = typer.Option(
        "humaneval", "--prompts", help="humaneval, chat-mini, an MT-bench style .jsonl file, or a text file."
    ),
    gamma: str = typer.Option(
        "4", "--gamma", help="Draft tokens per iteration, or a list to sweep: 1,2,4,8."
    ),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy (output checked identical)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus cut applied to draft and target alike."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Tokens generated per prompt at most."),
    num_prompts: int = typer.Option(10, "--num-prompts", help="How many prompts of the set (0 = all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling generators."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0 = torch's default)."),
    hf: bool = typer.Option(
        True, "--hf/--no-hf", help="Also time transformers' assisted generation (greedy)."
    ),
    out: str = typer.Option(
        None, "--out", help="Report file (.json; a .png is written beside it). Never overwritten."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Measure α, τ, tokens/s and speedup of a draft with real speculative decoding; writes an eval report."""
    from draftforge.evaluate.runner import EvalConfig, run

    config = EvalConfig(
        draft=draft,
        target=target,
        prompts=prompts,
        gammas=tuple(parse_int_list(gamma, "--gamma")),
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        num_prompts=num_prompts or None,
        seed=seed,
        device=device,
        dtype=dtype,
        hf_assisted=hf,
        threads=threads or None,
        out=out,
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from draftforge.evaluate.report import category_table, table

    err = console()
    err.file = sys.stderr
    with Progress(
        TextColumn("[bold]evaluate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("loading models", total=None)

        def on_step(done: int, total: int, desc: str) -> None:
            bar.update(task, completed=done, total=total, description=desc)

        report, path = run(config, progress=on_step)
    if as_json:
        print_json({"path": str(path), "png": str(path.with_suffix(".png")), "report": report})
        return
    con = console()
    con.print(table(report))
    con.print(category_table(report))
    con.print(f"report: {path}\nplot:   {path.with_suffix('.png')}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
