"""Publish a draft to the Hugging Face Hub with a model card generated from its files.

`run(PublishConfig) -> PublishResult` reads a draft folder (HF files + `draftforge.json`,
`draftforge.draft/1`), the eval reports that measured it (`draftforge.eval/1`) and the search result
that chose its shape (`draftforge.search/1`), refuses a draft without a measured speedup of at least 1
(unless `force`), writes the model card (`README.md`) and then either copies the exact upload into a
new folder (`dry_run`) or uploads it in one commit. Nothing in the card (`publish_card.py`) is typed
by hand: every figure comes from those files. Retraining or re-measuring is not this module's business.

The Hub token comes from huggingface_hub's own lookup (HF_TOKEN or `hf auth login`); it is never
printed, written, or kept in an error message.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draftforge.errors import DraftforgeError
from draftforge.files import ensure_new_dir, read_versioned
from draftforge.publish_card import (
    EVAL_SCHEMA,
    SEARCH_SCHEMA,
    DraftInputs,
    EvalReport,
    best_result,
    commit_message,
    render_card,
)
from draftforge.shapes import ModelShape

DRAFT_SCHEMA = "draftforge.draft/1"

#: Files of a transformers save_pretrained folder that are uploaded (their documented names);
#: anything else in the draft folder (logs, checkpoints, stray files) stays local and is listed
#: in `PublishResult.skipped`.
MODEL_FILE_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "draftforge.json",
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---- configuration and result -------------------------------------------------------------------
@dataclass(frozen=True)
class PublishConfig:
    """What to publish and where."""

    #: the draft folder: transformers files plus `draftforge.json`.
    draft_dir: str
    #: the Hub repository, `OWNER/NAME`.
    repo_id: str
    #: create the repository as private (an existing repository keeps its visibility).
    private: bool = False
    #: branch to commit to (created from the default branch when missing); None = main.
    revision: str | None = None
    #: write the exact folder that would be uploaded here (a new folder) and upload nothing.
    dry_run: str | None = None
    #: publish even without an eval report or with a measured speedup below 1.
    force: bool = False
    #: eval reports to use; empty = discover `eval*.json` next to the draft and in its parent folder.
    eval_reports: tuple[str, ...] = ()
    #: the search result; None = the one `draftforge.json` names in `search.path`.
    search: str | None = None

    @classmethod
    def from_section(cls, draft_dir: str | Path, section: Any) -> PublishConfig:
        """The config for a recipe's `publish:` section (repo_id, private, and optionally revision,
        dry_run, force), applied to the exported draft folder."""
        return cls(
            draft_dir=str(draft_dir),
            repo_id=section.repo_id,
            private=bool(getattr(section, "private", False)),
            revision=getattr(section, "revision", None),
            dry_run=getattr(section, "dry_run", None),
            force=bool(getattr(section, "force", False)),
        )

    def problems(self) -> list[str]:
        """Every reason this configuration is invalid, each naming the option."""
        out: list[str] = []
        draft = Path(self.draft_dir).expanduser()
        if not draft.is_dir():
            out.append(f"DRAFT_DIR {self.draft_dir!r} is not a folder")
        if not _REPO_ID.match(self.repo_id or "") or len(self.repo_id) > 96 or ".." in self.repo_id:
            out.append(f"--repo-id must look like OWNER/NAME (letters, digits, . _ -), got {self.repo_id!r}")
        if self.revision is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", self.revision):
            out.append(f"--revision must be a branch name, got {self.revision!r}")
        for p in self.eval_reports:
            if not Path(p).expanduser().is_file():
                out.append(f"--eval {p!r} is not a file")
        if self.search is not None and not Path(self.search).expanduser().is_file():
            out.append(f"--search {self.search!r} is not a file")
        if self.dry_run is not None:
            dest = Path(self.dry_run).expanduser()
            if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
                out.append(f"--dry-run {self.dry_run!r} exists and is not an empty folder; give a new folder")
        return out


@dataclass(frozen=True)
class PublishResult:
    """What was (or, for a dry run, would be) uploaded."""

    repo_id: str
    revision: str | None
    private: bool
    #: paths inside the repository, sorted; README.md is the generated card.
    files: tuple[str, ...]
    commit_message: str
    #: the folder written by a dry run (None after an upload).
    dry_run_dir: str | None
    #: the repository URL and the commit URL after an upload (None for a dry run).
    url: str | None
    commit_url: str | None
    #: the gate's verdict: None when it passed, else the reason that `force` overrode.
    forced_reason: str | None
    #: headline figures of the best measured result (None without eval reports).
    alpha: float | None
    speedup: float | None
    gamma: int | None
    eval_reports: tuple[str, ...]
    search: str | None
    #: files in the draft folder that are not uploaded, and reports that were not used, with why.
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "private": self.private,
            "files": list(self.files),
            "commit_message": self.commit_message,
            "dry_run_dir": self.dry_run_dir,
            "url": self.url,
            "commit_url": self.commit_url,
            "forced_reason": self.forced_reason,
            "alpha": self.alpha,
            "speedup": self.speedup,
            "gamma": self.gamma,
            "eval_reports": list(self.eval_reports),
            "search": self.search,
            "skipped": list(self.skipped),
        }


# ---- inputs -------------------------------------------------------------------------------------
def _model_files(draft_dir: Path) -> tuple[list[Path], dict[Path, str]]:
    """Top-level files matching MODEL_FILE_PATTERNS, and the rest {path: why it is left out}."""
    keep: list[Path] = []
    left: dict[Path, str] = {}
    for p in sorted(draft_dir.iterdir()):
        if p.is_dir():
            left[p] = f"{p.name}/ (a folder; only the model files at the top level are uploaded)"
        elif p.name == "README.md":
            left[p] = "README.md (replaced by the generated model card)"
        elif any(p.match(pattern) for pattern in MODEL_FILE_PATTERNS):
            keep.append(p)
        elif not p.name.startswith("."):
            left[p] = f"{p.name} (not a model file)"
    return keep, left


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    problems = [f"'{k}'" for k in ("shape", "params", "target") if k not in meta]
    if problems:
        raise DraftforgeError(f"{path} lacks {', '.join(problems)}; is it a complete draftforge.json?")
    try:
        ModelShape.from_dict(meta["shape"])
    except (DraftforgeError, TypeError) as exc:
        raise DraftforgeError(f"{path} has an invalid 'shape': {exc}") from None
    if not isinstance(meta["target"], dict):
        raise DraftforgeError(f"{path}: 'target' must be an object with spec, name, hub_id, license")


def _check_eval(report: dict[str, Any], path: Path) -> None:
    problems: list[str] = []
    results = report.get("results")
    if not isinstance(results, list) or not results:
        problems.append("'results' is missing or empty")
    else:
        for i, r in enumerate(results):
            for key in ("gamma", "alpha", "speedup"):
                value = r.get(key) if isinstance(r, dict) else None
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    problems.append(f"results[{i}].{key} is missing or not a finite number")
    if problems:
        raise DraftforgeError(f"eval report {path} is incomplete: {'; '.join(problems)}")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _report_is_for(report: dict[str, Any], report_path: Path, draft_dir: Path, params: int) -> str | None:
    """None when the report measured this draft; else why not.

    A report names its draft by `draft.path` (as given to `draftforge evaluate`) and `draft.params`:
    a path that points at another existing folder, or another parameter count, rules the report out.
    """
    draft = report.get("draft") or {}
    if isinstance(draft.get("params"), int) and draft["params"] != params:
        return f"it measured a draft with {draft['params']:,} parameters, this one has {params:,}"
    path = draft.get("path")
    if isinstance(path, str) and path:
        candidates = [Path(path).expanduser()]
        if not candidates[0].is_absolute():
            candidates.append(report_path.parent / path)
        existing = [c for c in candidates if c.is_dir()]
        if existing and not any(_same_folder(c, draft_dir) for c in existing):
            return f"it measured the draft at {path}"
    return None


def _discover_evals(draft_dir: Path) -> list[Path]:
    found: list[Path] = []
    for folder in (draft_dir, draft_dir.resolve().parent):
        found.extend(sorted(p for p in folder.glob("eval*.json") if p.is_file()))
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _resolve_search(meta: dict[str, Any], draft_dir: Path) -> tuple[Path | None, str | None]:
    """The search.json draftforge.json points to: (path, None), or (None, the unresolvable path)."""
    ref = meta.get("search")
    if not isinstance(ref, dict) or not ref.get("path"):
        return None, None
    raw = Path(str(ref["path"])).expanduser()
    for candidate in (raw, draft_dir / raw, draft_dir.parent / raw):
        if candidate.is_file():
            return candidate, None
        if candidate.is_dir() and (candidate / "search.json").is_file():
            return candidate / "search.json", None
    return None, str(ref["path"])


def load_inputs(config: PublishConfig) -> DraftInputs:
    """Read and check the draft folder, its eval reports and its search result."""
    draft_dir = Path(config.draft_dir).expanduser()
    meta_path = draft_dir / "draftforge.json"
    if not meta_path.is_file():
        raise DraftforgeError(
            f"{draft_dir} has no draftforge.json; publish takes a draft folder written by `draftforge distill`"
        )
    meta = read_versioned(meta_path, DRAFT_SCHEMA)
    _check_meta(meta, meta_path)
    if not (draft_dir / "config.json").is_file():
        raise DraftforgeError(f"{draft_dir} has no config.json; it is not a transformers model folder")
    model_files, left_out = _model_files(draft_dir)
    skipped: list[str] = []
    if not any(p.suffix == ".safetensors" for p in model_files):
        raise DraftforgeError(
            f"{draft_dir} has no model weights (*.safetensors); export the draft with `draftforge distill` first"
        )

    params = int(meta["params"])
    evals: list[EvalReport] = []
    if config.eval_reports:
        for p in config.eval_reports:
            path = Path(p).expanduser()
            report = read_versioned(path, EVAL_SCHEMA)
            _check_eval(report, path)
            why_not = _report_is_for(report, path, draft_dir, params)
            if why_not is not None:
                raise DraftforgeError(f"eval report {path} is not about {draft_dir}: {why_not}")
            evals.append(EvalReport(path, report))
    else:
        for path in _discover_evals(draft_dir):
            report = read_versioned(path, EVAL_SCHEMA)
            _check_eval(report, path)
            why_not = _report_is_for(report, path, draft_dir, params)
            if why_not is None:
                evals.append(EvalReport(path, report))
            else:
                skipped.append(f"{path} (eval report of another draft: {why_not})")

    search_missing = None
    if config.search is not None:
        search_path: Path | None = Path(config.search).expanduser()
    else:
        search_path, search_missing = _resolve_search(meta, draft_dir)
    search = read_versioned(search_path, SEARCH_SCHEMA) if search_path is not None else None
    if search is not None and not isinstance(search.get("candidates"), list):
        raise DraftforgeError(f"search result {search_path} has no 'candidates' list")
    uploaded_elsewhere = {ev.path.resolve() for ev in evals}
    if search_path is not None:
        uploaded_elsewhere.add(search_path.resolve())
    skipped = [why for p, why in left_out.items() if p.resolve() not in uploaded_elsewhere] + skipped
    return DraftInputs(
        draft_dir=draft_dir,
        meta=meta,
        model_files=tuple(model_files),
        evals=tuple(evals),
        search_path=search_path,
        search=search,
        search_missing=search_missing,
        skipped=tuple(skipped),
    )


# ---- the gate -----------------------------------------------------------------------------------
def gate(inputs: DraftInputs) -> str | None:
    """None when the draft may be published; else every reason it may not, in one sentence."""
    reasons: list[str] = []
    best = best_result(inputs.evals)
    if best is None:
        reasons.append(
            f"{inputs.draft_dir} has no eval report, so its speedup is unmeasured; run `draftforge evaluate "
            f"--draft {inputs.draft_dir} --out {inputs.draft_dir}/eval.json` or pass --eval FILE"
        )
    elif best[1]["speedup"] < 1:
        reasons.append(
            f"the best measured speedup is {best[1]['speedup']:.3f}x (below 1: the draft slows decoding down, "
            f"from {best[0].path})"
        )
    if inputs.search_missing is not None:
        reasons.append(
            f"draftforge.json names the search result {inputs.search_missing!r}, which was not found; "
            "pass it with --search FILE"
        )
    return "; ".join(reasons) or None


# ---- the upload plan ----------------------------------------------------------------------------
def _report_names(evals: tuple[EvalReport, ...]) -> dict[Path, str]:
    names: dict[Path, str] = {}
    used: set[str] = set()
    for ev in evals:
        stem, n = ev.path.stem, 1
        name = f"eval/{stem}.json"
        while name in used:
            n += 1
            name = f"eval/{stem}-{n}.json"
        used.add(name)
        names[ev.path] = name
    return names


def plan_files(inputs: DraftInputs, card: str, report_names: dict[Path, str]) -> dict[str, Path | bytes]:
    """Path in the repository -> source file (or bytes for the generated card)."""
    plan: dict[str, Path | bytes] = {p.name: p for p in inputs.model_files}
    for path, name in report_names.items():
        plan[name] = path
    if inputs.search_path is not None:
        plan["search.json"] = inputs.search_path
    plan["README.md"] = card.encode("utf-8")
    return dict(sorted(plan.items()))


def write_folder(plan: dict[str, Path | bytes], out: Path) -> Path:
    """Write the upload into the new folder `out`; on failure remove what was written."""
    out = ensure_new_dir(out)
    try:
        for name, src in plan.items():
            dest = out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dest.write_bytes(src)
            else:
                shutil.copyfile(src, dest)
    except OSError as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise DraftforgeError(f"could not write the dry-run folder {out}: {exc}") from None
    return out


def _token() -> str | None:
    """The token huggingface_hub would send (HF_TOKEN, the login file, ...); never shown anywhere."""
    import os

    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # an OIDC exchange or refresh that failed: the plain variables are all we know
        return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def _scrub(text: str) -> str:
    """Remove the user's token from a message, whatever path it came by."""
    token = _token()
    return text.replace(token, "***") if token else text


def _hub_error(exc: BaseException, doing: str, repo_id: str, created: bool) -> DraftforgeError:
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError

    after = (
        f"; the repository {repo_id} exists but nothing was committed to it (the upload is one commit, "
        "so no partial files are there): run publish again"
        if created
        else "; nothing was uploaded"
    )
    if isinstance(exc, LocalTokenNotFoundError):
        return DraftforgeError(
            "no Hugging Face token found: run `hf auth login` or set HF_TOKEN; nothing was uploaded"
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        hint = " (check that your token has write access to it)" if status in (401, 403) else ""
        first = _scrub(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        return DraftforgeError(f"the Hub refused to {doing} {repo_id}{hint}: {first}{after}")
    if isinstance(exc, (HTTPError, ConnectionError, TimeoutError, OSError)):
        first = _scrub(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        return DraftforgeError(
            f"the Hugging Face Hub could not be reached to {doing} {repo_id} "
            f"({type(exc).__name__}: {first}){after}"
        )
    raise exc


def upload(
    plan: dict[str, Path | bytes], repo_id: str, private: bool, revision: str | None, message: str
) -> tuple[str, str | None]:
    """Create the repository if needed and upload `plan` in one commit; returns (repo url, commit url).

    The card's metadata is checked by the Hub first (the same check create_commit makes), so a card
    the Hub would refuse leaves no empty repository behind.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError

    hub_errors = (HfHubHTTPError, HTTPError, LocalTokenNotFoundError, ConnectionError, TimeoutError, OSError)
    api = HfApi()
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
        for name, src in plan.items()
    ]
    if _token() is None:
        raise DraftforgeError(
            "no Hugging Face token found: run `hf auth login` or set HF_TOKEN (a token with write access); "
            "nothing was uploaded"
        )
    card = plan["README.md"]
    try:
        ModelCard(card.decode("utf-8") if isinstance(card, bytes) else card.read_text("utf-8")).validate()
    except ValueError as exc:
        raise DraftforgeError(
            f"the Hub rejected the model card's metadata: {_scrub(' '.join(str(exc).split()))}; "
            "nothing was uploaded"
        ) from None
    except hub_errors as exc:
        raise _hub_error(exc, "check the model card for", repo_id, created=False) from None
    try:
        repo_url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    except hub_errors as exc:
        raise _hub_error(exc, "create the repository", repo_id, created=False) from None
    try:
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.create_commit(
            repo_id, operations, commit_message=message, repo_type="model", revision=revision
        )
    except ValueError as exc:  # the Hub's metadata check of README.md (create_commit validates it)
        raise DraftforgeError(
            f"the Hub rejected the model card's metadata for {repo_id}: {_scrub(' '.join(str(exc).split()))}; "
            f"the repository exists but nothing was committed to it"
        ) from None
    except hub_errors as exc:
        raise _hub_error(exc, "commit to", repo_id, created=True) from None
    return str(repo_url), getattr(info, "commit_url", None)


# ---- the stage ----------------------------------------------------------------------------------
def run(config: PublishConfig) -> PublishResult:
    """Check, gate, write the card, then dry-run into a folder or upload in one commit."""
    problems = config.problems()
    if problems:
        raise DraftforgeError("; ".join(problems))
    inputs = load_inputs(config)
    reason = gate(inputs)
    if reason is not None and not config.force:
        raise DraftforgeError(f"refusing to publish: {reason} (pass --force to publish anyway)")

    names = _report_names(inputs.evals)
    card = render_card(inputs, config.repo_id, config.revision, names)
    message = commit_message(inputs)
    plan = plan_files(inputs, card, names)

    url = commit_url = dry_dir = None
    if config.dry_run is not None:
        dry_dir = str(write_folder(plan, Path(config.dry_run).expanduser()))
    else:
        url, commit_url = upload(plan, config.repo_id, config.private, config.revision, message)

    best = best_result(inputs.evals)
    return PublishResult(
        repo_id=config.repo_id,
        revision=config.revision,
        private=config.private,
        files=tuple(plan),
        commit_message=message,
        dry_run_dir=dry_dir,
        url=url,
        commit_url=commit_url,
        forced_reason=reason,
        alpha=best[1]["alpha"] if best else None,
        speedup=best[1]["speedup"] if best else None,
        gamma=best[1]["gamma"] if best else None,
        eval_reports=tuple(str(ev.path) for ev in inputs.evals),
        search=str(inputs.search_path) if inputs.search_path is not None else None,
        skipped=inputs.skipped,
    )
