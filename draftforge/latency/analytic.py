"""Spec-sheet latency model: roofline per layer plus fixed per-layer and per-step overheads.

time(forward) = Σ_layers [ max(bytes_read / BW_eff, flops / FLOPS_eff) + overhead_layer ]
              + max(lm_head_bytes / BW_eff, lm_head_flops / FLOPS_eff)
              + 2 · layers · allreduce(tp)                       (tensor parallelism only)
              + overhead_step

Decoding at small batch is memory-bound, so the roofline term is mostly weight bytes over the
achievable bandwidth; small drafts are overhead-bound, which is why depth dominates their latency
(the seed paper's finding; REFERENCE.md §3). Every constant is in `AnalyticConstants` with its source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from draftforge.catalog import Hardware, get_hardware
from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape, dtype_bytes

Runtime = Literal["eager", "cuda-graph"]
RUNTIMES: tuple[str, ...] = ("eager", "cuda-graph")


@dataclass(frozen=True)
class AnalyticConstants:
    """Constants of the spec-sheet model. Override any of them (`--set` style) to calibrate."""

    #: Share of datasheet memory bandwidth reached by decode GEMVs. gpt-fast reached ~1.4 TB/s on an
    #: A100-80GB (≈70% of 2.0 TB/s); TensorRT-LLM ~55-60% MBU at batch 1 (REFERENCE.md §3); our H200
    #: CUDA-graph profile calibrates to 0.61 (docs/BENCHMARKS.md, "GPU session"). 0.65 sits between.
    bandwidth_efficiency: float = 0.65
    #: Share of dense tensor throughput reached by the (skinny) GEMMs of decoding and verification;
    #: ~56% MFU is what well-tuned training reaches (TinyLlama, torchtitan; REFERENCE.md §7), and
    #: decode-shaped GEMMs do worse, hence 0.5.
    compute_efficiency: float = 0.50
    #: Fixed cost per decoder layer, by runtime. Measured on an H200 with transformers 5.17 (built-in
    #: profiles h200-bf16-*.json, fitted per-layer coefficient): HF eager 535 µs per layer (Python and
    #: ~15-20 kernel launches; REFERENCE.md §3 expected "100+ µs"), HF static cache under CUDA graphs
    #: 104 µs per layer. Engines with fused kernels do better; override for them.
    layer_overhead_s: dict[str, float] = field(
        default_factory=lambda: {"eager": 500e-6, "cuda-graph": 100e-6}
    )
    #: Fixed cost per forward outside the layers (embedding, final norm, sampling, Python loop); the same
    #: H200 profiles fit 665 µs (eager) and 18 µs (CUDA graph).
    step_overhead_s: dict[str, float] = field(default_factory=lambda: {"eager": 650e-6, "cuda-graph": 20e-6})
    #: Latency of one small NCCL all-reduce on NVLink (message-size independent part), seconds.
    allreduce_latency_s: float = 8e-6

    def with_overrides(self, **changes: Any) -> AnalyticConstants:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class AnalyticLatencyModel:
    """Predicts forward time of any shape on a spec-sheet accelerator.

    `hardware` is a catalog entry (or a calibrated stand-in with fitted peak figures), `tp` the
    tensor-parallel degree, `runtime` eager or cuda-graph.
    """

    hardware: Hardware
    dtype: str = "bf16"
    runtime: Runtime = "eager"
    tp: int = 1
    constants: AnalyticConstants = field(default_factory=AnalyticConstants)
    #: set when this model was calibrated from a measured profile (path or description)
    calibrated_from: str | None = None

    def __post_init__(self) -> None:
        if self.hardware.peak_flops <= 0 or self.hardware.memory_bandwidth <= 0:
            raise DraftforgeError(
                f"{self.hardware.name} has no spec sheet; measure it with `draftforge profile` "
                "and pass --profile FILE"
            )
        if self.runtime not in RUNTIMES:
            raise DraftforgeError(f"unknown runtime {self.runtime!r}; use one of {', '.join(RUNTIMES)}")
        if not isinstance(self.tp, int) or self.tp < 1:
            raise DraftforgeError(f"tensor-parallel degree must be a positive integer, got {self.tp!r}")
        dtype_bytes(self.dtype)

    @classmethod
    def for_gpu(cls, gpu: str, **kwargs: Any) -> AnalyticLatencyModel:
        return cls(hardware=get_hardware(gpu), **kwargs)

    @property
    def label(self) -> str:
        tp = f" tp{self.tp}" if self.tp > 1 else ""
        cal = " (calibrated)" if self.calibrated_from else ""
        return f"spec-sheet {self.hardware.name} {self.dtype} {self.runtime}{tp}{cal}"

    # ---- the model ----------------------------------------------------------------------------
    def _roofline(self, nbytes: float, flops: float) -> tuple[float, str]:
        c = self.constants
        t_mem = nbytes / (self.hardware.memory_bandwidth * c.bandwidth_efficiency)
        t_cmp = flops / (self.hardware.peak_flops * c.compute_efficiency)
        return (t_mem, "memory") if t_mem >= t_cmp else (t_cmp, "compute")

    def breakdown(self, shape: ModelShape, batch_size: int, context: int, tokens: int) -> dict[str, Any]:
        """Per-term seconds of one forward; `terms` sum to `total_s`.

        Returns {"total_s", "terms": {name: seconds}, "bound": "memory"|"compute", "bytes": ..., "flops": ...}.
        """
        _check_workload(batch_size, context, tokens)
        c, tp, b = self.constants, self.tp, dtype_bytes(self.dtype)
        n_new = batch_size * tokens
        # One layer: weights once per forward, KV of every sequence, FLOPs for every new token.
        layer_bytes = shape.layer_weight_bytes(self.dtype) / tp
        kv_bytes = batch_size * (context + tokens) * 2 * shape.kv_dim * b / tp
        layer_flops = n_new * shape.layer_flops_per_token(context) / tp
        t_layer, bound = self._roofline(layer_bytes + kv_bytes, layer_flops)
        head_bytes = shape.lm_head_weight_bytes(self.dtype) / tp
        head_flops = n_new * 2.0 * shape.vocab_size * (shape.embed_dim or shape.hidden_size) / tp
        t_head, _ = self._roofline(head_bytes, head_flops)
        t_allreduce = 0.0
        if tp > 1:
            message = n_new * shape.hidden_size * b
            ring = 2.0 * (tp - 1) / tp * message / self.hardware.interconnect_bandwidth
            t_allreduce = 2 * shape.num_layers * (c.allreduce_latency_s + ring)
        terms = {
            "layers_weights_kv_flops": shape.num_layers * t_layer,
            "layers_fixed_overhead": shape.num_layers * c.layer_overhead_s[self.runtime],
            "lm_head": t_head,
            "tp_allreduce": t_allreduce,
            "step_overhead": c.step_overhead_s[self.runtime],
        }
        return {
            "total_s": sum(terms.values()),
            "terms": terms,
            "bound": bound,
            "bytes_read": shape.num_layers * (layer_bytes + kv_bytes) + head_bytes,
            "flops": shape.num_layers * layer_flops + head_flops,
            "bandwidth_floor_s": (shape.num_layers * (layer_bytes + kv_bytes) + head_bytes)
            / self.hardware.memory_bandwidth,
        }

    def forward_time(self, shape: ModelShape, batch_size: int, context: int, tokens: int) -> float:
        return self.breakdown(shape, batch_size, context, tokens)["total_s"]

    def fits(self, shape: ModelShape, batch_size: int, context: int) -> bool:
        """Whether weights and KV cache fit in the memory of `tp` devices (90% usable)."""
        need = shape.weight_bytes(self.dtype) + batch_size * context * shape.kv_bytes_per_token(self.dtype)
        return need <= 0.9 * self.hardware.memory_bytes * self.tp

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": "spec-sheet",
            "label": self.label,
            "hardware": self.hardware.name,
            "dtype": self.dtype,
            "runtime": self.runtime,
            "tp": self.tp,
            "constants": dataclasses.asdict(self.constants),
            "calibrated_from": self.calibrated_from,
        }


def _check_workload(batch_size: int, context: int, tokens: int) -> None:
    if batch_size < 1 or tokens < 1 or context < 0:
        raise DraftforgeError(
            f"batch size and tokens per forward must be >= 1 and context >= 0, "
            f"got batch={batch_size}, tokens={tokens}, context={context}"
        )
