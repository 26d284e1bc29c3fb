"""The model card of a published draft, generated from its files (nothing typed by hand).

`render_card(inputs, repo_id, revision, report_names)` writes README.md: the Hub's YAML front matter
(base model, library, pipeline, licence, tags), then the draft's shape and why it was chosen (from
`search.json`), the measured acceptance and speedup (from the `draftforge.eval/1` reports), how to
use it with transformers, vLLM and SGLang, and how it was trained (from `draftforge.json`).
`DraftInputs` is what `draftforge.publish.load_inputs` reads and checks; this module only formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

EVAL_SCHEMA = "draftforge.eval/1"
SEARCH_SCHEMA = "draftforge.search/1"

#: Tags every published draft carries (the Hub shows them and searches by them).
CARD_TAGS: tuple[str, ...] = ("speculative-decoding", "draft-model", "draftforge", "distillation")


# ---- what the card is made from -----------------------------------------------------------------
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


def best_result(evals: tuple[EvalReport, ...]) -> tuple[EvalReport, dict[str, Any]] | None:
    """The measured result (report, results entry) with the highest speedup."""
    best: tuple[EvalReport, dict[str, Any]] | None = None
    for ev in evals:
        for r in ev.report["results"]:
            if best is None or r["speedup"] > best[1]["speedup"]:
                best = (ev, r)
    return best


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
    n = device.get("torch_threads")
    threads = f" ({n} thread{'s' if n != 1 else ''})" if n else ""
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
    speedup_range = (
        f" ({_fmt(cand['speedup_low'], '.2f', '×')}–{_fmt(cand['speedup_high'], '.2f', '×')} over the α range)"
        if "speedup_low" in cand and "speedup_high" in cand
        else ""
    )
    lines.append(
        f"- Prediction for this shape (rank {cand.get('rank', '?')}{note}): draft step "
        f"{_fmt(_ms(cand.get('draft_latency_s')), '.3f', ' ms')}, α {_fmt(cand.get('alpha'))} "
        f"(range {_fmt(cand.get('alpha_low'))}–{_fmt(cand.get('alpha_high'))}), γ {cand.get('gamma', '—')}, "
        f"τ {_fmt(cand.get('tau'), '.2f')}, speedup {_fmt(cand.get('speedup'), '.2f', '×')}{speedup_range}, "
        f"{_fmt(cand.get('tokens_per_s'), '.1f')} tokens/s."
    )
    if isinstance(s.get("why"), str) and s["why"]:
        lines.append(f"- The search's reason: {s['why']}")
    baselines = [b for b in s.get("baselines") or [] if isinstance(b, dict)]
    if baselines:
        lines += ["", "Existing drafts scored by the same models:", ""]
        lines += ["| draft | parameters | α | γ | predicted speedup |", "|---|---:|---:|---:|---:|"]
        for b in baselines:
            params = b.get("params")
            verdict = (
                f"not usable: {b.get('reason') or 'infeasible'}"
                if b.get("feasible") is False
                else _fmt(b.get("speedup"), ".2f", "×")
            )
            lines.append(
                f"| {b.get('name', '?')} | {f'{params:,}' if isinstance(params, int) else '—'} | "
                f"{_fmt(b.get('alpha'))} | {b.get('gamma', '—')} | {verdict} |"
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
    per_cat = r.get("per_category")
    if isinstance(per_cat, dict) and per_cat:
        lines += ["", f"By prompt category (best row, γ = {r['gamma']}):", ""]
        lines += ["| category | prompts | α | τ | speedup |", "|---|---:|---:|---:|---:|"]
        for cat, m in sorted(per_cat.items()):
            m = m if isinstance(m, dict) else {}
            lines.append(
                f"| {cat} | {m.get('n', '—')} | {_fmt(m.get('alpha'))} | {_fmt(m.get('tau'), '.2f')} | "
                f"{_fmt(m.get('speedup'), '.2f', '×')} |"
            )
        lines.append("")
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
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'device = "cuda" if torch.cuda.is_available() else "cpu"',
        f'tokenizer = AutoTokenizer.from_pretrained("{target}")',
        f'target = AutoModelForCausalLM.from_pretrained("{target}", dtype="auto").to(device)',
        f'draft = AutoModelForCausalLM.from_pretrained("{repo_id}"{rev_kw}, dtype="auto").to(device)',
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


#: keys of draftforge.json's `data` that only mean something on the training machine (a cache path).
_LOCAL_ONLY_DATA_KEYS = ("cached",)


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
        shown = {k: v for k, v in data.items() if k not in _LOCAL_ONLY_DATA_KEYS}
        lines.append("- Data: " + ", ".join(f"{k} = {_plain(v)}" for k, v in shown.items()) + ".")
    loss = meta.get("loss")
    if loss is not None:
        lines.append(f"- Loss: {_plain(loss)}.")
    lines.append(
        f"- Optimiser steps: {meta.get('steps', 'unrecorded')}; tokens processed in training: "
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
        if r["speedup"] < 1:
            headline += (
                "\n\n> **Warning:** this draft made decoding slower in every measurement below; "
                "it was published with --force."
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
