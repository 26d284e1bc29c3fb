"""Measure decode-forward latency of many draft shapes on the local device and fit a latency model.

`run(ProfileConfig(...)) -> Path` walks a grid of shapes (layers x hidden x FFN ratio x KV groups,
within a parameter range) in an order whose every prefix covers the grid evenly (farthest-point
order), so a short `budget_minutes` still spans it. Each shape becomes a real transformers model
with random weights (built on the meta device, then materialised: one model alive at a time), a KV
cache is filled to each context length, and the forward of `tokens` new tokens is timed with
warm-up, synchronisation (CUDA events on GPU; on CPU the measuring thread's CPU time by default),
several repeats and trimmed statistics (median, p10, p90) — the HAT recipe (STYLE.md); on CPU every
shape is timed in two passes, minutes apart. The hot path lives in `workloads.py`. Runtime modes: eager (DynamicCache,
what HF generate runs) everywhere; on CUDA also cuda-graph (StaticCache, one captured graph per
workload, what fast engines run). The measurements, a fitted model and its held-out error report go
into one `draftforge.profile/1` file.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from draftforge.errors import DraftforgeError
from draftforge.latency.analytic import RUNTIMES, Runtime
from draftforge.latency.model import (
    PROFILE_SCHEMA,
    Measurement,
    canonical_dtype,
    default_profile_path,
    local_device_name,
)
from draftforge.latency.workloads import (
    build_model,
    cpu_timer,
    cuda_timer,
    eager_workload,
    static_workload,
    thread_timer,
    time_repeats,
    trimmed_stats,
)
from draftforge.shapes import DTYPE_BYTES, FAMILIES, Family, ModelShape

#: device defaults: CPU grids stay small (fp32, 2 shared cores); GPU grids reach 7B-class widths.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": dict(
        passes=2,
        layers=(1, 2, 3, 4, 6, 8, 12, 16),
        hidden=(256, 384, 512, 768, 1024, 1536),
        max_params=200_000_000,
        contexts=(128, 1024),
        warmup=2,
        min_repeats=5,
        max_repeats=25,
        seconds_per_workload=0.25,
    ),
    "cuda": dict(
        passes=1,
        layers=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
        hidden=(256, 512, 768, 1024, 1536, 2048, 3072, 4096),
        max_params=4_000_000_000,
        contexts=(256, 2048),
        warmup=5,
        min_repeats=10,
        max_repeats=50,
        seconds_per_workload=0.05,
    ),
}


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure and where. Unset (None) fields take the device defaults in `_DEFAULTS`."""

    #: "cpu" or "cuda" / "cuda:N"
    device: str = "cpu"
    #: storage and compute dtype; None: fp32 on CPU (bf16 on CPU is slow and unrepresentative), bf16 on CUDA
    dtype: str | None = None
    #: "eager" (DynamicCache) or "cuda-graph" (StaticCache + captured CUDA graph; CUDA only)
    runtime: Runtime = "eager"
    #: wall-clock budget of the whole run, fit and file included
    budget_minutes: float = 5.0
    #: output file; None: `default_profile_path(device, dtype, runtime)` in the user cache
    out: str | None = None
    #: replace an existing output file
    overwrite: bool = False
    #: torch CPU threads, fixed for the run and recorded. None: 1 on CPU, because on a shared host a
    #: second thread that loses its core stalls every parallel region (measured: 1 thread 17 ms with
    #: p90 22 ms, 2 threads 120-200 ms median on a busy 2-core machine); raise it on a dedicated one.
    threads: int | None = None
    #: CPU clock: "thread" = the measuring thread's CPU time (time.thread_time), immune to the
    #: scheduler handing the core to other processes on a shared host (measured: a 12-layer shape
    #: 17 ms thread time, 42-52 ms wall time under load 4 on 2 cores); "wall" = perf_counter.
    #: "auto": thread with 1 thread (the timed work runs on the calling thread), wall otherwise.
    clock: Literal["auto", "wall", "thread"] = "auto"
    layers: tuple[int, ...] | None = None
    hidden: tuple[int, ...] | None = None
    #: intermediate_size / hidden_size (rounded to a multiple of 64); 2.75 is LLaMA's ratio, 4 GPT's
    ffn_ratios: tuple[float, ...] = (2.75, 4.0)
    #: query heads per KV head (1 = multi-head attention)
    kv_groups: tuple[int, ...] = (1, 4)
    head_dim: int = 64
    vocab_size: int = 32000
    family: Family = "llama"
    min_params: int = 0
    max_params: int | None = None
    #: explicit shapes to profile instead of the grid above (benchmarks use this)
    shapes: tuple[ModelShape, ...] | None = None
    batch_sizes: tuple[int, ...] = (1,)
    #: cached tokens per sequence before the timed forward
    contexts: tuple[int, ...] | None = None
    #: new tokens per forward: 1 is a draft step, γ+1 a verification
    tokens: tuple[int, ...] = (1, 5)
    warmup: int | None = None
    min_repeats: int | None = None
    max_repeats: int | None = None
    #: repeats stop after min_repeats once this much time went into one workload
    seconds_per_workload: float | None = None
    #: passes over the measured shapes (each rebuilt and re-timed later); None: 2 on CPU, 1 on CUDA
    passes: int | None = None
    #: folds of the held-out (grouped k-fold) error report
    folds: int = 5
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise DraftforgeError("invalid profile settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        out: list[str] = []
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            out.append(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.dtype is not None and self.dtype not in DTYPE_BYTES:
            out.append(f"dtype must be one of fp32, bf16, fp16, got {self.dtype!r}")
        elif self.dtype is not None and canonical_dtype(self.dtype) not in ("fp32", "bf16", "fp16"):
            out.append(f"dtype {self.dtype!r} cannot be profiled; use fp32, bf16 or fp16")
        if self.runtime not in RUNTIMES:
            out.append(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        elif self.runtime == "cuda-graph" and not self.device.startswith("cuda"):
            out.append("runtime cuda-graph needs --device cuda")
        if not (self.budget_minutes > 0 and math.isfinite(self.budget_minutes)):
            out.append(f"budget_minutes must be positive, got {self.budget_minutes!r}")
        if self.family not in FAMILIES:
            out.append(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for name in ("layers", "hidden", "kv_groups", "batch_sizes", "tokens"):
            values = getattr(self, name)
            if values is not None and (not values or any(not isinstance(v, int) or v < 1 for v in values)):
                out.append(f"{name} must be a non-empty list of positive integers, got {values!r}")
        if self.contexts is not None and (not self.contexts or any(c < 0 for c in self.contexts)):
            out.append(f"contexts must be a non-empty list of integers >= 0, got {self.contexts!r}")
        if not self.ffn_ratios or any(r <= 0 for r in self.ffn_ratios):
            out.append(f"ffn_ratios must be positive, got {self.ffn_ratios!r}")
        for name in ("head_dim", "vocab_size", "folds"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.threads is not None and self.threads < 1:
            out.append(f"threads must be positive, got {self.threads!r}")
        if self.clock not in ("auto", "wall", "thread"):
            out.append(f"clock must be auto, wall or thread, got {self.clock!r}")
        elif self.clock == "thread" and (self.device != "cpu" or (self.threads or 1) > 1):
            out.append("clock 'thread' measures one CPU thread: use it with --device cpu and 1 thread")
        if self.passes is not None and self.passes < 1:
            out.append(f"passes must be positive, got {self.passes!r}")
        for name in ("warmup", "min_repeats", "max_repeats"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "warmup" else 1):
                out.append(f"{name} must be {'>= 0' if name == 'warmup' else 'positive'}, got {value!r}")
        if self.max_params is not None and self.max_params < self.min_params:
            out.append(f"max_params ({self.max_params}) is below min_params ({self.min_params})")
        return out

    def resolved(self) -> ProfileConfig:
        """A copy with every None filled from the device defaults."""
        defaults = _DEFAULTS["cuda" if self.device.startswith("cuda") else "cpu"]
        changes: dict[str, Any] = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.dtype is None:
            changes["dtype"] = "bf16" if self.device.startswith("cuda") else "fp32"
        else:
            changes["dtype"] = canonical_dtype(self.dtype)
        threads = self.threads
        if threads is None and self.device == "cpu":
            changes["threads"] = threads = 1
        if self.device != "cpu":
            changes["clock"] = "wall"  # CUDA events, see `cuda_timer`
        elif self.clock == "auto":
            changes["clock"] = "thread" if threads == 1 else "wall"
        return dataclasses.replace(self, **changes)


# ---- the grid ------------------------------------------------------------------------------------
def shape_grid(config: ProfileConfig) -> list[ModelShape]:
    """Every valid shape of the (resolved) config's grid within its parameter range, in grid order."""
    if config.shapes is not None:
        if not config.shapes:
            raise DraftforgeError(
                "no shape of the profile grid is feasible (the explicit shape list is empty)"
            )
        return list(config.shapes)
    shapes: list[ModelShape] = []
    for layers in config.layers or ():
        for hidden in config.hidden or ():
            if hidden % config.head_dim:
                continue
            heads = hidden // config.head_dim
            for ratio in config.ffn_ratios:
                inter = max(64, int(round(ratio * hidden / 64)) * 64)
                for groups in config.kv_groups:
                    if heads % groups or (config.family == "opt" and groups != 1):
                        continue
                    shape = ModelShape(
                        num_layers=layers,
                        hidden_size=hidden,
                        num_heads=heads,
                        num_kv_heads=heads // groups,
                        intermediate_size=inter,
                        vocab_size=config.vocab_size,
                        family=config.family,
                        max_positions=max(4096, max(config.contexts or (0,)) + max(config.tokens) + 8),
                    )
                    params = shape.param_count()
                    if params >= config.min_params and (
                        config.max_params is None or params <= config.max_params
                    ):
                        shapes.append(shape)
    if not shapes:
        raise DraftforgeError(
            "no shape of the profile grid is feasible (check that hidden sizes are multiples of "
            f"head_dim {config.head_dim} and the parameter range {config.min_params:,}..{config.max_params:,} "
            "admits some shape)"
        )
    return shapes


def coverage_order(shapes: list[ModelShape]) -> list[ModelShape]:
    """Farthest-point order: each next shape is the one farthest from all chosen so far.

    Distances are in (log2 layers, log2 hidden) with FFN ratio and KV grouping as minor axes, so any
    prefix spreads evenly over depth and width; starts with the smallest shape.
    """

    def coords(s: ModelShape) -> tuple[float, ...]:
        return (
            math.log2(s.num_layers),
            math.log2(s.hidden_size),
            0.5 * s.intermediate_size / s.hidden_size,
            0.25 * math.log2(s.num_heads // s.num_kv_heads),
        )

    points = [coords(s) for s in shapes]
    remaining = list(range(len(shapes)))
    first = min(remaining, key=lambda i: shapes[i].param_count())
    order = [first]
    remaining.remove(first)
    dist = {i: math.dist(points[i], points[first]) for i in remaining}
    while remaining:
        nxt = max(remaining, key=lambda i: (dist[i], -i))
        order.append(nxt)
        remaining.remove(nxt)
        for i in remaining:
            dist[i] = min(dist[i], math.dist(points[i], points[nxt]))
    return [shapes[i] for i in order]


def _available_bytes(device: str) -> float:
    """Memory a profiled model may use: half of MemAvailable on a shared host, 85% of free GPU memory."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return 0.85 * free
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.5 * int(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def _needed_bytes(shape: ModelShape, config: ProfileConfig) -> float:
    b = DTYPE_BYTES[config.dtype or "fp32"]
    batch, ctx, tok = max(config.batch_sizes), max(config.contexts or (0,)), max(config.tokens)
    logits = batch * tok * shape.vocab_size * 4
    kv = batch * (ctx + tok) * shape.kv_bytes_per_token(config.dtype or "fp32") * 2  # old + concatenated
    return shape.param_count() * b + kv + 4 * logits


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text


def measure_shape(model, shape: ModelShape, config: ProfileConfig, timer) -> list[Measurement]:
    """Time every (batch, context, tokens) workload of the config on one built model."""
    out: list[Measurement] = []
    for batch in config.batch_sizes:
        for context in config.contexts or ():
            for tokens in config.tokens:
                if config.runtime == "cuda-graph":
                    forward, reset = static_workload(model, batch, context, tokens, capture=True)
                else:
                    forward, reset = eager_workload(model, batch, context, tokens)
                samples = time_repeats(
                    forward,
                    reset,
                    timer,
                    config.warmup or 0,
                    config.min_repeats or 1,
                    config.max_repeats or 1,
                    config.seconds_per_workload or 0.0,
                )
                del forward, reset
                stats = trimmed_stats(samples)
                out.append(
                    Measurement(
                        shape=shape,
                        batch_size=batch,
                        context=context,
                        tokens=tokens,
                        repeats=len(samples),
                        **stats,
                    )
                )
    return out


# ---- the run -------------------------------------------------------------------------------------
def run(config: ProfileConfig) -> Path:
    """Profile the device within the budget, fit, and write the profile file; returns its path."""
    t_start = time.perf_counter()
    import torch

    config = config.resolved()
    budget_s = config.budget_minutes * 60.0
    device = config.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DraftforgeError(
            f"device {device!r} asked for, but no CUDA device is available; use --device cpu"
        )
    device_name = local_device_name() if device.startswith("cuda") else "cpu"
    out = Path(config.out) if config.out else default_profile_path(device_name, config.dtype, config.runtime)
    if out.exists() and not config.overwrite:
        raise DraftforgeError(f"{out} exists; choose another --out or pass --overwrite")
    shapes = coverage_order(shape_grid(config))
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.dtype]
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if device.startswith("cuda"):
        timer = cuda_timer
    else:
        timer = thread_timer if config.clock == "thread" else cpu_timer
    # Keep time for fitting and writing: the cross-validated fit takes a few seconds.
    deadline = t_start + budget_s - min(20.0, 0.1 * budget_s)
    skipped: list[dict[str, Any]] = []
    costs: list[tuple[float, float]] = []  # (weight bytes + offset, seconds) per measured shape
    available = _available_bytes(device)
    _warm_up(config, torch_dtype)  # one-time import and kernel start-up costs must not inflate estimates
    # shape -> one list of measurements (its workloads) per pass
    results: dict[ModelShape, list[list[Measurement]]] = {}
    passes = config.passes or 1
    try:
        with _progress(
            config.progress, budget_s, f"profiling {device_name} {config.dtype} {config.runtime}"
        ) as bar:
            for p in range(passes):
                # pass p may run until its share of the budget; later passes re-measure what the
                # first one measured, at another time, to average out load drift on a shared host
                pass_deadline = t_start + (deadline - t_start) * (p + 1) / passes
                todo = shapes if p == 0 else [s for s in shapes if s in results]
                for shape in todo:
                    now = time.perf_counter()
                    bar(now - t_start, f"pass {p + 1}/{passes}, {len(results)} shapes; {shape.describe()}")
                    size = shape.weight_bytes(config.dtype) + 2e7
                    late = now >= pass_deadline or now + _estimate_cost(costs, size) > pass_deadline
                    if late and (costs or p > 0):  # the first shape is always measured
                        if p == 0:
                            skipped.append({"shape": shape.to_dict(), "reason": "time budget"})
                        continue
                    if _needed_bytes(shape, config) > available:
                        skipped.append({"shape": shape.to_dict(), "reason": "does not fit in memory"})
                        continue
                    reason = _measure_one(shape, config, torch_dtype, timer, results)
                    if reason is None:
                        costs.append((size, time.perf_counter() - now))
                    elif p == 0:
                        skipped.append({"shape": shape.to_dict(), "reason": reason})
                        failures = [x for x in skipped if x["reason"].startswith("failed")]
                        if not results and len(failures) >= 3:  # do not burn the budget on a broken runtime
                            raise DraftforgeError(
                                f"{config.runtime} failed on the first {len(failures)} shapes "
                                f"({failures[0]['reason']}); use --runtime eager"
                            )
            bar(time.perf_counter() - t_start, f"{len(results)} shapes; fitting")
        measurements = [m for runs in results.values() for m in combine_passes(runs)]
        if not measurements:
            raise DraftforgeError(
                f"no shape could be measured within {config.budget_minutes} minutes "
                f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else 'none'}); "
                "raise --budget-minutes or shrink the grid"
            )
        fingerprint = _fingerprint(device, device_name, config)
        obj = build_profile(measurements, skipped, config, fingerprint, time.perf_counter() - t_start)
    finally:
        torch.set_num_threads(previous_threads)
    from draftforge.files import write_json

    obj["elapsed_s"] = time.perf_counter() - t_start
    return write_json(out, obj)


def _warm_up(config: ProfileConfig, torch_dtype) -> None:
    """Build and run a tiny model of the configured family once (imports, allocator, kernels)."""
    tiny = ModelShape(
        num_layers=1,
        hidden_size=64,
        num_heads=1,
        num_kv_heads=1,
        intermediate_size=64,
        vocab_size=64,
        family=config.family,
    )
    model = build_model(tiny, torch_dtype, config.device)
    forward, reset = eager_workload(model, 1, 4, 1)
    reset()
    forward()


def _measure_one(shape, config: ProfileConfig, torch_dtype, timer, results) -> str | None:
    """Build `shape`, time its workloads, append them to `results[shape]`; free the model.

    Returns None, or why the shape was skipped (out of memory; any failure of a cuda-graph capture).
    """
    import torch

    model = None
    try:
        model = build_model(shape, torch_dtype, config.device)
        results.setdefault(shape, []).append(measure_shape(model, shape, config, timer))
        return None
    except Exception as exc:  # a shape that fails is recorded, not fatal
        if not (_is_oom(exc) or config.runtime == "cuda-graph"):
            raise
        return "does not fit in memory" if _is_oom(exc) else f"failed: {str(exc).splitlines()[0][:200]}"
    finally:
        del model
        gc.collect()
        if config.device.startswith("cuda"):
            torch.cuda.empty_cache()


def combine_passes(runs: list[list[Measurement]]) -> list[Measurement]:
    """One measurement per workload from several passes: the lowest per-pass median (load from
    other processes only ever adds time), the widest p10-p90 band, all repeats, and every pass's
    median kept in `pass_medians_s`."""
    if len(runs) == 1:
        return runs[0]
    out = []
    for same in zip(*runs, strict=True):
        best = min(same, key=lambda m: m.median_s)
        out.append(
            dataclasses.replace(
                best,
                p10_s=min(m.p10_s for m in same),
                p90_s=max(m.p90_s for m in same),
                repeats=sum(m.repeats for m in same),
                pass_medians_s=tuple(m.median_s for m in same),
            )
        )
    return out


def _estimate_cost(costs: list[tuple[float, float]], size: float) -> float:
    """Seconds to build and time a shape of `size` bytes, from the median seconds-per-byte so far."""
    if not costs:
        return 0.0
    rates = sorted(sec / b for b, sec in costs)
    return rates[len(rates) // 2] * size


def _fingerprint(device: str, device_name: str, config: ProfileConfig) -> dict[str, Any]:
    from draftforge.provenance import device_fingerprint

    info = dict(device_fingerprint(device))
    info["name"] = device_name
    info["threads"] = config.threads if device == "cpu" else None
    info["clock"] = "cuda-events" if device.startswith("cuda") else config.clock
    return info


def build_profile(
    measurements: list[Measurement],
    skipped: list[dict[str, Any]],
    config: ProfileConfig,
    fingerprint: dict[str, Any],
    elapsed_s: float,
) -> dict[str, Any]:
    """The `draftforge.profile/1` object: provenance, settings, measurements, fitted model, errors."""
    from draftforge.latency.features import FEATURES
    from draftforge.latency.fit import fit_model, held_out_report
    from draftforge.provenance import library_versions, now_iso

    name = str(fingerprint["name"])
    model = fit_model(measurements, config.dtype or "fp32", config.runtime, name)
    try:
        report: dict[str, Any] | None = held_out_report(
            measurements, config.dtype or "fp32", folds=config.folds
        )
    except DraftforgeError as exc:
        report = {"method": "not computed", "reason": str(exc)}
    settings = dataclasses.asdict(config)
    for key in ("out", "overwrite", "progress"):
        settings.pop(key)
    if config.shapes is not None:
        settings["shapes"] = [s.to_dict() for s in config.shapes]
    return {
        "schema": PROFILE_SCHEMA,
        "created": now_iso(),
        "versions": library_versions(),
        "device": fingerprint,
        "dtype": config.dtype,
        "runtime": config.runtime,
        "settings": settings,
        "elapsed_s": elapsed_s,
        "measurements": [m.to_dict() for m in measurements],
        "skipped": skipped,
        "model": {
            "kind": "nnls-relative",
            "features": {n: {"kind": k, "unit": u, "meaning": d} for n, (k, u, d) in FEATURES.items()},
            "coefficients": dict(model.coefficients),
        },
        "error_report": report,
        "spec_sheet": _spec_sheet_comparison(measurements, config, name),
        "calibrated_spec_sheet": _calibrated(measurements, config, name),
    }


def _calibrated(measurements: list[Measurement], config: ProfileConfig, name: str) -> dict[str, Any]:
    """The spec-sheet model's constants fitted to these measurements, and its in-sample error."""
    from draftforge.latency.fit import calibrate_analytic, calibrated_summary, evaluate_model

    model = calibrate_analytic(measurements, config.dtype or "fp32", config.runtime, device=name)
    return {**calibrated_summary(model), "in_sample": evaluate_model(model, measurements)}


def _spec_sheet_comparison(measurements: list[Measurement], config: ProfileConfig, name: str) -> dict | None:
    """How far the catalog spec-sheet model is from the measurements (catalog GPUs only)."""
    from draftforge.catalog import get_hardware
    from draftforge.latency.analytic import AnalyticLatencyModel
    from draftforge.latency.fit import evaluate_model

    try:
        hw = get_hardware(name)
    except DraftforgeError:
        return None
    if not hw.has_spec_sheet:
        return None
    spec = AnalyticLatencyModel(hardware=hw, dtype=config.dtype or "bf16", runtime=config.runtime)
    return evaluate_model(spec, measurements)


class _progress:
    """A rich progress bar over the time budget (ETA = budget left), or nothing when disabled."""

    def __init__(self, enabled: bool, total_s: float, title: str) -> None:
        self.enabled, self.total_s, self.title = enabled, total_s, title
        self._progress = None

    def __enter__(self) -> Callable[[float, str], None]:
        if not self.enabled:
            return lambda elapsed, text: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            transient=False,
        )
        self._progress.start()
        task = self._progress.add_task(self.title, total=self.total_s, status="")

        def update(elapsed: float, text: str) -> None:
            self._progress.update(task, completed=min(elapsed, self.total_s), status=text)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
