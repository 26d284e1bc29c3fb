"""The `draftforge` command line: a thin layer that parses, calls one stage, and prints.

Each verb lives in its own module here exposing `register(app)`; heavy libraries are imported
inside the command functions so that `draftforge --help` starts fast. A `DraftforgeError` becomes
one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from draftforge.errors import DraftforgeError

app = typer.Typer(
    name="draftforge",
    help="Design, train and ship hardware-aware draft models for speculative decoding.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

#: command modules under draftforge.cli, each with `register(app)`; order is the --help order.
COMMAND_MODULES: tuple[str, ...] = (
    "catalog",
    "profile",
    "search",
    "evaluate",
    "distill",
    "publish",
    "assets",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"draftforge.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a verb whose module is not written yet
        if _exc.name != f"draftforge.cli.{_name}":
            raise
        continue
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except DraftforgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
