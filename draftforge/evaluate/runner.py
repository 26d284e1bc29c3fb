"""`draftforge evaluate`: measure a draft against its target with real speculative decoding.

`run(EvalConfig) -> report dict` loads both models, checks that they share a tokenizer, decodes every
prompt with the target alone (the baseline, same engine with γ = 0), with each γ of the sweep, and,
for greedy runs, with transformers' assisted generation at the first γ given (interleaved with our
runs prompt by prompt, in alternating order, so both see the same machine load); it also computes the
teacher-forced acceptance proxy on the target's own continuations, and writes the
`draftforge.eval/1` report (see report.py) plus a PNG of acceptance by draft position.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draftforge.errors import DraftforgeError
from draftforge.evaluate.report import SCHEMA, problems

#: progress callback: (steps done, steps total, short description)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation needs; validated on construction (all problems reported together)."""

    draft: str
    """Draft model: a folder or a Hub id."""
    target: str
    """Target model: a folder, a Hub id, or a catalog name such as smollm2-135m."""
    prompts: str = "humaneval"
    """humaneval, chat-mini, a MT-bench style .jsonl file, or a text file."""
    gammas: tuple[int, ...] = (4,)
    """Draft tokens per iteration; several values are swept."""
    temperature: float = 0.0
    """0 is greedy (checked for identical output); > 0 samples with exact rejection sampling."""
    top_p: float = 1.0
    max_new_tokens: int = 128
    num_prompts: int | None = 10
    """How many prompts of the set (None: all)."""
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    hf_assisted: bool = True
    """Also time transformers' assisted generation at the first γ given (greedy runs only)."""
    out: str | None = None
    """Report path (.json); the PNG goes beside it. None: eval-<UTC time>.json in the working folder."""
    warmup: bool = True
    threads: int | None = None
    """torch intra-op CPU threads (None: torch's default)."""

    def __post_init__(self) -> None:
        found = []
        if not self.gammas or any(not isinstance(g, int) or g < 1 for g in self.gammas):
            found.append(f"gamma must be positive integers, got {list(self.gammas)}")
        if not self.temperature >= 0:
            found.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            found.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            found.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_prompts is not None and self.num_prompts < 1:
            found.append(f"num_prompts must be >= 1, got {self.num_prompts}")
        if self.threads is not None and self.threads < 1:
            found.append(f"threads must be >= 1, got {self.threads}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            found.append(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if found:
            raise DraftforgeError("invalid evaluate settings: " + "; ".join(found))


def _model_entry(spec: str, path: str, model: Any) -> dict[str, Any]:
    from draftforge.shapes import ModelShape

    try:
        shape = ModelShape.from_hf_config(model.config).to_dict()
    except DraftforgeError:
        shape = None
    return {
        "spec": spec,
        "path": path,
        "params": int(sum(p.numel() for p in model.parameters())),
        "shape": shape,
    }


def _output_paths(out: str | None) -> tuple[Path, Path]:
    from draftforge.provenance import now_iso

    if out is None:
        stamp = now_iso().replace(":", "").replace("-", "").replace("+0000", "Z")
        out = f"eval-{stamp}.json"
    path = Path(os.path.expanduser(out))
    if path.suffix != ".json":
        path = path.with_suffix(path.suffix + ".json") if path.suffix else path.with_suffix(".json")
    png = path.with_suffix(".png")
    for p in (path, png):
        if p.exists():
            raise DraftforgeError(f"{p} exists; choose another --out (reports are never overwritten)")
    return path, png


def _rates(results: list[Any]) -> tuple[int, float]:
    tokens = sum(len(r.tokens) for r in results)
    seconds = sum(r.total_time_s for r in results)
    return tokens, seconds


def proxy_alpha(
    draft: Any, target: Any, prompt_ids: list[int], continuation: list[int], temperature: float
) -> dict:
    """Teacher-forced acceptance proxy over the target's continuation of one prompt (one forward each)."""
    import torch

    from draftforge.evaluate.proxy import acceptance_from_logits

    device = next(target.parameters()).device
    ids = torch.tensor([prompt_ids + continuation], device=device)
    mask = torch.zeros(ids.shape, dtype=torch.bool, device=device)
    # logits at position t predict token t+1: score the positions that predict the continuation
    mask[0, len(prompt_ids) - 1 : ids.shape[1] - 1] = True
    with torch.inference_mode():
        d = draft(input_ids=ids).logits
        t = target(input_ids=ids).logits
    return acceptance_from_logits(d, t, mask, temperature=temperature if temperature > 0 else 1.0)


def run(config: EvalConfig, progress: Progress | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate config.draft against config.target; returns (report, report path)."""
    import torch

    from draftforge.assets import load_model_and_tokenizer, resolve_model
    from draftforge.evaluate import engine
    from draftforge.evaluate.prompts import encode, load_prompts
    from draftforge.evaluate.report import plot_acceptance
    from draftforge.files import write_json
    from draftforge.provenance import device_fingerprint, library_versions, now_iso

    report_path, png_path = _output_paths(config.out)
    if config.threads:
        torch.set_num_threads(config.threads)
    prompts = load_prompts(config.prompts, config.num_prompts)
    target, target_tok = load_model_and_tokenizer(config.target, config.dtype, config.device)
    draft, draft_tok = load_model_and_tokenizer(config.draft, config.dtype, config.device)
    engine.check_compatible(draft, target, draft_tok, target_tok)
    sampling = engine.SamplingConfig(config.temperature, config.top_p)
    eos = target.generation_config.eos_token_id
    if eos is None:
        eos = target_tok.eos_token_id
    encoded = [encode(p, target_tok) for p in prompts]

    run_hf = config.hf_assisted and sampling.greedy
    steps_total = len(prompts) * (2 + len(config.gammas)) + (len(prompts) if run_hf else 0)
    done = 0

    def step(desc: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, steps_total, desc)

    def generator(i: int, gamma: int) -> torch.Generator:
        g = torch.Generator(device=config.device)
        return g.manual_seed(config.seed * 1_000_003 + i * 101 + gamma)

    if config.warmup:  # first calls pay one-off costs (allocations, kernels); keep them out of timings
        engine.target_generate(target, encoded[0], 4, sampling, None, generator(0, 0))
        engine.speculative_generate(
            target, draft, encoded[0], config.gammas[0], 4, sampling, None, generator(0, 1)
        )

    baseline: list[engine.DecodeResult] = []
    spec: dict[int, list[engine.DecodeResult]] = {g: [] for g in config.gammas}
    proxies: list[dict[str, Any]] = []
    hf_gamma = config.gammas[0]
    hf_tokens, hf_seconds, hf_identical = 0, 0.0, True

    def hf_run(i: int, ids: list[int]) -> list[int]:
        nonlocal hf_tokens, hf_seconds
        tokens, secs = engine.hf_assisted_generate(target, draft, ids, hf_gamma, config.max_new_tokens, eos)
        hf_tokens += len(tokens)
        hf_seconds += secs
        step(f"transformers assisted γ={hf_gamma}, prompt {i + 1}")
        return tokens

    for i, ids in enumerate(encoded):
        # HF assisted runs interleaved with ours, before them on odd prompts and after them on even
        # ones, so that both see the same machine load on average
        hf_first = run_hf and i % 2 == 1
        hf_out = hf_run(i, ids) if hf_first else None
        base = engine.target_generate(target, ids, config.max_new_tokens, sampling, eos, generator(i, 0))
        baseline.append(base)
        step(f"target alone, prompt {i + 1}")
        for gamma in config.gammas:
            spec[gamma].append(
                engine.speculative_generate(
                    target, draft, ids, gamma, config.max_new_tokens, sampling, eos, generator(i, gamma)
                )
            )
            step(f"γ={gamma}, prompt {i + 1}")
        if run_hf and not hf_first:
            hf_out = hf_run(i, ids)
        if run_hf:
            hf_identical &= hf_out == spec[hf_gamma][i].tokens
        proxies.append(proxy_alpha(draft, target, ids, base.tokens, config.temperature))
        step(f"proxy, prompt {i + 1}")

    base_tokens, base_seconds = _rates(baseline)
    target_tps = base_tokens / base_seconds if base_seconds > 0 else float("nan")
    proxy_key = "greedy_agree" if sampling.greedy else "alpha"
    proxy_tokens = sum(p["tokens"] for p in proxies)
    proxy_value = (
        sum(p[proxy_key] * p["tokens"] for p in proxies if p["tokens"]) / proxy_tokens
        if proxy_tokens
        else float("nan")
    )

    results = []
    for gamma in config.gammas:
        runs = spec[gamma]
        stats = engine.acceptance_counts(runs, gamma)
        tokens, seconds = _rates(runs)
        tps = tokens / seconds if seconds > 0 else float("nan")
        by_cat: dict[str, list[int]] = defaultdict(list)
        for idx, p in enumerate(prompts):
            by_cat[p.category].append(idx)
        per_category = {}
        for cat, idxs in by_cat.items():
            cat_stats = engine.acceptance_counts([runs[j] for j in idxs], gamma)
            c_tok, c_sec = _rates([runs[j] for j in idxs])
            b_tok, b_sec = _rates([baseline[j] for j in idxs])
            per_category[cat] = {
                "alpha": cat_stats["alpha"],
                "tau": cat_stats["tau"],
                "speedup": (c_tok / c_sec) / (b_tok / b_sec)
                if c_sec > 0 and b_sec > 0 and b_tok
                else float("nan"),
                "n": len(idxs),
            }
        results.append(
            {
                "gamma": gamma,
                "alpha": stats["alpha"],
                "tau": stats["tau"],
                "per_position_acceptance": stats["per_position"],
                "tokens_per_s": tps,
                "target_tokens_per_s": target_tps,
                "speedup": tps / target_tps,
                "draft_time_s": sum(r.draft_time_s for r in runs),
                "verify_time_s": sum(r.verify_time_s for r in runs),
                "iterations": stats["iterations"],
                "generated_tokens": tokens,
                "proxy_alpha": proxy_value,
                "per_category": per_category,
            }
        )
    best = max(
        range(len(results)),
        key=lambda j: -1.0 if math.isnan(results[j]["speedup"]) else results[j]["speedup"],
    )

    hf = None
    if run_hf:
        hf_tps = hf_tokens / hf_seconds if hf_seconds > 0 else float("nan")
        hf = {
            "gamma": hf_gamma,
            "tokens_per_s": hf_tps,
            "speedup": hf_tps / target_tps,
            "outputs_identical": hf_identical,
        }

    report = {
        "schema": SCHEMA,
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint(config.device),
        "draft": _model_entry(config.draft, resolve_model(config.draft), draft),
        "target": _model_entry(config.target, resolve_model(config.target), target),
        "settings": {
            "prompts": config.prompts,
            "num_prompts": len(prompts),
            "max_new_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "seed": config.seed,
        },
        "results": results,
        "hf_assisted": hf,
        "best": best,
    }
    report = _json_clean(report)
    found = problems(report)
    if found:  # a programming error, not a user error
        raise RuntimeError("eval report does not meet its schema: " + "; ".join(found))
    write_json(report_path, report)
    plot_acceptance(report, png_path)
    return report, report_path


def _json_clean(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), tuples -> lists."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return obj
