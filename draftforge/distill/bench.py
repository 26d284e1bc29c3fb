"""Throughput of the distillation trainer against a plain PyTorch loop (used by scripts/bench_distill.py
and scripts/gpu_distill.py).

Both sides use the same recipe: same teacher and student (same initialisation), same batches, the
same `loss_step` (teacher forward under no_grad, student forward, the recipe's KD loss), AdamW with
the same parameter groups, warm-up + cosine schedule and gradient clipping, and the same precision.
The plain loop is what a user would write by hand; the trainer adds DeepSpeed, logging, evaluation
and checkpointing. Both are timed in steady state, from the end of the first (warm-up) optimizer
step to the end of the last; the trainer's figure comes from its metrics log (tokens and elapsed
seconds logged every step), so its final evaluation and checkpoint are not in it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from draftforge.distill.recipe import Recipe, recipe_from_dict


def bench_recipe(
    teacher_shape: dict[str, Any],
    student_shape: dict[str, Any],
    *,
    out_dir: str,
    steps: int,
    micro_batch: int,
    seq_len: int,
    precision: str = "fp32",
    device: str = "cpu",
    init: str = "layers",
    threads: int | None = None,
) -> Recipe:
    """A recipe with a random teacher of `teacher_shape` (no download), a student of `student_shape`,
    Python's pydoc topics as data; evaluation and checkpointing only at the end."""
    raw = {
        "name": "bench",
        "target": {"random_shape": teacher_shape, "seed": 0, "init_std": 0.1},
        "draft": {"shape": student_shape},
        "init": {"method": init},
        "data": {
            "source": "pydoc:topics",
            "kind": "text",
            "seq_len": seq_len,
            "eval_records": 4,
            "max_records": 200,
        },
        "loss": {"terms": {"forward_kl": 1.0}},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "max_steps": steps, "micro_batch_size": micro_batch},
        "deepspeed": {"zero_stage": 0, "precision": precision, "device": device, "threads": threads},
        "eval": {"every_steps": steps, "max_batches": 1},
        "output": {"dir": out_dir, "save_every": steps, "log_every": 1},
    }
    return recipe_from_dict(raw)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop_tokens_per_s(recipe: Recipe) -> dict[str, float]:
    """Tokens/s (wall clock) and tokens per process-CPU-second of a hand-written PyTorch loop doing the
    recipe's work (no DeepSpeed)."""
    from draftforge.assets import cache_dir
    from draftforge.distill.data import BatchSampler, prepare_data
    from draftforge.distill.engine import lr_lambda, make_optimizer, setup_distributed
    from draftforge.distill.train import build_student, load_teacher, loss_step

    dist = setup_distributed(recipe.deepspeed)
    torch.manual_seed(recipe.seed)
    teacher, tokenizer = load_teacher(recipe, dist.device, 1)
    teacher.eval().requires_grad_(False)
    data = prepare_data(
        recipe.data,
        recipe.base_dir,
        tokenizer,
        teacher_id=recipe.target_spec(),
        cache=cache_dir() / "distill-data",
    )
    shape = recipe.draft_shape()
    student, _ = build_student(recipe, shape, teacher, data)
    student.to(dist.device).train()
    opt_cfg = recipe.optim
    optimizer = make_optimizer(student, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(opt_cfg.warmup_steps, opt_cfg.max_steps, opt_cfg.min_lr_ratio)
    )
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.deepspeed.precision)
    device_type = "cuda" if dist.device.startswith("cuda") else "cpu"
    if autocast_dtype is not None:
        teacher.to(autocast_dtype)
    sampler = BatchSampler(data.train_ids.shape[0], opt_cfg.micro_batch_size, recipe.seed)
    trainable = [p for p in student.parameters() if p.requires_grad]
    micro = 0
    t0 = cpu0 = 0.0
    for step in range(opt_cfg.max_steps):
        if step == 1:  # the first step is warm-up (allocations, lazy initialisation)
            _sync(dist.device)
            t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(opt_cfg.grad_accum):
            idx = sampler.indices(micro)
            ids, mask = data.train_ids[idx].to(dist.device), data.train_mask[idx].to(dist.device)
            with torch.autocast(
                device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                loss, _ = loss_step(student, teacher, ids, mask, recipe.loss)
            (loss / opt_cfg.grad_accum).backward()
            micro += 1
        if opt_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, opt_cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # the trainer reads the loss every step too
    _sync(dist.device)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tokens = (opt_cfg.max_steps - 1) * opt_cfg.grad_accum * opt_cfg.micro_batch_size * recipe.data.seq_len
    return {"tokens_per_s": tokens / elapsed, "tokens_per_cpu_s": tokens / cpu}


def trainer_tokens_per_s(recipe: Recipe) -> dict[str, float]:
    """Run the real trainer on `recipe`; tokens/s of its training loop (from metrics.jsonl) and the
    MFU it logged on GPU."""
    from draftforge.distill.train import METRICS, run

    result = run(recipe, progress=False)
    rows = [json.loads(line) for line in (Path(result.out_dir) / METRICS).read_text().splitlines()]
    by_step = {r["step"]: r for r in rows if "elapsed_s" in r}
    first, last = by_step[1], by_step[result.steps]
    tokens = last["tokens"] - first["tokens"]
    return {
        "tokens_per_s": tokens / (last["elapsed_s"] - first["elapsed_s"]),
        "tokens_per_cpu_s": tokens / (last["cpu_s"] - first["cpu_s"]),
        "mfu": last.get("mfu"),
        "steps": result.steps,
    }
