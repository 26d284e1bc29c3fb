"""How well do latency models predict shapes they never saw? Fitted (NNLS) vs calibrated spec-sheet.

Profiles this machine's CPU on a training grid and a disjoint held-out grid (no layer count and no
width of the held-out grid is in the training grid), in one interleaved run so that load drift on
a shared host hits both alike. Then, side by side on the held-out points:
  - the fitted model (non-negative least squares on physical features, fitted on training points),
  - the spec-sheet model with its constants calibrated on the same training points,
and prints MAPE, share within ±10% and worst error for each. Also prints the profile's own
grouped k-fold report (train points only).

    python scripts/bench_latency_model.py --budget-minutes 8 --out /tmp/bench-latency
"""

from __future__ import annotations

import argparse
import json
import time

TRAIN_LAYERS = (1, 2, 4, 6, 8, 12, 16)
TRAIN_HIDDEN = (256, 512, 768, 1024, 1536)
HELD_LAYERS = (3, 5, 10)
HELD_HIDDEN = (384, 640, 1280)


def shapes_for(layers, hidden, max_params: int, vocab: int):
    from draftforge.shapes import ModelShape

    out = []
    for i, n in enumerate(layers):
        for j, h in enumerate(hidden):
            heads = h // 64
            # alternate FFN ratio and GQA so both vary within each grid
            ratio, groups = ((2.75, 1), (4.0, 4))[(i + j) % 2]
            groups = groups if heads % groups == 0 else 1
            shape = ModelShape(
                num_layers=n,
                hidden_size=h,
                num_heads=heads,
                num_kv_heads=heads // groups,
                intermediate_size=int(round(ratio * h / 64)) * 64,
                vocab_size=vocab,
            )
            if shape.param_count() <= max_params:
                out.append(shape)
    return out


def measure_outside(target: str, profile_path):
    """Time a catalog target's shape (deeper, other vocab, tied head) with the profile's settings, two passes."""
    import torch

    from draftforge.catalog import get_target
    from draftforge.latency.model import read_profile
    from draftforge.latency.profiler import ProfileConfig, combine_passes, measure_shape
    from draftforge.latency.workloads import build_model, cpu_timer, thread_timer

    settings = read_profile(profile_path).raw["settings"]
    config = ProfileConfig(
        device="cpu",
        threads=settings["threads"],
        contexts=tuple(settings["contexts"]),
        tokens=tuple(settings["tokens"]),
        progress=False,
    ).resolved()
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads or 1)
    shape = get_target(target).shape
    runs = []
    for _ in range(2):
        model = build_model(shape, torch.float32, "cpu")
        runs.append(
            measure_shape(model, shape, config, thread_timer if config.clock == "thread" else cpu_timer)
        )
        del model
    torch.set_num_threads(previous)
    return combine_passes(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=8.0)
    parser.add_argument("--out", required=True, help="folder for the profile and the result JSON (new)")
    parser.add_argument("--max-params", type=int, default=200_000_000)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--outside",
        default="smollm2-135m",
        help="catalog target measured as an out-of-grid check ('' to skip)",
    )
    args = parser.parse_args()

    from draftforge.files import ensure_new_dir, write_json
    from draftforge.latency.fit import calibrate_analytic, calibrated_summary, evaluate_model, fit_model
    from draftforge.latency.model import read_profile
    from draftforge.latency.profiler import ProfileConfig, run
    from draftforge.provenance import cpu_model, library_versions, now_iso

    out = ensure_new_dir(args.out)
    train = shapes_for(TRAIN_LAYERS, TRAIN_HIDDEN, args.max_params, args.vocab_size)
    held = shapes_for(HELD_LAYERS, HELD_HIDDEN, args.max_params, args.vocab_size)
    start = time.perf_counter()
    path = run(
        ProfileConfig(
            device="cpu",
            budget_minutes=args.budget_minutes,
            out=str(out / "profile.json"),
            shapes=tuple(train + held),
            threads=args.threads,
        )
    )
    prof = read_profile(path)
    held_groups = {(s.num_layers, s.hidden_size) for s in held}
    train_m = [m for m in prof.measurements if m.group not in held_groups]
    held_m = [m for m in prof.measurements if m.group in held_groups]
    if len({m.group for m in train_m}) < 3 or not held_m:
        raise SystemExit(
            f"too few shapes measured ({len(train_m)} train, {len(held_m)} held-out points); "
            "raise --budget-minutes"
        )
    outside = measure_outside(args.outside, path) if args.outside else []
    fitted = fit_model(train_m, prof.dtype, prof.runtime, "cpu")
    calibrated = calibrate_analytic(train_m, prof.dtype, prof.runtime, device="cpu", source=str(path))
    rows = {
        "fitted (NNLS)": evaluate_model(fitted, held_m),
        "spec-sheet, calibrated": evaluate_model(calibrated, held_m),
    }
    if outside:
        rows[f"fitted, {args.outside} (out of grid)"] = evaluate_model(fitted, outside)
        rows[f"calibrated, {args.outside} (out of grid)"] = evaluate_model(calibrated, outside)
    from draftforge.latency.fit import held_out_report

    cv = held_out_report(train_m, prof.dtype)
    cv.pop("predicted_s")
    result = {
        "schema": "draftforge.bench-latency/1",
        "created": now_iso(),
        "versions": library_versions(),
        "cpu": cpu_model(),
        "threads": args.threads,
        "clock": prof.raw["device"].get("clock"),
        "profile": str(path),
        "elapsed_s": time.perf_counter() - start,
        "train": {"groups": len({m.group for m in train_m}), "points": len(train_m)},
        "held_out": {"groups": len({m.group for m in held_m}), "points": len(held_m)},
        "results": rows,
        "train_grouped_kfold": cv,
        "calibrated_spec_sheet": calibrated_summary(calibrated),
        "coefficients": fitted.coefficients,
    }
    write_json(out / "result.json", result)
    print(f"CPU: {cpu_model()}, {args.threads} thread(s), fp32 eager, clock {result['clock']}")
    print(
        f"train: {result['train']['groups']} (layers, hidden) combinations, {len(train_m)} points; "
        f"held-out (disjoint layers and widths): {result['held_out']['groups']} combinations, {len(held_m)} points"
    )
    print(f"{'model':<40} {'MAPE':>7} {'within ±10%':>12} {'within ±20%':>12} {'worst':>8}")
    for name, r in rows.items():
        print(
            f"{name:<40} {r['mape']:>7.1%} {r['within_10pct']:>12.0%} {r['within_20pct']:>12.0%} "
            f"{r['worst_error']:>+8.0%}"
        )
    print(
        f"fitted, grouped 5-fold on the training points: MAPE {cv['mape']:.1%}, "
        f"{cv['within_10pct']:.0%} within ±10%"
    )
    ratio = rows["spec-sheet, calibrated"]["mape"] / max(rows["fitted (NNLS)"]["mape"], 1e-12)
    print(f"MAPE ratio calibrated spec-sheet / fitted: {ratio:.2f}x")
    print(json.dumps({"result": str(out / "result.json")}))


if __name__ == "__main__":
    main()
