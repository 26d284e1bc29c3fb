"""Latency models: the spec-sheet (analytic) model, the profiler and the fitted model.

Every model answers one question: the seconds of one forward pass of a shape for
(batch size, context length, tokens per forward). See `model.LatencyModel`.
"""

from __future__ import annotations

from draftforge.latency.analytic import AnalyticConstants, AnalyticLatencyModel
from draftforge.latency.model import LatencyModel

__all__ = ["AnalyticConstants", "AnalyticLatencyModel", "LatencyModel"]
