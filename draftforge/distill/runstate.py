"""Run state of a distillation: checkpoints (DeepSpeed + data position + RNG), the metrics log,
progress bars and small collective helpers. Written and read at optimizer-step boundaries only."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from draftforge.distill.engine import Dist
from draftforge.errors import DraftforgeError

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # micro-batches consumed by this rank (the data position)
    tokens: int = 0  # tokens trained on, all ranks


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# ---- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(engine, out: Path, state: TrainState, keep: int, dist: Dist) -> str:
    """A DeepSpeed checkpoint (weights, optimizer, scheduler) with the data position and RNG states."""
    tag = f"step{state.step:07d}"
    client = {
        "train_state": asdict(state),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    }
    engine.save_checkpoint(str(out / CHECKPOINTS), tag=tag, client_state=client)
    barrier()
    if dist.is_main:
        tags = sorted(
            p.name for p in (out / CHECKPOINTS).iterdir() if p.is_dir() and p.name.startswith("step")
        )
        for old in tags[:-keep]:
            shutil.rmtree(out / CHECKPOINTS / old, ignore_errors=True)
    return tag


def load_checkpoint(engine, out: Path) -> TrainState:
    path, client = engine.load_checkpoint(
        str(out / CHECKPOINTS), load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise DraftforgeError(f"could not load a checkpoint from {out / CHECKPOINTS}")
    torch.set_rng_state(client["torch_rng"])
    random.setstate(client["python_rng"])
    return TrainState(**client["train_state"])


# ---- logging -------------------------------------------------------------------------------------
class MetricsLog:
    """metrics.jsonl (and TensorBoard when asked), written by rank 0 only; a resumed run first drops
    the lines logged after its checkpoint so the log has one entry per step."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.path = out / METRICS
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DraftforgeError(
                    "output.tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {
            "step": step,
            **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()},
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)


class NullProgress:
    def update(self, **_: Any) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    def __init__(self, total: int, done: int, description: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        )
        self.task = self.p.add_task(description, total=total, completed=done, info="")
        self.p.start()

    def update(self, **kw: Any) -> None:
        self.p.update(self.task, **kw)

    def stop(self) -> None:
        self.p.stop()


def peak_flops(device: str) -> float | None:
    """The catalog's dense bf16 peak for the local GPU (for MFU), None on CPU or unknown GPUs."""
    if not device.startswith("cuda"):
        return None
    from draftforge.catalog import list_hardware

    name = torch.cuda.get_device_name(torch.device(device)).lower()
    for hw in sorted(list_hardware(), key=lambda h: -len(h.name)):
        if hw.kind == "gpu" and any(a in name for a in (hw.name, *hw.aliases)):
            return hw.peak_flops
    return None


def mean_over_ranks(value: float, dist: Dist) -> float:
    if dist.world == 1:
        return value
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64)
    tdist.all_reduce(t)
    return float(t) / dist.world
