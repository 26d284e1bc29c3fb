"""Benchmark the distillation trainer on this machine.

1. Throughput: the trainer (DeepSpeed engine, logging, checkpointing) vs a plain PyTorch loop with the
   same teacher, student, batches, loss, optimizer and precision, interleaved (plain, trainer, plain,
   trainer, ...) so that load from other processes hits both alike; prints the median ratios of
   wall-clock tokens/s and of tokens per process-CPU-second (robust to load from other users).
2. Acceptance: runs recipes/smollm2-cpu.yaml (SmolLM2-135M-Instruct teacher, offline) and reports the
   acceptance proxy α and greedy agreement at initialisation and after training, with wall time.

    python scripts/bench_distill.py --out bench-out            # both parts (~15 minutes on 2 cores)
    python scripts/bench_distill.py --out bench-out --skip-smollm2
Writes bench-out/bench_distill.json (draftforge.bench-distill/1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TEACHER = {
    "family": "llama",
    "num_layers": 4,
    "hidden_size": 256,
    "num_heads": 8,
    "num_kv_heads": 4,
    "intermediate_size": 768,
    "vocab_size": 8192,
    "max_positions": 512,
}
STUDENT = {**TEACHER, "num_layers": 1}


def throughput(steps: int, repeats: int, micro_batch: int, seq_len: int, threads: int, work: Path) -> dict:
    from draftforge.distill.bench import bench_recipe, plain_loop_tokens_per_s, trainer_tokens_per_s

    plain, trainer = [], []
    for i in range(repeats):
        recipe = bench_recipe(
            TEACHER,
            STUDENT,
            out_dir=str(work / f"trainer{i}"),
            steps=steps,
            micro_batch=micro_batch,
            seq_len=seq_len,
            threads=threads,
        )
        plain.append(plain_loop_tokens_per_s(recipe))
        trainer.append(trainer_tokens_per_s(recipe))
        print(
            f"repeat {i}: plain {plain[-1]['tokens_per_s']:,.0f} tok/s, trainer {trainer[-1]['tokens_per_s']:,.0f} "
            f"tok/s (wall ratio {trainer[-1]['tokens_per_s'] / plain[-1]['tokens_per_s']:.3f}, CPU-time ratio "
            f"{trainer[-1]['tokens_per_cpu_s'] / plain[-1]['tokens_per_cpu_s']:.3f})",
            flush=True,
        )
    wall = [t["tokens_per_s"] / p["tokens_per_s"] for t, p in zip(trainer, plain, strict=True)]
    cpu = [t["tokens_per_cpu_s"] / p["tokens_per_cpu_s"] for t, p in zip(trainer, plain, strict=True)]
    return {
        "teacher": TEACHER,
        "student": STUDENT,
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "steps": steps,
        "precision": "fp32",
        "threads": threads,
        "plain": plain,
        "trainer": trainer,
        "wall_ratios": wall,
        "cpu_time_ratios": cpu,
        "median_wall_ratio": statistics.median(wall),
        "median_cpu_time_ratio": statistics.median(cpu),
    }


def smollm2(work: Path, extra_sets: list[str]) -> dict:
    """Run recipes/smollm2-cpu.yaml through the CLI (exactly what a user runs) and time it."""
    out = work / "smollm2-cpu"
    cmd = [
        sys.executable,
        "-m",
        "draftforge",
        "distill",
        str(REPO / "recipes" / "smollm2-cpu.yaml"),
        "--out",
        str(out),
        "--json",
        *(a for s in extra_sets for a in ("--set", s)),
    ]
    # a fresh process group: drop the rendezvous variables this process set for its own runs
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"smollm2-cpu run failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout)
    res["wall_s"] = wall
    res["metrics"] = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "eval/alpha" in line
    ]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="new folder for results")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the throughput part (1: no OpenMP spin-waits inflating CPU time under load)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--smollm2-set", action="append", default=[], help="--set override for the smollm2 run")
    args = ap.parse_args()

    from draftforge.files import ensure_new_dir, write_json
    from draftforge.provenance import device_fingerprint, library_versions, now_iso

    out = ensure_new_dir(args.out)
    result: dict = {
        "schema": "draftforge.bench-distill/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint("cpu"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            result["throughput"] = throughput(
                args.steps, args.repeats, args.micro_batch, args.seq_len, args.threads, work
            )
            t = result["throughput"]
            print(
                f"trainer / plain PyTorch tokens/s: median wall-clock ratio {t['median_wall_ratio']:.3f}, "
                f"median CPU-time ratio {t['median_cpu_time_ratio']:.3f}",
                flush=True,
            )
        if not args.skip_smollm2:
            s = smollm2(out, args.smollm2_set)  # keep the draft for evaluate / assistant_model checks
            result["smollm2_cpu"] = s
            print(
                f"smollm2-cpu: alpha {s['initial_metrics']['eval/alpha']:.3f} -> {s['final_metrics']['eval/alpha']:.3f}, "
                f"greedy agreement {s['initial_metrics']['eval/greedy_agree']:.3f} -> "
                f"{s['final_metrics']['eval/greedy_agree']:.3f}, {s['steps']} steps, {s['tokens']:,} tokens, "
                f"wall {s['wall_s']:.0f} s",
                flush=True,
            )
    write_json(out / "bench_distill.json", result)
    print(f"wrote {out / 'bench_distill.json'}")


if __name__ == "__main__":
    main()
