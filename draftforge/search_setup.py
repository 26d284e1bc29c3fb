"""What a search stands on: its latency models (and why each), and the Optuna study's storage.

Draft latency comes from (in this order) `--profile FILE`; this machine's cached profile when `--gpu`
names the local device (measured first when missing or with `--reprofile`); a built-in measured profile
of that GPU; or the spec-sheet model. The target's verification latency comes from the same measured
model when it runs on the same device without tensor parallelism, else from the spec sheet of
`--target-gpu` at `--tp` (default: the smallest power of two whose memory holds it). Every choice is
written into a note that search prints and records.

Storage: in memory by default; any Optuna RDB URL (sqlite:///f.db, postgresql://, mysql://) or a
journal file (`journal:PATH` or a path ending in .log/.journal), so several workers can share a study.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from draftforge.catalog import Target, get_hardware
from draftforge.errors import DraftforgeError
from draftforge.latency.model import LatencyModel

if TYPE_CHECKING:
    from draftforge.search import SearchConfig


def resolve_latency_models(config: SearchConfig) -> dict[str, Any]:
    """The draft's latency model (and the measured one, if any), the dtype, and why each was chosen.

    Draft: --profile FILE; else the local device's cached profile (measured first when missing or with
    --reprofile) when --gpu names this machine; else a built-in measured profile; else the spec sheet.
    """
    from draftforge.latency.analytic import AnalyticLatencyModel

    notes: list[str] = []
    local = _local_device(config.gpu)
    draft_gpu = local or get_hardware(config.gpu).name
    dtype = config.dtype or ("fp32" if draft_gpu == "cpu" else "bf16")
    measured: LatencyModel | None = None
    if config.profile is not None:
        from draftforge.latency.model import load_latency_model

        measured = load_latency_model(config.profile, gpu=draft_gpu)
        notes.append(f"draft latency: measured profile {config.profile} ({measured.label})")
    elif local is not None:
        measured = _local_profile(local, dtype, config, notes)
    else:
        from draftforge.latency.model import find_builtin_profile, load_latency_model

        path = find_builtin_profile(draft_gpu, dtype, config.runtime)
        if path is not None:
            measured = load_latency_model(path, gpu=draft_gpu)
            notes.append(f"draft latency: built-in measured profile {path.name} ({measured.label})")
    if measured is None:
        draft_model: LatencyModel = AnalyticLatencyModel.for_gpu(
            draft_gpu, dtype=dtype, runtime=config.runtime
        )
        notes.append(
            f"draft latency: {draft_model.label} (no measured profile for {draft_gpu} "
            f"{dtype} {config.runtime}; pass --profile FILE to use one)"
        )
    else:
        draft_model = measured

    hw = _catalog(draft_gpu)
    return {
        "draft": draft_model,
        "measured": measured,
        "dtype": dtype,
        "notes": notes,
        "draft_gpu": draft_gpu,
        "target_gpu": get_hardware(config.target_gpu).name if config.target_gpu else draft_gpu,
        "draft_memory_bytes": hw.memory_bytes if hw is not None and hw.has_spec_sheet else None,
    }


def _catalog(gpu: str):
    """The catalog entry of a device, or None for a local GPU the catalog does not know."""
    try:
        return get_hardware(gpu)
    except DraftforgeError:
        return None


def target_latency_model(
    config: SearchConfig, target: Target, batch: int, models: dict[str, Any]
) -> tuple[LatencyModel, int, str]:
    """The target's verification latency model at `batch`, its tensor-parallel degree and a note.

    The same measured model as the draft when the target runs on the same device without tensor
    parallelism; else the spec sheet of --target-gpu at --tp (default: the smallest power of two of
    that GPU whose memory holds the target's weights and KV cache at this batch size).
    """
    from draftforge.latency.analytic import AnalyticLatencyModel

    target_gpu, dtype = models["target_gpu"], models["dtype"]
    if config.tp is None:
        tp, why = _default_tp(target, target_gpu, dtype, config.runtime, batch, config.context)
    else:
        tp, why = config.tp, f"tensor parallelism {config.tp} (--tp)"
    measured = models["measured"]
    if measured is not None and target_gpu == models["draft_gpu"] and tp == 1:
        return measured, tp, f"batch {batch}: {why}; target verification: {measured.label}"
    target_hw = get_hardware(target_gpu)
    if not target_hw.has_spec_sheet:
        raise DraftforgeError(
            f"the target on {target_gpu} with tensor parallelism {tp} needs a spec sheet; "
            "pick a catalog GPU with --target-gpu or run it at --tp 1 with a profile"
        )
    model = AnalyticLatencyModel(hardware=target_hw, dtype=dtype, runtime=config.runtime, tp=tp)
    note = f"batch {batch}: {why}; target verification: {model.label}"
    if not model.fits(target.shape, batch, config.context):
        note += f" (warning: {target.name} does not fit {tp}x {target_gpu} at this batch size)"
    return model, tp, note


def _default_tp(
    target: Target, gpu: str, dtype: str, runtime: str, batch: int, context: int
) -> tuple[int, str]:
    from draftforge.latency.analytic import AnalyticLatencyModel

    hw = _catalog(gpu)
    if hw is None or not hw.has_spec_sheet:
        return 1, f"tensor parallelism 1 ({gpu} has no memory figure to size it)"
    for tp in (1, 2, 4, 8, 16, 32, 64):
        if AnalyticLatencyModel(hardware=hw, dtype=dtype, runtime=runtime, tp=tp).fits(
            target.shape, batch, context
        ):  # type: ignore[arg-type]
            return tp, (
                f"tensor parallelism {tp}: the smallest power of two of {gpu} that holds "
                f"{target.name} ({target.shape.weight_bytes(dtype) / 1e9:.0f} GB of {dtype} weights "
                f"+ KV cache); set --tp to change it"
            )
    raise DraftforgeError(f"{target.name} does not fit in 64x {gpu}; pick a larger --target-gpu")


def _local_device(gpu: str) -> str | None:
    """The catalog name of this machine's device when --gpu names it (`local`, `cpu`, or its GPU)."""
    import os
    import shutil

    key = gpu.strip().lower()
    if key in ("local", "cpu"):
        if key == "cpu":
            return "cpu"
        from draftforge.latency.model import local_device_name

        return local_device_name()
    name = get_hardware(gpu).name  # validates the GPU name first
    # Detecting a GPU imports torch (seconds); only try when an NVIDIA driver is present at all.
    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return None
    from draftforge.latency.model import local_device_name

    return name if local_device_name() == name else None


def _local_profile(device: str, dtype: str, config: SearchConfig, notes: list[str]) -> LatencyModel:
    from draftforge.latency.model import default_profile_path, load_latency_model

    path = default_profile_path(device, dtype, config.runtime)
    if config.reprofile or not path.is_file():
        from draftforge.latency import profiler

        why = "--reprofile" if config.reprofile else f"no cached profile at {path}"
        notes.append(f"profiled {device} first ({why})")
        path = profiler.run(
            profiler.ProfileConfig(
                device="cpu" if device == "cpu" else "cuda",
                dtype=dtype,
                runtime=config.runtime,
                budget_minutes=config.profile_budget_minutes,
                out=str(path),
                overwrite=True,
                progress=config.show_progress,
            )
        )
    model = load_latency_model(path)
    notes.append(f"draft latency: measured profile of this machine's {device}, {path} ({model.label})")
    return model


# ---- the study's storage ----------------------------------------------------------------------------
def open_study(
    storage: str | None, study_name: str | None, objective: str, seed: int, fingerprint: dict[str, Any]
):
    """Create, resume or join a study. `storage`: an RDB URL (sqlite:///f.db, postgresql://...) or a
    journal file (`journal:PATH` or a path ending in .log/.journal)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=30)
    directions = ["minimize", "maximize"] if objective == "pareto" else ["minimize"]
    backend: Any = None
    if storage is not None:
        backend = open_storage(storage)
    try:
        study = optuna.create_study(
            storage=backend,
            sampler=sampler,
            study_name=study_name,
            directions=directions,
            load_if_exists=study_name is not None,
        )
    except Exception as exc:  # optuna raises many types (ValueError, SQLAlchemy errors) for bad storage
        raise DraftforgeError(
            f"cannot open study {study_name!r} in storage {storage!r}: {str(exc).splitlines()[0]}"
        ) from None
    known = study.user_attrs.get("draftforge_problem")
    if known is None:
        study.set_user_attr("draftforge_problem", fingerprint)
    elif known != fingerprint:
        raise DraftforgeError(
            f"study {study_name!r} in {storage} was made for another problem "
            f"({known.get('target')}, batch {known.get('batch_size')}, "
            f"{known.get('draft_latency')}); choose another --study-name"
        )
    return study


def open_storage(url: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        if url.startswith("journal:") or url.endswith((".log", ".journal")):
            path = url.removeprefix("journal:")
            return JournalStorage(JournalFileBackend(path))
        if "://" not in url:
            raise DraftforgeError(
                f"--storage {url!r} is neither a database URL (sqlite:///study.db, postgresql://...) "
                "nor a journal file (journal:PATH or *.log)"
            )
        return optuna.storages.RDBStorage(url)
    except DraftforgeError:
        raise
    except Exception as exc:
        raise DraftforgeError(f"cannot open --storage {url!r}: {str(exc).splitlines()[0]}") from None
