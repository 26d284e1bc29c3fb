"""`draftforge distill RECIPE`: train a draft from its target by knowledge distillation (DeepSpeed)."""

from __future__ import annotations

import contextlib

import typer

from draftforge.cli._common import JSON_OPTION, console, print_json


def distill(
    recipe: str = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    overrides: list[str] = typer.Option(
        None,
        "--set",
        help="Override a recipe key, e.g. --set optim.lr=1e-4 --set output.dir=runs/x (repeatable).",
    ),
    out: str = typer.Option(None, "--out", help="Shorthand for --set output.dir=OUT."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in output.dir."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine (GPUs, or CPU ranks)."),
    launcher: str = typer.Option(
        "torchrun",
        "--launcher",
        help="torchrun or deepspeed, used when --nproc > 1 (multi-node: run "
        "`deepspeed --hostfile ... -m draftforge.distill.train RECIPE` yourself).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and print the resolved recipe; train nothing."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Distill a draft model from its target as the recipe says, and export it as a transformers folder.

    JSON keys: out_dir, draft_dir, steps, tokens, initial_metrics {eval/alpha, eval/greedy_agree},
    final_metrics {train/loss, eval/alpha, eval/greedy_agree}, tokens_per_s.
    """
    from draftforge.distill.recipe import load_recipe

    sets = list(overrides or [])
    if out is not None:
        sets.append(f"output.dir={out}")
    r = load_recipe(recipe, sets)
    if dry_run:
        shape = r.draft_shape()
        if as_json:
            print_json(
                {
                    "recipe": r.to_dict(),
                    "recipe_sha256": r.sha256(),
                    "draft_shape": shape.to_dict(),
                    "draft_params": shape.param_count(),
                }
            )
        else:
            console().print(r.to_yaml())
            console().print(f"draft: {shape.describe()} ({shape.param_count() / 1e6:.2f}M parameters)")
        return
    if nproc > 1:
        _launch(recipe, sets, resume, nproc, launcher, as_json)
        return
    from draftforge.distill.train import run

    if as_json:
        with _stdout_to_stderr():  # DeepSpeed prints to stdout; --json keeps stdout for the JSON
            result = run(r, resume=resume, progress=False)
    else:
        result = run(r, resume=resume, progress=True)
    summary = {
        "out_dir": str(result.out_dir),
        "draft_dir": str(result.draft_dir),
        "steps": result.steps,
        "tokens": result.tokens,
        "initial_metrics": result.initial_metrics,
        "final_metrics": result.final_metrics,
        "tokens_per_s": result.tokens_per_s,
    }
    if as_json:
        print_json(summary)
        return
    c = console()
    i, f = result.initial_metrics, result.final_metrics
    c.print(
        f"[bold]draft[/bold] written to {result.draft_dir} after {result.steps} steps "
        f"({result.tokens:,} tokens, {result.tokens_per_s:,.0f} tokens/s)"
    )
    c.print(
        f"acceptance proxy α: {i['eval/alpha']:.3f} -> {f['eval/alpha']:.3f}; greedy agreement: "
        f"{i['eval/greedy_agree']:.3f} -> {f['eval/greedy_agree']:.3f}; final train loss {f['train/loss']:.4f}"
    )


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send file descriptor 1 to stderr for the duration (catches prints from C extensions too)."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _launch(recipe: str, sets: list[str], resume: bool, nproc: int, launcher: str, as_json: bool) -> None:
    """Run the worker under torchrun or the deepspeed launcher with `nproc` local processes."""
    import json
    import subprocess
    import sys

    from draftforge.errors import DraftforgeError

    worker = ["-m", "draftforge.distill.train", recipe, *(a for s in sets for a in ("--set", s))]
    if resume:
        worker.append("--resume")
    if as_json:
        worker.append("--no-progress")
    if launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *worker,
        ]
    elif launcher == "deepspeed":
        import os
        import shutil

        beside = os.path.join(
            os.path.dirname(sys.executable), "deepspeed"
        )  # the launcher of this environment
        exe = beside if os.path.isfile(beside) else shutil.which("deepspeed")
        if exe is None:
            raise DraftforgeError("the deepspeed launcher is not installed here; use --launcher torchrun")
        cmd = [exe, f"--num_gpus={nproc}", "--module", *worker[1:]]
    else:
        raise DraftforgeError(f"--launcher must be torchrun or deepspeed, got {launcher!r}")
    if not as_json:
        rc = subprocess.call(cmd)
    else:
        # workers (and DeepSpeed) print to stdout; keep stdout for rank 0's JSON summary only
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        rc = proc.returncode
        lines = proc.stdout.splitlines()
        summary = next((ln for ln in reversed(lines) if ln.startswith("{")), None)
        for ln in lines:
            if ln is not summary:
                print(ln, file=sys.stderr)
        if rc == 0 and summary is not None:
            print_json(json.loads(summary))
    if rc != 0:
        raise DraftforgeError(f"the distillation workers failed (exit code {rc}); see their messages above")


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)
