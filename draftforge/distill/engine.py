"""DeepSpeed plumbing for distillation: process group, DeepSpeed config, student and teacher engines.

One code path serves a single CPU process (gloo, the tests), `torchrun`/`deepspeed` launches on
many GPUs or nodes (nccl), ZeRO stages 0–3 with optional optimizer/parameter offload, and a frozen
teacher partitioned with ZeRO-3 when it does not fit one device.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from draftforge.errors import DraftforgeError

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Dist:
    """Where this process runs: rank, world size, device string ("cpu" or "cuda:N")."""

    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_vars() -> dict[str, str]:
    """What a launcher would set for rank 0 of a one-process group on a free local port."""
    return dict(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())
    )


@contextlib.contextmanager
def single_process_env() -> Iterator[None]:
    """Without a launcher, pose as rank 0 of 1 for the duration (DeepSpeed reads these variables), then
    put the environment back: the process group, and so its port, stays alive, and processes started
    later must not inherit the variables and try to rendezvous on that port."""
    if "RANK" in os.environ:
        yield
        return
    added = _single_process_vars()
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def setup_distributed(ds) -> Dist:
    """Initialise the process group (idempotent). Without a launcher's env vars this is a
    one-process group on a free local port; the backend is nccl on CUDA and gloo on CPU."""
    import deepspeed
    import torch.distributed as dist

    want_cuda = ds.device == "cuda" or (ds.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise DraftforgeError(
            "deepspeed.device is cuda but no CUDA device is visible; set deepspeed.device cpu"
        )
    if "RANK" not in os.environ:  # a direct caller outside `single_process_env` (a benchmark process)
        os.environ.update(_single_process_vars())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = ds.backend if ds.backend != "auto" else ("nccl" if want_cuda else "gloo")
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    if want_cuda:
        torch.cuda.set_device(local_rank)
    if ds.threads is not None:
        torch.set_num_threads(ds.threads)
    device = f"cuda:{local_rank}" if want_cuda else "cpu"
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device)


def deepspeed_config(recipe, world: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for the student, from the recipe's optim and deepspeed sections."""
    ds, opt = recipe.deepspeed, recipe.optim
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": ds.device != "cpu"}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": ds.device != "cpu"}
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": opt.micro_batch_size,
        "gradient_accumulation_steps": opt.grad_accum,
        "train_batch_size": opt.micro_batch_size * opt.grad_accum * world,
        "zero_optimization": zero,
        # torch's AdamW (with DeepSpeed's CPU Adam under optimizer offload): also runs on CPU
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if opt.grad_clip > 0:
        cfg["gradient_clipping"] = opt.grad_clip
    if ds.precision == "bf16" and autocast_dtype(recipe) is None:
        cfg["bf16"] = {"enabled": True}
    elif ds.precision == "fp16":
        cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    return cfg


def autocast_dtype(recipe) -> torch.dtype | None:
    """bf16 below ZeRO-3 is torch autocast over fp32 parameters (standard PyTorch mixed precision,
    no DeepSpeed precision wrapper, the same scheme a hand-written loop uses); under ZeRO-3 the
    parameters themselves are bf16 (DeepSpeed's bf16 mode) to halve the sharded memory. fp16 always
    uses DeepSpeed's fp16 mode with dynamic loss scaling."""
    ds = recipe.deepspeed
    if ds.precision == "bf16" and ds.zero_stage < 3:
        return torch.bfloat16
    return None


def teacher_deepspeed_config(recipe, world: int) -> dict[str, Any]:
    """ZeRO-3 inference config that partitions the frozen teacher across ranks."""
    ds = recipe.deepspeed
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": recipe.optim.micro_batch_size,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "steps_per_print": 10**9,
    }
    if ds.offload_params:
        cfg["zero_optimization"]["offload_param"] = {"device": "cpu", "pin_memory": ds.device != "cpu"}
    if ds.precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif ds.precision == "fp16":
        cfg["fp16"] = {"enabled": True}
    return cfg


def lr_lambda(warmup_steps: int, max_steps: int, min_ratio: float):
    """Linear warm-up then cosine decay to `min_ratio` of the peak, as a multiplier of the peak lr."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def make_optimizer(model, recipe):
    """AdamW over the trainable parameters (no weight decay on norms and biases)."""
    opt = recipe.optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if recipe.deepspeed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=opt.lr, betas=opt.betas, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, foreach=True)


def student_engine(model, recipe, world: int):
    """Wrap the student in a DeepSpeed engine with AdamW and the warm-up + cosine schedule."""
    import deepspeed

    optimizer = make_optimizer(model, recipe)
    opt = recipe.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(opt.warmup_steps, opt.max_steps, opt.min_lr_ratio)
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(recipe, world)
    )
    return engine


def teacher_engine(model, recipe, world: int):
    """The frozen teacher: eval mode, no gradients, ZeRO-3 partitioned when `teacher_zero3`."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if not recipe.deepspeed.teacher_zero3:
        return model
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, config=teacher_deepspeed_config(recipe, world))
    engine.module.eval()
    return engine.module
