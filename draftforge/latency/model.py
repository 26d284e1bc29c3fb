"""The latency-model protocol, the fitted (measured) model, and profile files.

A *profile* (`draftforge.profile/1`, JSON) is what `draftforge profile` writes: who measured
(device fingerprint, dtype, runtime, library versions, date), every measurement with named fields,
the fitted model's coefficients and its held-out error report. `load_latency_model(path, gpu)` turns
one into a `LatencyModel`; when `gpu` is another catalog GPU than the one measured, the model is
rescaled by the spec-sheet ratio (bandwidth for byte terms, tensor FLOP/s for FLOP terms; fixed
overheads kept) and says so in its label and provenance.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from draftforge.errors import DraftforgeError
from draftforge.latency.features import FEATURE_NAMES, feature_kind, forward_features
from draftforge.shapes import DTYPE_BYTES, ModelShape

PROFILE_SCHEMA = "draftforge.profile/1"

_CANONICAL_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@runtime_checkable
class LatencyModel(Protocol):
    """Predicts the seconds of one forward pass.

    `forward_time(shape, batch_size, context, tokens)`: `context` cached tokens per sequence,
    `tokens` new tokens per sequence in this forward (1 for a draft step, γ+1 for verification).
    """

    #: short human label, e.g. "spec-sheet a100-80gb bf16 eager" or "measured cpu fp32 eager".
    label: str

    def forward_time(self, shape: ModelShape, batch_size: int, context: int, tokens: int) -> float: ...

    def provenance(self) -> dict[str, Any]:
        """What the prediction rests on (kind, device, dtype, runtime, source file, error report)."""
        ...


def canonical_dtype(dtype: str) -> str:
    """'float32' -> 'fp32', 'bfloat16' -> 'bf16'; refuses unknown dtypes."""
    if dtype not in DTYPE_BYTES:
        raise DraftforgeError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16")
    return _CANONICAL_DTYPES.get(dtype, dtype)


# ---- measurements and profiles --------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One timed workload: seconds of one forward of `shape` (median and spread over repeats)."""

    shape: ModelShape
    batch_size: int
    context: int
    tokens: int
    median_s: float
    p10_s: float
    p90_s: float
    repeats: int
    #: per-pass medians when the shape was timed in several passes (median_s is their minimum)
    pass_medians_s: tuple[float, ...] = ()

    @property
    def group(self) -> tuple[int, int]:
        """The (layers, hidden) combination; held-out errors leave whole groups out."""
        return (self.shape.num_layers, self.shape.hidden_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape.to_dict(),
            "params": self.shape.param_count(),
            "batch_size": self.batch_size,
            "context": self.context,
            "tokens": self.tokens,
            "median_s": self.median_s,
            "p10_s": self.p10_s,
            "p90_s": self.p90_s,
            "repeats": self.repeats,
            **({"pass_medians_s": list(self.pass_medians_s)} if self.pass_medians_s else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(
            shape=ModelShape.from_dict(d["shape"]),
            batch_size=int(d["batch_size"]),
            context=int(d["context"]),
            tokens=int(d["tokens"]),
            median_s=float(d["median_s"]),
            p10_s=float(d.get("p10_s", d["median_s"])),
            p90_s=float(d.get("p90_s", d["median_s"])),
            repeats=int(d.get("repeats", 1)),
            pass_medians_s=tuple(float(x) for x in d.get("pass_medians_s", ())),
        )


@dataclass(frozen=True)
class Profile:
    """A validated `draftforge.profile/1` file."""

    path: Path | None
    device_name: str
    dtype: str
    runtime: str
    measurements: tuple[Measurement, ...]
    coefficients: dict[str, float]
    error_report: dict[str, Any] | None
    raw: dict[str, Any]


def read_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile; a corrupt or foreign file raises one DraftforgeError naming the problems."""
    from draftforge.files import read_versioned

    path = Path(path)
    obj = read_versioned(path, PROFILE_SCHEMA)
    problems: list[str] = []
    device = obj.get("device")
    if not isinstance(device, dict) or not isinstance(device.get("name"), str) or not device["name"]:
        problems.append("'device.name' is missing")
    dtype = obj.get("dtype")
    if dtype not in DTYPE_BYTES:
        problems.append(f"'dtype' is {dtype!r}, not a known dtype")
    from draftforge.latency.analytic import RUNTIMES

    if obj.get("runtime") not in RUNTIMES:
        problems.append(f"'runtime' is {obj.get('runtime')!r}, expected one of {', '.join(RUNTIMES)}")
    measurements: list[Measurement] = []
    raw_meas = obj.get("measurements")
    if not isinstance(raw_meas, list) or not raw_meas:
        problems.append("'measurements' is missing or empty")
    else:
        for i, m in enumerate(raw_meas):
            try:
                meas = Measurement.from_dict(m)
            except (KeyError, TypeError, ValueError, AttributeError, DraftforgeError) as exc:
                problems.append(f"measurements[{i}] is malformed ({exc})")
                break
            if not (math.isfinite(meas.median_s) and meas.median_s > 0):
                problems.append(f"measurements[{i}].median_s is not a positive number")
                break
            if meas.batch_size < 1 or meas.tokens < 1 or meas.context < 0:
                problems.append(
                    f"measurements[{i}] has a non-positive batch_size or tokens, or negative context"
                )
                break
            measurements.append(meas)
    model = obj.get("model")
    coefficients: dict[str, float] = {}
    if not isinstance(model, dict) or not isinstance(model.get("coefficients"), dict):
        problems.append("'model.coefficients' is missing")
    else:
        raw_coef = model["coefficients"]
        unknown = sorted(set(raw_coef) - set(FEATURE_NAMES))
        if unknown:
            problems.append(f"'model.coefficients' has unknown features {', '.join(unknown)}")
        for name in FEATURE_NAMES:
            value = raw_coef.get(name, 0.0)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                problems.append(f"'model.coefficients.{name}' is {value!r}, not a non-negative number")
            else:
                coefficients[name] = float(value)
        if not problems and not any(coefficients.values()):
            problems.append("every coefficient is zero")
    report = obj.get("error_report")
    if report is not None and not isinstance(report, dict):
        problems.append("'error_report' is not an object")
    if problems:
        raise DraftforgeError(
            f"{path} is not a valid draftforge profile ({'; '.join(problems[:4])}); "
            "re-measure it with `draftforge profile`"
        )
    return Profile(
        path=path,
        device_name=device["name"],
        dtype=canonical_dtype(dtype),
        runtime=obj["runtime"],
        measurements=tuple(measurements),
        coefficients=coefficients,
        error_report=report,
        raw=obj,
    )


# ---- the fitted model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FittedLatencyModel:
    """Linear, non-negative model over `features.FEATURES`, fitted to measurements of one device.

    `device` is the device it predicts for; `measured_on` the device the profile was measured on
    (they differ after `rescaled_to`). `coefficients` are seconds per feature unit.
    """

    coefficients: dict[str, float]
    dtype: str
    runtime: str
    device: str
    measured_on: str
    source: str | None = None
    error_report: dict[str, Any] | None = None
    #: {"from", "to", "bandwidth_ratio", "flops_ratio"} when rescaled to another GPU by spec sheets
    rescale: dict[str, Any] | None = None

    @classmethod
    def from_profile(cls, profile: Profile) -> FittedLatencyModel:
        return cls(
            coefficients=dict(profile.coefficients),
            dtype=profile.dtype,
            runtime=profile.runtime,
            device=profile.device_name,
            measured_on=profile.device_name,
            source=str(profile.path) if profile.path else None,
            error_report=profile.error_report,
        )

    @property
    def label(self) -> str:
        base = f"measured {self.measured_on} {self.dtype} {self.runtime}"
        if self.rescale:
            return f"{base}, rescaled to {self.device} by spec-sheet ratio"
        return base

    def breakdown(self, shape: ModelShape, batch_size: int, context: int, tokens: int) -> dict[str, Any]:
        """Seconds per feature term; `terms` sum to `total_s`."""
        from draftforge.latency.analytic import _check_workload

        _check_workload(batch_size, context, tokens)
        feats = forward_features(shape, batch_size, context, tokens, self.dtype)
        terms = {name: self.coefficients.get(name, 0.0) * feats[name] for name in FEATURE_NAMES}
        return {"total_s": sum(terms.values()), "terms": terms}

    def forward_time(self, shape: ModelShape, batch_size: int, context: int, tokens: int) -> float:
        return self.breakdown(shape, batch_size, context, tokens)["total_s"]

    def fits(self, shape: ModelShape, batch_size: int, context: int) -> bool:
        """Whether weights and KV cache fit in the device memory (90%); always True on the CPU."""
        from draftforge.catalog import get_hardware

        try:
            hw = get_hardware(self.device)
        except DraftforgeError:
            return True
        if hw.memory_bytes <= 0:
            return True
        need = shape.weight_bytes(self.dtype) + batch_size * context * shape.kv_bytes_per_token(self.dtype)
        return need <= 0.9 * hw.memory_bytes

    def rescaled_to(self, gpu: str) -> FittedLatencyModel:
        """This GPU model moved to another catalog GPU by the spec-sheet ratio.

        Byte terms scale with memory bandwidth (measured / target), FLOP terms with dense tensor
        FLOP/s; fixed terms (launch, Python, per layer) are host-side costs and stay as measured.
        """
        from draftforge.catalog import get_hardware

        dst = get_hardware(gpu)
        if dst.name == self.device:
            return self
        try:
            src = get_hardware(self.measured_on)
        except DraftforgeError:
            src = None
        if src is None or not src.has_spec_sheet or not dst.has_spec_sheet:
            raise DraftforgeError(
                f"a profile measured on {self.measured_on} cannot be rescaled to {dst.name} (rescaling "
                f"needs two catalog GPUs); measure {dst.name} with `draftforge profile` or drop --profile"
            )
        bw = src.memory_bandwidth / dst.memory_bandwidth
        fl = src.peak_flops / dst.peak_flops
        factor = {"fixed": 1.0, "bytes": bw, "flops": fl}
        coefficients = {n: c * factor[feature_kind(n)] for n, c in self.coefficients.items()}
        return dataclasses.replace(
            self,
            coefficients=coefficients,
            device=dst.name,
            rescale={"from": src.name, "to": dst.name, "bandwidth_ratio": bw, "flops_ratio": fl},
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": "measured",
            "label": self.label,
            "device": self.device,
            "measured_on": self.measured_on,
            "dtype": self.dtype,
            "runtime": self.runtime,
            "source": self.source,
            "coefficients": dict(self.coefficients),
            "error_report": self.error_report,
            "rescaled": self.rescale,
        }


# ---- where profiles live --------------------------------------------------------------------------
def profiles_cache_dir() -> Path:
    """User cache folder for measured profiles: $DRAFTFORGE_CACHE/profiles or ~/.cache/draftforge/profiles."""
    root = os.environ.get("DRAFTFORGE_CACHE") or os.path.join("~", ".cache", "draftforge")
    return Path(root).expanduser() / "profiles"


def default_profile_path(device: str, dtype: str, runtime: str) -> Path:
    """Where `draftforge profile` writes by default: <cache>/profiles/<device>-<dtype>-<runtime>.json."""
    return profiles_cache_dir() / f"{_slug(device)}-{canonical_dtype(dtype)}-{runtime}.json"


def find_builtin_profile(gpu: str, dtype: str, runtime: str) -> Path | None:
    """The built-in measured profile for this catalog device, dtype and runtime, or None."""
    from draftforge.catalog import builtin_profiles_dir, get_hardware

    name = get_hardware(gpu).name
    want = (name, canonical_dtype(dtype), runtime)
    folder = builtin_profiles_dir()
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        profile = read_profile(path)
        if (profile.device_name, profile.dtype, profile.runtime) == want:
            return path
    return None


def builtin_profiles() -> list[Path]:
    from draftforge.catalog import builtin_profiles_dir

    folder = builtin_profiles_dir()
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def resolve_profile_path(spec: str | os.PathLike) -> Path:
    """A path stays a path; a bare name like 'h100-sxm-bf16-cuda-graph' finds the built-in profile."""
    path = Path(os.path.expanduser(str(spec)))
    if path.exists():
        return path
    for builtin in builtin_profiles():
        if builtin.stem == str(spec) or builtin.name == str(spec):
            return builtin
    raise DraftforgeError(
        f"profile file not found: {spec} (built-in profiles: "
        f"{', '.join(p.stem for p in builtin_profiles()) or 'none'})"
    )


def load_latency_model(
    path: str | os.PathLike, gpu: str | None = None, kind: Literal["fitted", "calibrated"] = "fitted"
) -> LatencyModel:
    """A `LatencyModel` from a profile file (or built-in profile name).

    kind "fitted": the NNLS model of the profile; "calibrated": the spec-sheet model with the
    constants fitted to the profile's measurements. With `gpu` naming another catalog GPU than the
    one measured, the model is moved there by the spec-sheet ratio (fitted: byte terms by bandwidth,
    FLOP terms by tensor FLOP/s; calibrated: the measured efficiencies applied to the other GPU's
    spec sheet) and its label says so. A CPU profile only serves `gpu=None` or "cpu".
    """
    profile = read_profile(resolve_profile_path(path))
    if kind == "calibrated":
        return calibrated_analytic(profile, gpu)
    if kind != "fitted":
        raise DraftforgeError(f"unknown latency model kind {kind!r}; use fitted or calibrated")
    model = FittedLatencyModel.from_profile(profile)
    if gpu is None:
        return model
    from draftforge.catalog import get_hardware

    hw = get_hardware(gpu)
    if hw.name == model.device:
        return model
    return model.rescaled_to(hw.name)


def calibrated_analytic(profile: Profile, gpu: str | None = None):
    """The spec-sheet model calibrated on `profile` (stored under `calibrated_spec_sheet`)."""
    from draftforge.catalog import Hardware, get_hardware
    from draftforge.latency.analytic import AnalyticConstants, AnalyticLatencyModel

    cal = profile.raw.get("calibrated_spec_sheet")
    keys = ("effective_bandwidth_b_s", "effective_flops", "layer_overhead_s", "step_overhead_s")
    if not isinstance(cal, dict) or not all(
        isinstance(cal.get(k), (int, float)) and cal[k] >= 0 for k in keys
    ):
        raise DraftforgeError(
            f"{profile.path} has no calibrated spec-sheet constants; re-measure it with `draftforge profile`"
        )
    defaults = AnalyticConstants()
    layer = {**defaults.layer_overhead_s, profile.runtime: float(cal["layer_overhead_s"])}
    step = {**defaults.step_overhead_s, profile.runtime: float(cal["step_overhead_s"])}
    source = str(profile.path)
    measured = _catalog_or_none(profile.device_name)
    target = get_hardware(gpu) if gpu is not None else measured
    if target is not None and target.name != profile.device_name:
        if measured is None or not measured.has_spec_sheet or not target.has_spec_sheet:
            raise DraftforgeError(
                f"a profile measured on {profile.device_name} cannot be rescaled to {target.name} (rescaling "
                f"needs two catalog GPUs); measure {target.name} with `draftforge profile` or drop --profile"
            )
        source += f", rescaled from {profile.device_name} by spec-sheet ratio"
    if target is not None and target.has_spec_sheet:
        bw_eff = cal["effective_bandwidth_b_s"] / measured.memory_bandwidth  # type: ignore[union-attr]
        fl_eff = cal["effective_flops"] / measured.peak_flops  # type: ignore[union-attr]
        constants = AnalyticConstants(
            bandwidth_efficiency=bw_eff,
            compute_efficiency=fl_eff,
            layer_overhead_s=layer,
            step_overhead_s=step,
        )
        hw = target
    else:  # the CPU: a stand-in with the measured effective figures
        constants = AnalyticConstants(
            bandwidth_efficiency=1.0, compute_efficiency=1.0, layer_overhead_s=layer, step_overhead_s=step
        )
        hw = Hardware(
            name=profile.device_name,
            display_name=f"{profile.device_name} (calibrated stand-in)",
            kind="cpu",
            peak_flops=float(cal["effective_flops"]) or 1e30,
            memory_bandwidth=float(cal["effective_bandwidth_b_s"]),
        )
    return AnalyticLatencyModel(
        hardware=hw,
        dtype=profile.dtype,
        runtime=profile.runtime,  # type: ignore[arg-type]
        constants=constants,
        calibrated_from=source,
    )


def _catalog_or_none(name: str):
    from draftforge.catalog import get_hardware

    try:
        return get_hardware(name)
    except DraftforgeError:
        return None


# ---- which device is this -------------------------------------------------------------------------
def catalog_gpu_name(device_name: str, memory_bytes: float | None = None) -> str | None:
    """The catalog name of a GPU from its driver name ('NVIDIA H100 80GB HBM3' -> 'h100-sxm'), or None."""
    n = device_name.lower()
    words = set(re.split(r"[^a-z0-9]+", n))
    if "mi300x" in words:
        return "mi300x"
    if "h200" in n:
        return "h200"
    if "h100" in n:
        if "nvl" in words:
            return None
        return "h100-pcie" if "pcie" in words else "h100-sxm"
    if "a100" in n:
        big = "80gb" in n or (memory_bytes is not None and memory_bytes > 50e9)
        if "pcie" in words:
            return "a100-80gb-pcie" if big else None
        return "a100-80gb" if big else "a100-40gb"
    if "l40s" in words:
        return "l40s"
    if "l4" in words:
        return "l4"
    if "a10g" in words or "a10" in words:
        return "a10g"
    if "4090" in words:
        return "rtx4090"
    if "v100" in n:
        return "v100"
    return None


def local_device_name() -> str:
    """'cpu', or the catalog name of the local CUDA GPU (a slug of its driver name outside the catalog)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)
    return catalog_gpu_name(props.name, props.total_memory) or _slug(props.name)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
