"""draftforge: hardware-aware draft models for speculative decoding.

The public names live here; the modules behind them are the stages of the pipeline
(see DESIGN.md): shapes, catalog, speedup, latency, acceptance, search, evaluate, distill, publish.
"""

from __future__ import annotations

from draftforge.errors import DraftforgeError
from draftforge.shapes import DTYPE_BYTES, ModelShape

__version__ = "0.1.0"

__all__ = ["DTYPE_BYTES", "DraftforgeError", "ModelShape", "__version__"]
