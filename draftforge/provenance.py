"""Provenance recorded in every file draftforge writes: library versions, device, date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata

_LIBRARIES = ("draftforge", "torch", "transformers", "deepspeed", "optuna", "datasets", "huggingface_hub")


def library_versions(names: tuple[str, ...] = _LIBRARIES) -> dict[str, str | None]:
    """Installed versions of the libraries that influence results (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def now_iso() -> str:
    """UTC timestamp, second precision, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(device: str = "cpu") -> dict[str, object]:
    """Who measured: host CPU, threads, and the GPU name and driver when `device` is CUDA."""
    import torch

    info: dict[str, object] = {
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        info.update(
            gpu=props.name,
            gpu_memory_bytes=int(props.total_memory),
            cuda=torch.version.cuda,
            driver=_nvidia_driver(),
            capability=f"{props.major}.{props.minor}",
        )
    return info


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            first = f.readline()
        for token in first.split():
            if token.count(".") >= 1 and token.replace(".", "").isdigit():
                return token
    except OSError:
        return None
    return None
