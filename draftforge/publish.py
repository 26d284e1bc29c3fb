"""Publish a draft to the Hugging Face Hub with a model card generated from its files.

`run(PublishConfig) -> PublishResult` reads a draft folder (HF files + `draftforge.json`,
`draftforge.draft/1`), the eval reports that measured it (`draftforge.eval/1`) and the search result
that chose its shape (`draftforge.search/1`), refuses a draft without a measured speedup of at least 1
(unless `force`), writes the model card (`README.md`) and then either copies the exact upload into a
new folder (`dry_run`) or uploads it in one commit. Nothing in the card is typed by hand: every
figure comes from those files. Retraining or re-measuring is not this module's business.

The Hub token comes from huggingface_hub's own lookup (HF_TOKEN or `hf auth login`); it is never
printed, written, or kept in an error message.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from draftforge.errors import DraftforgeError
from draftforge.files import ensure_new_dir, read_versioned
from draftforge.shapes import ModelShape

DRAFT_SCHEMA = "draftforge.draft/1"
EVAL_SCHEMA = "draftforge.eval/1"
SEARCH_SCHEMA = "draftforge.search/1"

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

#: Tags every published draft carries (the Hub shows them and searches by them).
CARD_TAGS: tuple[str, ...] = ("speculative-decoding", "draft-model", "draftforge", "distillation")

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
@dataclass(frozen=True)
class EvalReport:
    path: Path
    report: dict[str, Any]


@dataclass(frozen=True)
class DraftInputs:
    """Everything the card and the upload are made from."""

    draft_dir: Path
    meta: dict[str, Any]
    model_files: tuple[Path, ...]
    evals: tuple[EvalReport, ...]
    search_path: Path | None
    search: dict[str, Any] | None
    #: draftforge.json names a search result that could not be found (only allowed with force).
    search_missing: str | None = None
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        recipe = self.meta.get("recipe") or {}
        return str(recipe.get("name") or self.draft_dir.resolve().name)

    @property
    def shape(self) -> ModelShape:
        return ModelShape.from_dict(self.meta["shape"])


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
                if not isinstance(r, dict) or not isinstance(r.get(key), (int, float)):
                    problems.append(f"results[{i}].{key} is missing or not a number")
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
def best_result(evals: tuple[EvalReport, ...]) -> tuple[EvalReport, dict[str, Any]] | None:
    """The measured result (report, results entry) with the highest speedup."""
    best: tuple[EvalReport, dict[str, Any]] | None = None
    for ev in evals:
        for r in ev.report["results"]:
            if best is None or r["speedup"] > best[1]["speedup"]:
                best = (ev, r)
    return best


def gate(inputs: DraftInputs) -> str | None:
    """None when the draft may be published; else the reason it may not (one sentence)."""
    if inputs.search_missing is not None:
        return (
            f"draftforge.json names the search result {inputs.search_missing!r}, which was not found; "
            "pass it with --search FILE"
        )
    best = best_result(inputs.evals)
    if best is None:
        return (
            f"{inputs.draft_dir} has no eval report, so its speedup is unmeasured; run `draftforge evaluate "
            f"--draft {inputs.draft_dir} --out {inputs.draft_dir}/eval.json` or pass --eval FILE"
        )
    if best[1]["speedup"] < 1:
        return (
            f"the best measured speedup is {best[1]['speedup']:.3f}x (below 1: the draft slows decoding down, "
            f"from {best[0].path})"
        )
    return None


# ---- the model card -----------------------------------------------------------------------------
def card_metadata(inputs: DraftInputs) -> dict[str, Any]:
    """The card's YAML front matter, in the Hub's vocabulary (ModelCardData fields)."""
    target = inputs.meta["target"]
    data: dict[str, Any] = {}
    if target.get("hub_id"):
        data["base_model"] = target["hub_id"]
    data["library_name"] = "transformers"
    data["pipeline_tag"] = "text-generation"
    if target.get("license"):
        data["license"] = target["license"]
    data["tags"] = list(CARD_TAGS)
    return data


def _fmt(x: Any, spec: str = ".3f", suffix: str = "") -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "—"
    return f"{x:{spec}}{suffix}"


def _device_label(device: Any) -> str:
    if not isinstance(device, dict):
        return str(device) if device else "unrecorded device"
    if device.get("gpu"):
        extra = f", CUDA {device['cuda']}" if device.get("cuda") else ""
        return f"{device['gpu']}{extra}"
    threads = f" ({device['torch_threads']} threads)" if device.get("torch_threads") else ""
    return f"{device.get('cpu') or device.get('device', 'cpu')}{threads}"


def _versions_label(versions: Any) -> str:
    if not isinstance(versions, dict):
        return "unrecorded"
    keys = ("python", "torch", "transformers", "draftforge")
    return ", ".join(f"{k} {versions[k]}" for k in keys if versions.get(k))


def _target_id(inputs: DraftInputs) -> str:
    target = inputs.meta["target"]
    return str(target.get("hub_id") or target.get("spec") or target.get("name") or "TARGET")


def _usage_gamma(inputs: DraftInputs) -> tuple[int, str]:
    best = best_result(inputs.evals)
    if best is not None:
        return int(best[1]["gamma"]), "the γ with the best measured speedup"
    cand = _search_candidate(inputs)[0]
    if cand is not None and isinstance(cand.get("gamma"), int):
        return cand["gamma"], "the γ the search predicted best (not measured)"
    return 4, "a default (this draft has no measurement and no search result)"


def _search_candidate(inputs: DraftInputs) -> tuple[dict[str, Any] | None, str]:
    """The search candidate of this draft: the one with the draft's shape, else the recorded rank."""
    if inputs.search is None:
        return None, ""
    shape = inputs.meta["shape"]
    candidates = [c for c in inputs.search["candidates"] if isinstance(c, dict)]
    for c in candidates:
        if c.get("shape") == shape:
            return c, ""
    rank = (inputs.meta.get("search") or {}).get("rank") or 1
    for c in candidates:
        if c.get("rank") == rank:
            return c, f" (note: the draft's shape differs from this rank-{rank} candidate's)"
    return None, ""


def _shape_section(inputs: DraftInputs) -> list[str]:
    shape = inputs.shape
    target_shape = None
    target_params = None
    for ev in inputs.evals:
        t = ev.report.get("target") or {}
        if isinstance(t.get("shape"), dict):
            try:
                target_shape = ModelShape.from_dict(t["shape"])
            except (DraftforgeError, TypeError):
                target_shape = None
            target_params = t.get("params")
            break
    rows = [
        ("layers", shape.num_layers, target_shape and target_shape.num_layers),
        ("hidden size", shape.hidden_size, target_shape and target_shape.hidden_size),
        (
            "attention heads / KV heads",
            f"{shape.num_heads} / {shape.num_kv_heads}",
            target_shape and f"{target_shape.num_heads} / {target_shape.num_kv_heads}",
        ),
        ("intermediate size", shape.intermediate_size, target_shape and target_shape.intermediate_size),
        ("vocabulary", shape.vocab_size, target_shape and target_shape.vocab_size),
        ("tied embeddings", shape.tie_embeddings, target_shape and target_shape.tie_embeddings),
        (
            "parameters",
            f"{int(inputs.meta['params']):,}",
            f"{target_params:,}" if isinstance(target_params, int) else None,
        ),
    ]
    lines = ["## Shape", ""]
    if target_shape is not None:
        lines += ["| | this draft | target |", "|---|---:|---:|"]
        lines += [f"| {name} | {d} | {t if t is not None else '—'} |" for name, d, t in rows]
    else:
        lines += ["| | this draft |", "|---|---:|"]
        lines += [f"| {name} | {d} |" for name, d, _ in rows]
    lines += ["", f"Architecture: {shape.family} (`{shape.describe()}`)."]
    return lines


def _latency_error(report: Any) -> str | None:
    """'MAPE 6.1%, 90% within ±10%, worst -18.0% (n = 40 held-out measurements)' from an error report."""
    if not isinstance(report, dict) or not isinstance(report.get("mape"), (int, float)):
        return None
    parts = [f"MAPE {report['mape']:.1%}"]
    if isinstance(report.get("within_10pct"), (int, float)):
        parts.append(f"{report['within_10pct']:.0%} within ±10%")
    if isinstance(report.get("worst_error"), (int, float)):
        parts.append(f"worst {report['worst_error']:+.1%}")
    n = f" (n = {report['n']} held-out measurements)" if isinstance(report.get("n"), int) else ""
    return ", ".join(parts) + n


def _describe_latency_model(latency: Any) -> str:
    """One line for search.json's `latency_model`: the draft's model label and its held-out error.

    Accepts search's form ({draft_label, draft: provenance, target_by_batch_size}) and a bare
    provenance ({kind, label, error_report}).
    """
    if isinstance(latency, str):
        return latency
    if not isinstance(latency, dict):
        return "unrecorded"
    prov = latency.get("draft") if isinstance(latency.get("draft"), dict) else latency
    label = latency.get("draft_label") or prov.get("label") or prov.get("kind") or "unlabelled"
    error = _latency_error(prov.get("error_report") or prov.get("error"))
    if error is not None:
        return f"{label}; its error on held-out shapes: {error}"
    if prov.get("kind") == "spec-sheet":
        return f"{label} (a spec-sheet estimate, not fitted to measurements: no error report)"
    return f"{label}; no error report recorded"


_SEARCH_INPUT_KEYS = ("target", "gpu", "target_gpu", "tp", "batch_sizes", "context", "dtype", "runtime")


def _why_section(inputs: DraftInputs) -> list[str]:
    lines = ["### Why this shape", ""]
    if inputs.search is None:
        if inputs.search_missing:
            lines.append(
                f"The search result this draft names ({inputs.search_missing}) was not available when it was "
                "published, so the prediction behind the shape is not shown here."
            )
        else:
            lines.append("This shape is not from a search: it was given explicitly in the recipe.")
        return lines
    s = inputs.search
    cand, note = _search_candidate(inputs)
    inputs_block = s.get("inputs") if isinstance(s.get("inputs"), dict) else {}
    given = ", ".join(
        f"{k} = {_plain(inputs_block[k])}" for k in _SEARCH_INPUT_KEYS if inputs_block.get(k) is not None
    )
    if given:
        lines.append(f"Chosen by `draftforge search` ({given}).")
    else:
        lines.append("Chosen by `draftforge search`.")
    lines.append("")
    lines.append(f"- Latency model: {_describe_latency_model(s.get('latency_model'))}.")
    acc = s.get("acceptance_model")
    if isinstance(acc, dict):
        lines.append(f"- Acceptance model: {acc.get('source', 'unrecorded')} (α predicted, not measured).")
    if cand is None:
        lines.append("- This draft's shape is not among the search's candidates.")
        return lines
    lines.append(
        f"- Prediction for this shape (rank {cand.get('rank', '?')}{note}): draft step "
        f"{_fmt(_ms(cand.get('draft_latency_s')), '.3f', ' ms')}, α {_fmt(cand.get('alpha'))} "
        f"(range {_fmt(cand.get('alpha_low'))}–{_fmt(cand.get('alpha_high'))}), γ {cand.get('gamma', '—')}, "
        f"τ {_fmt(cand.get('tau'), '.2f')}, speedup {_fmt(cand.get('speedup'), '.2f', '×')}, "
        f"{_fmt(cand.get('tokens_per_s'), '.1f')} tokens/s."
    )
    baselines = [b for b in s.get("baselines") or [] if isinstance(b, dict)]
    if baselines:
        lines += ["", "Existing drafts scored by the same models:", ""]
        lines += ["| draft | parameters | α | γ | predicted speedup |", "|---|---:|---:|---:|---:|"]
        for b in baselines:
            params = b.get("params")
            lines.append(
                f"| {b.get('name', '?')} | {f'{params:,}' if isinstance(params, int) else '—'} | "
                f"{_fmt(b.get('alpha'))} | {b.get('gamma', '—')} | {_fmt(b.get('speedup'), '.2f', '×')} |"
            )
    return lines


def _ms(seconds: Any) -> float | None:
    return seconds * 1e3 if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None


def _measured_section(inputs: DraftInputs, report_names: dict[Path, str]) -> list[str]:
    lines = ["## Measured acceptance and speedup", ""]
    if not inputs.evals:
        lines.append("**This draft has not been measured** (published with --force, without an eval report).")
        return lines
    lines += [
        "Measured with `draftforge evaluate` (speculative decoding against the target, "
        "speedup = tokens/s of draft+target over the target alone, same prompts and settings).",
        "",
        "| report | device | prompts | temperature | γ | α | τ | tokens/s | target tokens/s | speedup |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ev in inputs.evals:
        rep = ev.report
        st = rep.get("settings") or {}
        prompts = f"{st.get('prompts', '?')} ({st.get('num_prompts', '?')} prompts, {st.get('max_new_tokens', '?')} new tokens)"
        for r in rep["results"]:
            lines.append(
                f"| {report_names[ev.path]} | {_device_label(rep.get('device'))} | {prompts} | "
                f"{_fmt(st.get('temperature'), 'g')} | {r['gamma']} | {_fmt(r['alpha'])} | "
                f"{_fmt(r.get('tau'), '.2f')} | {_fmt(r.get('tokens_per_s'), '.1f')} | "
                f"{_fmt(r.get('target_tokens_per_s'), '.1f')} | **{_fmt(r['speedup'], '.2f', '×')}** |"
            )
    best = best_result(inputs.evals)
    assert best is not None
    ev, r = best
    per_pos = r.get("per_position_acceptance")
    lines.append("")
    if isinstance(per_pos, list) and per_pos:
        lines.append(
            f"Acceptance by draft position at γ = {r['gamma']} (best row): "
            + ", ".join(_fmt(a, ".2f") for a in per_pos)
            + "."
        )
    for ev2 in inputs.evals:
        hf = ev2.report.get("hf_assisted")
        if isinstance(hf, dict):
            same = hf.get("outputs_identical")
            lines.append(
                f"transformers assisted generation ({report_names[ev2.path]}, γ = {hf.get('gamma', '?')}): "
                f"{_fmt(hf.get('tokens_per_s'), '.1f')} tokens/s, speedup {_fmt(hf.get('speedup'), '.2f', '×')}"
                + (
                    f"; outputs identical to the target's: {'yes' if same else 'no'}"
                    if same is not None
                    else ""
                )
                + "."
            )
    versions = sorted({_versions_label(ev2.report.get("versions")) for ev2 in inputs.evals})
    lines += ["", "Library versions: " + "; ".join(versions) + "."]
    return lines


def _usage_section(inputs: DraftInputs, repo_id: str, revision: str | None) -> list[str]:
    target = _target_id(inputs)
    gamma, why = _usage_gamma(inputs)
    rev_kw = f', revision="{revision}"' if revision else ""
    vllm_cfg: dict[str, Any] = {"method": "draft_model", "model": repo_id, "num_speculative_tokens": gamma}
    if revision:
        vllm_cfg["revision"] = revision
    sglang_rev = f" \\\n    --speculative-draft-model-revision {revision}" if revision else ""
    return [
        "## How to use",
        "",
        f"Use it as the draft of `{target}` (the draft shares its tokenizer). γ = {gamma} below is {why}.",
        "",
        "### transformers (assisted generation)",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{target}")',
        f'target = AutoModelForCausalLM.from_pretrained("{target}", dtype="auto", device_map="auto")',
        f'draft = AutoModelForCausalLM.from_pretrained("{repo_id}"{rev_kw}, dtype="auto", device_map="auto")',
        "",
        'messages = [{"role": "user", "content": "Write a Python function that reverses a string."}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ").to(target.device)",
        "out = target.generate(",
        "    **inputs,",
        "    assistant_model=draft,",
        f"    num_assistant_tokens={gamma},",
        '    num_assistant_tokens_schedule="constant",',
        "    do_sample=False,",
        "    max_new_tokens=128,",
        ")",
        'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        "### vLLM",
        "",
        "```python",
        "from vllm import LLM",
        "",
        f'llm = LLM(model="{target}", speculative_config={json.dumps(vllm_cfg)})',
        "```",
        "",
        "```bash",
        f"vllm serve {target} --speculative-config '{json.dumps(vllm_cfg)}'",
        "```",
        "",
        "### SGLang",
        "",
        "```bash",
        f"python -m sglang.launch_server --model-path {target} \\",
        "    --speculative-algorithm STANDALONE \\",
        f"    --speculative-draft-model-path {repo_id}{sglang_rev} \\",
        f"    --speculative-num-steps {gamma} --speculative-eagle-topk 1 "
        f"--speculative-num-draft-tokens {gamma + 1}",
        "```",
    ]


def _training_section(inputs: DraftInputs) -> list[str]:
    meta = inputs.meta
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    lines = ["## How it was trained", ""]
    lines.append(
        f"- Recipe: `{recipe.get('name', inputs.name)}` (sha256 `{str(meta.get('recipe_sha256', 'unrecorded'))[:16]}…`), "
        "run with `draftforge distill`; the full recipe is below."
    )
    target = meta["target"]
    lines.append(
        f"- Teacher (target): {target.get('hub_id') or target.get('spec') or target.get('name')}"
        f" (tokenizer {target.get('tokenizer') or 'of the target'})."
    )
    init = meta.get("init")
    if isinstance(init, dict) and init:
        lines.append("- Initialisation: " + ", ".join(f"{k} = {v}" for k, v in init.items()) + ".")
    data = meta.get("data")
    if isinstance(data, dict) and data:
        lines.append("- Data: " + ", ".join(f"{k} = {_plain(v)}" for k, v in data.items()) + ".")
    loss = meta.get("loss")
    if loss is not None:
        lines.append(f"- Loss: {_plain(loss)}.")
    lines.append(
        f"- Optimiser steps: {meta.get('steps', 'unrecorded')}; training tokens: "
        f"{_fmt(meta.get('tokens'), ',d') if isinstance(meta.get('tokens'), int) else meta.get('tokens', 'unrecorded')}."
    )
    init_m, final_m = meta.get("initial_metrics"), meta.get("final_metrics")
    if isinstance(init_m, dict) or isinstance(final_m, dict):
        keys = sorted(set(init_m or {}) | set(final_m or {}))
        lines += [
            "",
            "| metric (from `draftforge distill`) | before training | after training |",
            "|---|---:|---:|",
        ]
        for k in keys:
            lines.append(
                f"| {k} | {_fmt((init_m or {}).get(k), '.4f')} | {_fmt((final_m or {}).get(k), '.4f')} |"
            )
    if meta.get("device"):
        lines += [
            "",
            f"Trained on: {_device_label(meta['device'])}; {_versions_label(meta.get('versions'))}.",
        ]
    if recipe:
        lines += [
            "",
            "<details><summary>Full recipe (resolved)</summary>",
            "",
            "```yaml",
            yaml.safe_dump(recipe, sort_keys=False).rstrip(),
            "```",
            "",
            "</details>",
        ]
    return lines


def _count(n: int) -> str:
    """13408 -> '13.4K', 134515008 -> '134.5M', 6.7e9 -> '6.7B'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _plain(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def render_card(
    inputs: DraftInputs, repo_id: str, revision: str | None, report_names: dict[Path, str]
) -> str:
    """The README.md: Hub front matter, then shape, measurements, usage and training, from the files."""
    from huggingface_hub import ModelCardData

    front = ModelCardData(**card_metadata(inputs)).to_yaml()
    target = _target_id(inputs)
    params = int(inputs.meta["params"])
    best = best_result(inputs.evals)
    if best is not None:
        _, r = best
        headline = (
            f"Measured: α = {_fmt(r['alpha'])}, τ = {_fmt(r.get('tau'), '.2f')}, speedup "
            f"**{_fmt(r['speedup'], '.2f', '×')}** at γ = {r['gamma']} on {_device_label(best[0].report.get('device'))}."
        )
    else:
        headline = "Not measured: published with --force and no eval report."
    body = [
        f"# {repo_id.split('/', 1)[1]}",
        "",
        f"A {_count(params)}-parameter **draft model for speculative decoding** with `{target}` as the target, "
        "distilled from it with draftforge and shaped for latency: at small batch a draft's "
        "latency is set mostly by its depth, so draftforge picks the shape by measured latency and predicted "
        "acceptance.",
        "",
        headline,
        "",
        *_shape_section(inputs),
        "",
        *_why_section(inputs),
        "",
        *_measured_section(inputs, report_names),
        "",
        *_usage_section(inputs, repo_id, revision),
        "",
        *_training_section(inputs),
        "",
        "## Files",
        "",
        "- `draftforge.json`: how this draft was made (shape, target, recipe, data, metrics, provenance).",
    ]
    for path, name in report_names.items():
        body.append(f"- `{name}`: eval report (`{EVAL_SCHEMA}`) from {path.name}.")
    if inputs.search is not None:
        body.append(f"- `search.json`: the search result (`{SEARCH_SCHEMA}`) that chose the shape.")
    body += ["", "This card was generated by `draftforge publish` from those files."]
    return f"---\n{front}\n---\n\n" + "\n".join(body) + "\n"


def commit_message(inputs: DraftInputs) -> str:
    best = best_result(inputs.evals)
    if best is None:
        return f"draftforge: upload draft {inputs.name} (unmeasured)"
    r = best[1]
    return f"draftforge: upload draft {inputs.name} (α={r['alpha']:.3f}, speedup={r['speedup']:.2f}x, γ={r['gamma']})"


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


def _scrub(text: str) -> str:
    """Remove the user's token from a message, whatever path it came by."""
    from huggingface_hub import get_token

    token = get_token()
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
    """Create the repository if needed and upload `plan` in one commit; returns (repo url, commit url)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError

    hub_errors = (HfHubHTTPError, HTTPError, LocalTokenNotFoundError, ConnectionError, TimeoutError, OSError)
    api = HfApi()
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
        for name, src in plan.items()
    ]
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
