"""One-shot GPU profile: eager and cuda-graph, bf16, then depth vs width — under ~3 minutes.

On a CUDA machine (H100/H200): profiles the GPU for each runtime within --minutes-per-runtime,
writes `<gpu>-bf16-<runtime>.json` (draftforge.profile/1, ready to commit as a built-in profile
under draftforge/catalog/profiles/) into --out, measures deep-narrow vs shallow-wide shapes, and
writes summary.json with the held-out error of each fitted model and how far the spec-sheet model
of that GPU is from the measurements. Without CUDA it runs a reduced CPU mode (tiny grid, fp32,
eager only) so the script itself can be tested anywhere.

    python scripts/gpu_profile.py --out /tmp/gpu-profile
"""

from __future__ import annotations

import argparse
import json
import time
import traceback


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="new folder for the profiles and summary.json")
    parser.add_argument("--minutes-per-runtime", type=float, default=1.1)
    parser.add_argument("--runtimes", default="eager,cuda-graph")
    parser.add_argument("--skip-depth-vs-width", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from draftforge.files import ensure_new_dir, write_json
    from draftforge.latency.model import local_device_name, read_profile
    from draftforge.latency.profiler import ProfileConfig, run
    from draftforge.provenance import device_fingerprint, library_versions, now_iso

    start = time.perf_counter()
    out = ensure_new_dir(args.out)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    name = local_device_name()
    summary: dict = {
        "schema": "draftforge.gpu-profile/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint(device),
        "device_name": name,
        "mode": "gpu" if cuda else "reduced-cpu",
        "profiles": {},
        "errors": {},
    }
    runtimes = [r for r in args.runtimes.split(",") if r] if cuda else ["eager"]
    for runtime in runtimes:
        if cuda:
            config = ProfileConfig(
                device="cuda",
                dtype="bf16",
                runtime=runtime,  # type: ignore[arg-type]
                budget_minutes=args.minutes_per_runtime,
                batch_sizes=(1, 4),
                out=str(out / f"{name}-bf16-{runtime}.json"),
                progress=False,
            )
        else:  # reduced mode: a tiny grid, a few seconds
            config = ProfileConfig(
                device="cpu",
                dtype="fp32",
                runtime="eager",
                budget_minutes=min(0.3, args.minutes_per_runtime),
                layers=(1, 2, 4),
                hidden=(64, 128),
                vocab_size=256,
                contexts=(16,),
                tokens=(1, 3),
                warmup=1,
                min_repeats=2,
                max_repeats=3,
                out=str(out / f"{name}-fp32-{runtime}.json"),
                progress=False,
            )
        t0 = time.perf_counter()
        try:
            path = run(config)
        except Exception as exc:  # keep the other runtime's results
            summary["errors"][runtime] = "".join(traceback.format_exception_only(exc)).strip()
            traceback.print_exc()
            continue
        prof = read_profile(path)
        report = dict(prof.error_report or {})
        report.pop("predicted_s", None)
        report.pop("worst", None)
        summary["profiles"][runtime] = {
            "path": str(path),
            "seconds": time.perf_counter() - t0,
            "measurements": len(prof.measurements),
            "skipped": len(prof.raw.get("skipped") or []),
            "skipped_reasons": sorted({s["reason"] for s in prof.raw.get("skipped") or []}),
            "held_out": report,
            "spec_sheet_vs_measured": prof.raw.get("spec_sheet"),
            "coefficients": prof.coefficients,
        }
        print(
            f"{runtime}: {len(prof.measurements)} points in {time.perf_counter() - t0:.0f} s; held-out "
            f"MAPE {report.get('mape', float('nan')):.1%}, {report.get('within_10pct', float('nan')):.0%} within ±10%"
        )
        spec = prof.raw.get("spec_sheet")
        if spec:
            print(
                f"  spec-sheet {name} model vs measured: MAPE {spec['mape']:.1%}, median bias {spec['bias']:+.0%}"
            )
    if not args.skip_depth_vs_width:
        try:
            from draftforge.latency.compare import equal_param_pairs, time_shapes

            dvw = []
            for runtime in runtimes:
                if cuda:
                    shapes = equal_param_pairs(1024, (32, 8, 2))
                    rows = time_shapes(shapes, "cuda", "bf16", runtime, context=512, rounds=2, repeats=20)
                else:
                    shapes = equal_param_pairs(64, (16, 4, 1), vocab=256)
                    rows = time_shapes(shapes, "cpu", "fp32", runtime, context=16, rounds=1, repeats=3)
                for r in rows:
                    r["runtime"] = runtime
                    r["ratio_to_shallowest"] = r["median_s"] / rows[-1]["median_s"]
                    print(
                        f"  {runtime} {r['describe']}: {r['median_s'] * 1e3:.3f} ms "
                        f"({r['ratio_to_shallowest']:.2f}x the shallowest)"
                    )
                dvw += rows
            summary["depth_vs_width"] = dvw
        except Exception as exc:
            summary["errors"]["depth_vs_width"] = "".join(traceback.format_exception_only(exc)).strip()
            traceback.print_exc()
    summary["elapsed_s"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    print(
        json.dumps(
            {"out": str(out), "elapsed_s": round(summary["elapsed_s"], 1), "errors": summary["errors"]}
        )
    )
    return summary


if __name__ == "__main__":
    main()
