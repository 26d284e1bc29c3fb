"""GPU check of the distillation trainer: tokens/s and MFU of a SmolLM2-sized student (bf16), and the
trainer / plain-PyTorch-loop throughput ratio, side by side in one run (~2 minutes on one H100/H200).

The teacher is a random model of SmolLM2-135M's shape (no download needed on the device machine);
FLOPs do not depend on the weights. MFU = achieved model FLOP/s / the catalog's dense bf16 peak:
student training counts 6 FLOPs per parameter per token (non-embedding parameters and LM head), the
teacher's forward 2 per parameter; both figures are reported.

    python scripts/gpu_distill.py --out gpu-distill-out           # CUDA: full size
    python scripts/gpu_distill.py --out gpu-distill-out --cpu     # reduced mode on CPU (tiny models)
Writes <out>/gpu_distill.json (draftforge.gpu-distill/1).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SMOLLM2 = {
    "family": "llama",
    "num_layers": 30,
    "hidden_size": 576,
    "num_heads": 9,
    "num_kv_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "max_positions": 8192,
    "tie_embeddings": True,
}
TINY = {
    "family": "llama",
    "num_layers": 2,
    "hidden_size": 64,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 320,
    "max_positions": 512,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", action="store_true", help="reduced mode on CPU with tiny models")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro-batch", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    args = ap.parse_args()

    import torch

    from draftforge.distill.bench import bench_recipe, plain_loop_tokens_per_s, trainer_tokens_per_s
    from draftforge.distill.train import peak_flops
    from draftforge.files import ensure_new_dir, write_json
    from draftforge.provenance import device_fingerprint, library_versions, now_iso
    from draftforge.shapes import ModelShape

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        raise SystemExit("no CUDA device: pass --cpu for the reduced mode")
    device = "cuda" if cuda else "cpu"
    teacher = SMOLLM2 if cuda else TINY
    student = teacher  # a SmolLM2-sized student
    steps = args.steps or (40 if cuda else 4)
    micro = args.micro_batch or (16 if cuda else 2)
    seq = args.seq_len or (512 if cuda else 64)
    precision = "bf16" if cuda else "fp32"
    out = ensure_new_dir(args.out)

    s_shape, t_shape = ModelShape.from_dict(student), ModelShape.from_dict(teacher)
    student_flops = 6 * s_shape.non_embedding_params() + 6 * s_shape.vocab_size * s_shape.hidden_size
    teacher_flops = 2 * t_shape.non_embedding_params() + 2 * t_shape.vocab_size * t_shape.hidden_size
    peak = peak_flops("cuda:0") if cuda else None

    plain, trainer = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            recipe = bench_recipe(
                teacher,
                student,
                out_dir=str(Path(tmp) / f"run{i}"),
                steps=steps,
                micro_batch=micro,
                seq_len=seq,
                precision=precision,
                device=device,
                init="random",
            )
            plain.append(plain_loop_tokens_per_s(recipe)["tokens_per_s"])
            trainer.append(trainer_tokens_per_s(recipe)["tokens_per_s"])
            print(f"repeat {i}: plain {plain[-1]:,.0f} tok/s, trainer {trainer[-1]:,.0f} tok/s", flush=True)
    tps = statistics.median(trainer)
    result = {
        "schema": "draftforge.gpu-distill/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint("cuda:0" if cuda else "cpu"),
        "mode": "full" if cuda else "cpu-reduced",
        "student_shape": student,
        "teacher_shape": teacher,
        "precision": precision,
        "micro_batch": micro,
        "seq_len": seq,
        "steps": steps,
        "plain_tokens_per_s": plain,
        "trainer_tokens_per_s": trainer,
        "ratio_of_medians": tps / statistics.median(plain),
        "student_flops_per_token": student_flops,
        "teacher_flops_per_token": teacher_flops,
        "peak_flops": peak,
        "mfu_student": tps * student_flops / peak if peak else None,
        "mfu_total": tps * (student_flops + teacher_flops) / peak if peak else None,
        "wall_s": time.perf_counter() - t0,
    }
    write_json(out / "gpu_distill.json", result)
    mfu = (
        f"MFU student {result['mfu_student']:.1%}, with teacher {result['mfu_total']:.1%}"
        if peak
        else "no MFU"
    )
    print(
        f"trainer {tps:,.0f} tok/s; trainer/plain {result['ratio_of_medians']:.3f}; {mfu}; "
        f"wrote {out / 'gpu_distill.json'}"
    )


if __name__ == "__main__":
    main()
