"""`draftforge hardware ...`, `draftforge targets ...` and `draftforge predict`."""

from __future__ import annotations

import typer

from draftforge.cli._common import JSON_OPTION, console, ms, print_json

hardware_app = typer.Typer(
    help="Accelerators draftforge knows (spec sheets with sources).", no_args_is_help=True
)
targets_app = typer.Typer(
    help="Target models draftforge knows (published config.json shapes).", no_args_is_help=True
)


@hardware_app.command("list")
def hardware_list(as_json: bool = JSON_OPTION) -> None:
    """List catalog accelerators."""
    from draftforge.catalog import list_hardware

    items = list_hardware()
    if as_json:
        print_json([h.to_dict() for h in items])
        return
    from rich.table import Table

    table = Table(title="hardware catalog")
    for col in ("name", "aliases", "device", "bf16 TFLOP/s", "mem TB/s", "mem GB", "TP link GB/s"):
        table.add_column(col)
    for h in items:
        if h.kind == "cpu":
            table.add_row(h.name, "", h.display_name, "-", "-", "-", "-")
            continue
        table.add_row(
            h.name,
            ", ".join(h.aliases),
            h.display_name,
            f"{h.peak_flops / 1e12:.0f}",
            f"{h.memory_bandwidth / 1e12:.3f}",
            f"{h.memory_bytes / 1e9:.0f}",
            f"{h.interconnect_bandwidth / 1e9:.0f} ({h.interconnect})",
        )
    console().print(table)


@hardware_app.command("show")
def hardware_show(name: str, as_json: bool = JSON_OPTION) -> None:
    """Show one accelerator's figures and their sources."""
    from draftforge.catalog import get_hardware

    h = get_hardware(name)
    if as_json:
        print_json(h.to_dict())
        return
    out = console()
    out.print(f"[bold]{h.name}[/bold]: {h.display_name}")
    if h.kind == "cpu":
        out.print("no spec sheet: measure it with `draftforge profile --device cpu`")
        return
    out.print(f"  dense bf16/fp16: {h.peak_flops / 1e12:.0f} TFLOP/s")
    out.print(f"  memory: {h.memory_bytes / 1e9:.0f} GB at {h.memory_bandwidth / 1e12:.3f} TB/s")
    out.print(
        f"  tensor-parallel link: {h.interconnect}, {h.interconnect_bandwidth / 1e9:.0f} GB/s per direction"
    )
    for key, src in h.sources.items():
        out.print(f"  [dim]{key}: {src}[/dim]")


@targets_app.command("list")
def targets_list(as_json: bool = JSON_OPTION) -> None:
    """List catalog target models."""
    from draftforge.catalog import list_targets

    items = list_targets()
    if as_json:
        print_json([t.to_dict() for t in items])
        return
    from rich.table import Table

    table = Table(title="target catalog")
    for col in (
        "name",
        "params",
        "layers",
        "hidden",
        "heads/kv",
        "intermediate",
        "vocab",
        "mlp",
        "tokenizer",
    ):
        table.add_column(col)
    for t in items:
        s = t.shape
        table.add_row(
            t.name,
            f"{s.param_count() / 1e9:.2f}B",
            str(s.num_layers),
            str(s.hidden_size),
            f"{s.num_heads}/{s.num_kv_heads}",
            str(s.intermediate_size),
            str(s.vocab_size),
            s.mlp,
            t.tokenizer or "-",
        )
    console().print(table)


@targets_app.command("show")
def targets_show(name: str, as_json: bool = JSON_OPTION) -> None:
    """Show one target: catalog name, config.json path, or Hub id."""
    from draftforge.catalog import resolve_target

    t = resolve_target(name)
    d = t.to_dict()
    d["weight_bytes_bf16"] = t.shape.weight_bytes("bf16")
    d["kv_bytes_per_token_bf16"] = t.shape.kv_bytes_per_token("bf16")
    d["flops_per_token"] = t.shape.flops_per_token(0)
    if as_json:
        print_json(d)
        return
    out = console()
    out.print(
        f"[bold]{t.name}[/bold] ({t.hub_id or t.source}) — {t.shape.param_count() / 1e9:.3f}B parameters"
    )
    for key, value in t.shape.to_dict().items():
        out.print(f"  {key}: {value}")
    out.print(f"  mlp: {t.shape.mlp}; tokenizer: {t.tokenizer}; license: {t.license}")
    out.print(
        f"  weights (bf16): {d['weight_bytes_bf16'] / 1e9:.2f} GB; KV cache: "
        f"{d['kv_bytes_per_token_bf16'] / 1e6:.3f} MB per token"
    )


def predict(
    gpu: str = typer.Option(..., "--gpu", help="Catalog accelerator (e.g. a100, h100, l4)."),
    target: str = typer.Option(None, "--target", help="Catalog target, config.json path or Hub id."),
    shape: str = typer.Option(
        None,
        "--shape",
        help="Explicit shape instead of --target: 'layers=5,hidden=4096,heads=32,kv_heads=32,"
        "intermediate=11008,vocab=32000[,family=llama]'.",
    ),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    context: int = typer.Option(512, "--context", min=0, help="Cached tokens per sequence."),
    tokens: int = typer.Option(1, "--tokens", min=1, help="New tokens per forward (γ+1 to verify)."),
    dtype: str = typer.Option("bf16", "--dtype"),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel degree."),
    runtime: str = typer.Option("eager", "--runtime", help="eager or cuda-graph."),
    profile: str = typer.Option(None, "--profile", help="Measured profile file instead of the spec sheet."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Predict the latency of one forward pass, with a per-term breakdown.

    JSON keys: gpu, model, shape, params, batch_size, context, tokens, dtype, tp, runtime,
    total_s, terms (seconds, summing to total_s), bound, bytes_read, flops, bandwidth_floor_s.
    """
    from draftforge.catalog import resolve_target
    from draftforge.errors import DraftforgeError
    from draftforge.latency.analytic import AnalyticLatencyModel

    if (target is None) == (shape is None):
        raise DraftforgeError("give exactly one of --target or --shape")
    if target is not None:
        model_shape, model_name = resolve_target(target).shape, resolve_target(target).name
    else:
        model_shape, model_name = parse_shape(shape), "custom"
    if profile is not None:
        from draftforge.latency.model import load_latency_model  # provided by the profiler

        lat = load_latency_model(profile, gpu=gpu)
        total = lat.forward_time(model_shape, batch_size, context, tokens)
        result = {"total_s": total, "terms": {"measured_model": total}, "bound": None}
        label = lat.label
    else:
        lat = AnalyticLatencyModel.for_gpu(gpu, dtype=dtype, tp=tp, runtime=runtime)
        result = lat.breakdown(model_shape, batch_size, context, tokens)
        label = lat.label
    out = {
        "gpu": gpu,
        "model": model_name,
        "latency_model": label,
        "shape": model_shape.to_dict(),
        "params": model_shape.param_count(),
        "batch_size": batch_size,
        "context": context,
        "tokens": tokens,
        "dtype": dtype,
        "tp": tp,
        "runtime": runtime,
        **result,
    }
    if as_json:
        print_json(out)
        return
    from rich.table import Table

    table = Table(
        title=f"{model_name} ({model_shape.describe()}) on {label}: "
        f"batch {batch_size}, context {context}, {tokens} token(s)/forward"
    )
    table.add_column("term")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    for name, sec in result["terms"].items():
        table.add_row(name, ms(sec), f"{sec / result['total_s']:.0%}")
    table.add_row("[bold]total[/bold]", f"[bold]{ms(result['total_s'])}[/bold]", "100%")
    console().print(table)
    if result.get("bound"):
        console().print(
            f"layers are {result['bound']}-bound; bandwidth floor {ms(result['bandwidth_floor_s'])} ms"
        )


_SHAPE_KEYS = {
    "layers": "num_layers",
    "hidden": "hidden_size",
    "heads": "num_heads",
    "kv_heads": "num_kv_heads",
    "intermediate": "intermediate_size",
    "vocab": "vocab_size",
    "family": "family",
    "tied": "tie_embeddings",
}


def parse_shape(text: str):
    """Parse 'layers=5,hidden=4096,...' into a ModelShape (kv_heads defaults to heads)."""
    from draftforge.errors import DraftforgeError
    from draftforge.shapes import ModelShape

    values: dict[str, object] = {}
    for part in text.split(","):
        if "=" not in part:
            raise DraftforgeError(f"--shape entries must be key=value, got {part!r}")
        key, value = (p.strip() for p in part.split("=", 1))
        if key not in _SHAPE_KEYS:
            raise DraftforgeError(f"unknown --shape key {key!r}; use {', '.join(_SHAPE_KEYS)}")
        field = _SHAPE_KEYS[key]
        if field == "family":
            values[field] = value
        elif field == "tie_embeddings":
            values[field] = value.lower() in ("1", "true", "yes")
        else:
            try:
                values[field] = int(value)
            except ValueError:
                raise DraftforgeError(f"--shape {key} must be an integer, got {value!r}") from None
    missing = [
        k for k, f in _SHAPE_KEYS.items() if f not in values and k not in ("kv_heads", "family", "tied")
    ]
    if missing:
        raise DraftforgeError(f"--shape is missing {', '.join(missing)}")
    values.setdefault("num_kv_heads", values["num_heads"])
    return ModelShape(**values)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.add_typer(hardware_app, name="hardware")
    app.add_typer(targets_app, name="targets")
    app.command("predict")(predict)
