"""Is Optuna's best as good as the exhaustive optimum? Gap (%) and time, side by side, per case.

For each (draft GPU, target, batch size, runtime) case the default search space is enumerated exactly
(every distinct shape scored by the same models) and compared with the Optuna study's best after the
default trial count, for several seeds. Gap = (study best latency per token / exhaustive optimum − 1).
Exits non-zero when any gap exceeds --max-gap-pct (1% by default).

    python scripts/bench_search.py                 # all cases, seeds 0-4
    python scripts/bench_search.py --seeds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from draftforge.search import SearchConfig, exhaustive, run_study, setup

#: (draft GPU, target, batch size, runtime, target GPU or None)
CASES: tuple[tuple[str, str, int, str, str | None], ...] = (
    ("a100", "llama-65b", 1, "eager", None),
    ("a100", "llama-65b", 32, "eager", None),
    ("a100", "llama-65b", 1, "cuda-graph", None),
    ("h100", "llama-3.1-70b", 1, "eager", None),
    ("h100", "opt-66b", 8, "cuda-graph", None),
    ("l4", "llama-2-70b", 1, "eager", "a100"),
    ("h200", "qwen2.5-72b", 4, "eager", None),
    ("a10g", "llama-7b", 1, "eager", None),
)


def bench_case(
    gpu: str, target: str, batch: int, runtime: str, target_gpu: str | None, seeds: int, trials: int
) -> dict:
    config = SearchConfig(
        gpu=gpu,
        target=target,
        batch_sizes=(batch,),
        runtime=runtime,  # type: ignore[arg-type]
        target_gpu=target_gpu,
        trials=trials,
    )
    problem = setup(config).problems[0]
    t0 = time.perf_counter()
    every = exhaustive(problem)
    t_exhaustive = time.perf_counter() - t0
    optimum = min(every, key=lambda c: c.latency_per_token_s)
    gaps, times, bests = [], [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        seen = run_study(problem, trials, seed=seed)
        times.append(time.perf_counter() - t0)
        best = min(seen, key=lambda c: c.latency_per_token_s)
        gaps.append(100.0 * (best.latency_per_token_s / optimum.latency_per_token_s - 1.0))
        bests.append(best.shape.describe())
    return {
        "gpu": gpu,
        "target": target,
        "batch_size": batch,
        "runtime": runtime,
        "target_gpu": target_gpu or gpu,
        "space_shapes": len(every),
        "optimum": optimum.shape.describe(),
        "optimum_latency_per_token_ms": optimum.latency_per_token_s * 1e3,
        "optimum_speedup": optimum.speedup,
        "trials": trials,
        "seeds": seeds,
        "gap_pct": gaps,
        "max_gap_pct": max(gaps),
        "mean_gap_pct": statistics.mean(gaps),
        "study_bests": bests,
        "exhaustive_s": t_exhaustive,
        "study_s_median": statistics.median(times),
        "time_ratio_study_over_exhaustive": statistics.median(times) / t_exhaustive,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=SearchConfig.trials, help="default: the CLI's default")
    parser.add_argument("--max-gap-pct", type=float, default=1.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    header = (
        f"{'draft gpu':10} {'target':14} {'batch':>5} {'runtime':10} {'shapes':>6} {'exhaustive optimum':26} "
        f"{'max gap %':>9} {'mean gap %':>10} {'exh s':>6} {'study s':>7} {'ratio':>5}"
    )
    print(header)
    for case in CASES:
        r = bench_case(*case, seeds=args.seeds, trials=args.trials)
        rows.append(r)
        print(
            f"{r['gpu']:10} {r['target']:14} {r['batch_size']:>5} {r['runtime']:10} {r['space_shapes']:>6} "
            f"{r['optimum']:26} {r['max_gap_pct']:>9.3f} {r['mean_gap_pct']:>10.3f} {r['exhaustive_s']:>6.2f} "
            f"{r['study_s_median']:>7.2f} {r['time_ratio_study_over_exhaustive']:>5.2f}",
            flush=True,
        )
    worst = max(r["max_gap_pct"] for r in rows)
    print(
        f"worst gap over {len(rows)} cases x {args.seeds} seeds at {args.trials} trials: {worst:.3f}% "
        f"(limit {args.max_gap_pct}%)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"cases": rows, "worst_gap_pct": worst, "trials": args.trials, "seeds": args.seeds},
                f,
                indent=2,
            )
    return 0 if worst <= args.max_gap_pct else 1


if __name__ == "__main__":
    sys.exit(main())
