"""`draftforge publish DRAFT_DIR --repo-id OWNER/NAME`: model card + one-commit Hub upload."""

from __future__ import annotations

import typer

from draftforge.cli._common import JSON_OPTION, console, print_json


def publish(
    draft_dir: str = typer.Argument(..., help="Draft folder written by `draftforge distill`."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub repository, OWNER/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    revision: str = typer.Option(None, "--revision", help="Branch to commit to (created if missing)."),
    dry_run: str = typer.Option(
        None,
        "--dry-run",
        metavar="OUT_DIR",
        help="Write the exact upload to this new folder; upload nothing.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Publish without an eval report or with a measured speedup below 1."
    ),
    eval_reports: list[str] = typer.Option(
        None,
        "--eval",
        help="Eval report (draftforge.eval/1) to use; repeatable. Default: eval*.json next to the draft "
        "and in its parent folder.",
    ),
    search: str = typer.Option(
        None, "--search", help="Search result (search.json); default: the one draftforge.json names."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Publish a draft to the Hugging Face Hub with a model card generated from its files.

    The card is built from draftforge.json, the eval reports and the search result; the upload is one commit.

    Refused without an eval report or with a best measured speedup below 1, unless --force.

    The token comes from HF_TOKEN or `hf auth login` and is never printed.

    JSON keys: repo_id, revision, private, files, commit_message, dry_run_dir, url, commit_url, forced_reason, alpha, speedup, gamma, eval_reports, search, skipped.
    """  # noqa: E501
    from draftforge.publish import PublishConfig, run

    config = PublishConfig(
        draft_dir=draft_dir,
        repo_id=repo_id,
        private=private,
        revision=revision,
        dry_run=dry_run,
        force=force,
        eval_reports=tuple(eval_reports or ()),
        search=search,
    )
    out = console()
    if as_json:
        result = run(config)
        print_json(result.to_dict())
        return
    # no spinner: huggingface_hub draws its own progress bars while large files upload
    out.print(
        f"writing the upload of {draft_dir} for {repo_id} into {dry_run}"
        if dry_run is not None
        else f"publishing {draft_dir} to {repo_id} (model card, then one commit)"
    )
    result = run(config)
    if result.forced_reason:
        out.print(f"[yellow]published with --force although: {result.forced_reason}[/yellow]")
    if result.speedup is not None:
        out.print(
            f"measured: α {result.alpha:.3f}, speedup {result.speedup:.2f}x at γ {result.gamma} "
            f"({len(result.eval_reports)} eval report(s))"
        )
    if result.dry_run_dir:
        out.print(f"[bold]dry run[/bold]: {len(result.files)} files written to {result.dry_run_dir}")
    else:
        out.print(f"[bold]uploaded[/bold] {len(result.files)} files to {result.url} in one commit")
        if result.commit_url:
            out.print(f"commit: {result.commit_url}")
    out.print(f"commit message: {result.commit_message}")
    for name in result.files:
        out.print(f"  {name}")
    for why in result.skipped:
        out.print(f"  [dim]not uploaded: {why}[/dim]")


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
