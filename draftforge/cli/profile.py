"""`draftforge profile` (measure this device), `profile show FILE`, `profile plot FILE`, `profile list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from draftforge.cli._common import JSON_OPTION, console, ms, parse_int_list, print_json

profile_app = typer.Typer(
    help="Measure draft-shape latency on this device and fit a latency model (a profile file).",
    invoke_without_command=True,
)


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    return None if text is None else tuple(parse_int_list(text, what))


def _contexts(text: str | None) -> tuple[int, ...] | None:
    from draftforge.errors import DraftforgeError

    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DraftforgeError(
            f"--contexts must be a comma-separated list of integers, got {text!r}"
        ) from None
    return values


@profile_app.callback()
def profile(
    ctx: typer.Context,
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    dtype: str = typer.Option(
        None, "--dtype", help="fp32, bf16 or fp16 (default: fp32 on CPU, bf16 on CUDA)."
    ),
    runtime: str = typer.Option("eager", "--runtime", help="eager, or cuda-graph (CUDA only)."),
    budget_minutes: float = typer.Option(5.0, "--budget-minutes", help="Wall-clock budget, fit included."),
    out: str = typer.Option(
        None, "--out", help="Profile file (default: the user cache, see `profile list`)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads (default 1, recorded)."),
    layers: str = typer.Option(None, "--layers", help="Depth grid, e.g. 1,2,4,8."),
    hidden: str = typer.Option(None, "--hidden", help="Width grid (multiples of 64), e.g. 256,512,1024."),
    batch_sizes: str = typer.Option("1", "--batch-sizes", help="Batch sizes, e.g. 1,4."),
    contexts: str = typer.Option(None, "--contexts", help="Cached tokens per sequence, e.g. 128,1024."),
    tokens: str = typer.Option(
        "1,5", "--tokens", help="New tokens per forward: 1 = draft step, γ+1 = verify."
    ),
    vocab_size: int = typer.Option(32000, "--vocab-size", min=1),
    max_params: int = typer.Option(None, "--max-params", help="Largest shape in parameters."),
    passes: int = typer.Option(
        None, "--passes", min=1, help="Passes over the shapes (default 2 on CPU, 1 on CUDA)."
    ),
    clock: str = typer.Option(
        "auto", "--clock", help="CPU clock: auto, thread (CPU time of the thread) or wall."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Profile this device (when no subcommand is given) and write a `draftforge.profile/1` file.

    JSON keys: path, device, dtype, runtime, measurements, skipped, elapsed_s, error_report.
    """
    if ctx.invoked_subcommand is not None:
        return
    from draftforge.latency.model import read_profile
    from draftforge.latency.profiler import ProfileConfig, run

    config = ProfileConfig(
        device=device,
        dtype=dtype,
        runtime=runtime,
        budget_minutes=budget_minutes,
        out=out,  # type: ignore[arg-type]
        overwrite=overwrite,
        threads=threads,
        layers=_ints(layers, "--layers"),
        hidden=_ints(hidden, "--hidden"),
        batch_sizes=_ints(batch_sizes, "--batch-sizes") or (1,),
        contexts=_contexts(contexts),
        tokens=_ints(tokens, "--tokens") or (1,),
        vocab_size=vocab_size,
        max_params=max_params,
        progress=not as_json,
    )
    path = run(config)
    prof = read_profile(path)
    if as_json:
        print_json(_summary(prof))
        return
    _print_summary(prof)


def _summary(prof) -> dict[str, Any]:
    raw = prof.raw
    report = dict(prof.error_report or {})
    report.pop("predicted_s", None)
    return {
        "path": str(prof.path),
        "device": raw.get("device"),
        "dtype": prof.dtype,
        "runtime": prof.runtime,
        "created": raw.get("created"),
        "measurements": len(prof.measurements),
        "skipped": len(raw.get("skipped") or []),
        "elapsed_s": raw.get("elapsed_s"),
        "coefficients": prof.coefficients,
        "error_report": report,
        "spec_sheet": raw.get("spec_sheet"),
        "calibrated_spec_sheet": raw.get("calibrated_spec_sheet"),
    }


def _print_summary(prof) -> None:
    s = _summary(prof)
    out = console()
    out.print(
        f"[bold]{s['path']}[/bold]: {s['device'].get('name')} {s['dtype']} {s['runtime']}, "
        f"{s['measurements']} measurements, {s['skipped']} shapes skipped, "
        f"{(s['elapsed_s'] or 0):.0f} s"
    )
    _print_report(out, s["error_report"], s.get("spec_sheet"))


def _print_report(out, report: dict[str, Any], spec: dict[str, Any] | None) -> None:
    if report.get("mape") is None:
        out.print(f"held-out error: not computed ({report.get('reason', 'no report')})")
    else:
        out.print(
            f"held-out error over {report['groups']} (layers, hidden) combinations, {report['n']} points: "
            f"MAPE {report['mape']:.1%}, {report['within_10pct']:.0%} within ±10%, "
            f"worst {report['worst_error']:+.0%}"
        )
    if spec:
        out.print(
            f"spec-sheet model on the same points: MAPE {spec['mape']:.1%}, "
            f"{spec['within_10pct']:.0%} within ±10% (median bias {spec['bias']:+.0%})"
        )


@profile_app.command("show")
def show(
    file: str = typer.Argument(..., help="Profile file or built-in profile name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a profile: measurements per shape, fitted coefficients and the held-out error report."""
    from draftforge.latency.features import FEATURES
    from draftforge.latency.model import FittedLatencyModel, read_profile, resolve_profile_path

    prof = read_profile(resolve_profile_path(file))
    if as_json:
        d = _summary(prof)
        d["measurements_table"] = [m.to_dict() for m in prof.measurements]
        print_json(d)
        return
    from rich.table import Table

    out = console()
    s = _summary(prof)
    dev = s["device"] or {}
    out.print(f"[bold]{s['path']}[/bold]")
    out.print(
        f"  device {dev.get('name')} ({dev.get('gpu') or dev.get('cpu')}), threads {dev.get('threads')}, "
        f"{s['dtype']} {s['runtime']}, measured {s['created']}"
    )
    model = FittedLatencyModel.from_profile(prof)
    table = Table(title="measurements (median, p10-p90) and fitted prediction")
    for col in (
        "shape",
        "params",
        "batch",
        "context",
        "tokens",
        "median ms",
        "p10-p90 ms",
        "fitted ms",
        "err",
    ):
        table.add_column(col, justify="right" if col != "shape" else "left")
    for m in prof.measurements:
        pred = model.forward_time(m.shape, m.batch_size, m.context, m.tokens)
        table.add_row(
            m.shape.describe(),
            f"{m.shape.param_count() / 1e6:.1f}M",
            str(m.batch_size),
            str(m.context),
            str(m.tokens),
            ms(m.median_s),
            f"{ms(m.p10_s)}-{ms(m.p90_s)}",
            ms(pred),
            f"{(pred - m.median_s) / m.median_s:+.1%}",
        )
    out.print(table)
    coef = Table(title="fitted coefficients (non-negative least squares, relative error)")
    for col in ("feature", "kind", "coefficient", "unit"):
        coef.add_column(col)
    for name, (kind, unit, _meaning) in FEATURES.items():
        coef.add_row(name, kind, f"{prof.coefficients.get(name, 0.0):.4g}", f"s / {unit}")
    out.print(coef)
    _print_report(out, s["error_report"], s.get("spec_sheet"))
    cal = s.get("calibrated_spec_sheet")
    if cal:
        out.print(
            f"spec-sheet model calibrated on these points: {cal['effective_bandwidth_b_s'] / 1e9:.1f} GB/s, "
            f"{cal['effective_flops'] / 1e12:.3g} TFLOP/s, {cal['layer_overhead_s'] * 1e6:.0f} µs per layer, "
            f"{cal['step_overhead_s'] * 1e6:.0f} µs per forward (in-sample MAPE {cal['in_sample']['mape']:.1%}); "
            "use it with load_latency_model(path, kind='calibrated')"
        )


@profile_app.command("plot")
def plot(
    file: str = typer.Argument(..., help="Profile file or built-in profile name."),
    out: str = typer.Option(None, "--out", help="PNG path (default: next to the profile, .png)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
    as_json: bool = JSON_OPTION,
) -> None:
    """PNG: latency against layers for several widths (measured, fitted), and predicted vs measured."""
    from draftforge.errors import DraftforgeError
    from draftforge.latency.model import read_profile, resolve_profile_path
    from draftforge.latency.plot import plot_profile

    path = resolve_profile_path(file)
    prof = read_profile(path)
    target = Path(out) if out else path.with_suffix(".png")
    if target.exists() and not overwrite:
        raise DraftforgeError(f"{target} exists; choose another --out or pass --overwrite")
    written = plot_profile(prof, target)
    if as_json:
        print_json({"path": str(written), "profile": str(path)})
        return
    console().print(f"wrote {written}")


@profile_app.command("list")
def list_profiles(as_json: bool = JSON_OPTION) -> None:
    """List built-in profiles and the ones in the user cache folder."""
    from draftforge.errors import DraftforgeError
    from draftforge.latency.model import builtin_profiles, profiles_cache_dir, read_profile

    cache = profiles_cache_dir()
    rows = []
    for kind, paths in (("built-in", builtin_profiles()), ("cache", sorted(cache.glob("*.json")))):
        for path in paths:
            try:
                prof = read_profile(path)
            except DraftforgeError as exc:
                rows.append({"where": kind, "path": str(path), "error": str(exc)})
                continue
            report = prof.error_report or {}
            rows.append(
                {
                    "where": kind,
                    "path": str(path),
                    "device": prof.device_name,
                    "dtype": prof.dtype,
                    "runtime": prof.runtime,
                    "measurements": len(prof.measurements),
                    "within_10pct": report.get("within_10pct"),
                }
            )
    if as_json:
        print_json({"cache_dir": str(cache), "profiles": rows})
        return
    from rich.table import Table

    table = Table(title=f"profiles (cache: {cache})")
    for col in ("where", "device", "dtype", "runtime", "points", "held-out ±10%", "path"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["where"], "-", "-", "-", "-", "-", f"{r['path']} (invalid)")
            continue
        w = r["within_10pct"]
        table.add_row(
            r["where"],
            r["device"],
            r["dtype"],
            r["runtime"],
            str(r["measurements"]),
            f"{w:.0%}" if isinstance(w, float) else "-",
            r["path"],
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")
