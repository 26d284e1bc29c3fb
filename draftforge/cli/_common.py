"""Helpers shared by the command modules: JSON/rich output and option parsing."""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from draftforge.errors import DraftforgeError

JSON_OPTION = typer.Option(False, "--json", help="Print only JSON (stable, documented keys).")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(_clean(obj), indent=2))


def console():
    from rich.console import Console

    return Console()


def parse_int_list(text: str, what: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; a clear error naming `what` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DraftforgeError(f"{what} must be a comma-separated list of integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise DraftforgeError(f"{what} must be positive integers, got {text!r}")
    return values


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"
