"""Speculative decoding evaluation: engine, prompt sets, acceptance proxy, benchmark runner, report.

Public names are re-exported lazily so that importing a light submodule (e.g. `proxy`) or the CLI
does not pull in transformers:
- `run(EvalConfig) -> (report, path)`: the `draftforge evaluate` stage (runner.py)
- `speculative_generate`, `target_generate`, `hf_assisted_generate`, `SamplingConfig`,
  `DecodeResult`, `acceptance_counts`, `check_compatible` (engine.py)
- `load_prompts`, `Prompt` (prompts.py); `read_report` (report.py); `acceptance_from_logits` (proxy.py)
- `truncated_draft` (truncate.py): the first k layers of a target as an untrained draft
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run": "runner",
    "EvalConfig": "runner",
    "speculative_generate": "engine",
    "target_generate": "engine",
    "hf_assisted_generate": "engine",
    "SamplingConfig": "engine",
    "DecodeResult": "engine",
    "acceptance_counts": "engine",
    "check_compatible": "engine",
    "load_prompts": "prompts",
    "Prompt": "prompts",
    "read_report": "report",
    "acceptance_from_logits": "proxy",
    "truncated_draft": "truncate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"draftforge.evaluate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'draftforge.evaluate' has no attribute {name!r}")
