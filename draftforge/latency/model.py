"""The latency-model protocol that search and the CLI use, whatever the model is made of."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from draftforge.shapes import ModelShape


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
