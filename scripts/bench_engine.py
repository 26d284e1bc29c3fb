"""Benchmark the speculative decoding engine against transformers' assisted generation.

(a) Same target, draft, γ and prompts: our engine vs `generate(assistant_model=...)` (constant γ,
    no confidence cut-off), run interleaved prompt by prompt; prints tokens/s of both, their ratio and
    whether the greedy outputs are identical. The target alone (our γ = 0 loop and HF `generate`) is
    timed too.
(b) Engine overhead: the target as its own draft (α = 1) must give τ = γ + 1 exactly, and the time
    per iteration should be close to γ single-token target steps plus one (γ+1)-token verification,
    each timed in isolation with the same cache handling.

The default pair is SmolLM2-135M-Instruct (offline from PyPI) with a draft made of its first 24
layers (shorter cuts of SmolLM2 almost never agree with it). Timings on a shared CPU are noisy: only
the side-by-side ratios mean anything.

    python scripts/bench_engine.py --num-prompts 4 --max-new-tokens 64 --gamma 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="smollm2-135m", help="target folder, Hub id or catalog name")
    ap.add_argument("--draft", default=None, help="draft folder or Hub id (default: truncated target)")
    ap.add_argument("--draft-layers", type=int, default=24, help="layers of the truncated-target draft")
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--prompts", default="humaneval")
    ap.add_argument("--num-prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="passes over the prompts (interleaved)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--skip-overhead", action="store_true", help="skip part (b)")
    ap.add_argument("--json-out", default=None, help="also write the figures to this JSON file")
    return ap.parse_args(argv)


def step_times(model, prompt_ids: list[int], gamma: int, repeats: int = 20) -> tuple[float, float]:
    """Mean seconds of one single-token cached forward and of one (γ+1)-token cached forward.

    Means, not medians: on a shared machine a forward is now and then descheduled for 10-20 ms, and
    the engine's per-iteration time (a sum) includes those stalls too.
    """
    import torch

    from draftforge.evaluate.engine import _Runner, _sync, prefill

    device = next(model.parameters()).device
    runner = _Runner(model)
    prompt = torch.tensor([prompt_ids], device=device)
    with torch.inference_mode():
        prefill(runner, prompt)
        base = runner.length
        one = torch.tensor([[prompt_ids[-1]]], device=device)
        many = torch.tensor([[prompt_ids[-1]] * (gamma + 1)], device=device)
        singles, verifies = [], []
        for _ in range(repeats):
            for ids, sink in ((one, singles), (many, verifies)):
                _sync(device)
                t0 = time.perf_counter()
                runner.forward(ids, keep=1 if ids.shape[1] == 1 else 0)
                _sync(device)
                sink.append(time.perf_counter() - t0)
                runner.rollback(base)
    return statistics.fmean(singles), statistics.fmean(verifies)


def compare(target, draft, prompts: list[list[int]], gamma: int, n: int, eos, repeats: int = 1) -> dict:
    """Part (a): our engine vs transformers' assisted generation, interleaved prompt by prompt."""
    from draftforge.evaluate import engine

    # warm-up of every path
    engine.speculative_generate(target, draft, prompts[0], gamma, 4, eos_token_id=eos)
    engine.target_generate(target, prompts[0], 4, eos_token_id=eos)
    engine.hf_assisted_generate(target, draft, prompts[0], gamma, 4, eos)
    engine.hf_greedy_generate(target, prompts[0], 4, eos)

    totals = {"ours": [0, 0.0], "hf": [0, 0.0], "base": [0, 0.0], "hf_base": [0, 0.0]}
    identical = True
    # prompts on which two outputs agree, and where they first diverge (bf16 rounding can flip a
    # near-tie argmax between a 1-token and a (γ+1)-token forward; fp32 should agree everywhere)
    pairs = {
        "ours_vs_hf_assisted": ("ours", "hf"),
        "ours_vs_target_alone": ("ours", "base"),
        "target_alone_vs_hf_greedy": ("base", "hf_base"),
        "hf_assisted_vs_hf_greedy": ("hf", "hf_base"),
    }
    agree = {name: 0 for name in pairs}
    first_divergence: dict[str, list[int | None]] = {name: [] for name in pairs}
    ratios, accepted, iterations, draft_s, verify_s = [], 0, 0, 0.0, 0.0
    for rep in range(repeats):
        for i, ids in enumerate(prompts):
            order = ("ours", "hf") if (i + rep) % 2 == 0 else ("hf", "ours")
            got = {}
            for who in order:
                if who == "ours":
                    res = engine.speculative_generate(target, draft, ids, gamma, n, eos_token_id=eos)
                    got["ours"] = (res.tokens, res.total_time_s)
                    accepted += sum(res.accepted)
                    iterations += res.iterations
                    draft_s += res.draft_time_s
                    verify_s += res.verify_time_s
                else:
                    got["hf"] = engine.hf_assisted_generate(target, draft, ids, gamma, n, eos)
            base = engine.target_generate(target, ids, n, eos_token_id=eos)
            got["base"] = (base.tokens, base.total_time_s)
            device = next(target.parameters()).device
            engine._sync(device)
            t0 = time.perf_counter()
            ref = engine.hf_greedy_generate(target, ids, n, eos)
            engine._sync(device)
            got["hf_base"] = (ref, time.perf_counter() - t0)
            identical &= got["ours"][0] == got["hf"][0] == got["base"][0] == ref
            for name, (x, y) in pairs.items():
                a, b = got[x][0], got[y][0]
                agree[name] += a == b
                diff = next((k for k, (u, v) in enumerate(zip(a, b, strict=False)) if u != v), None)
                if diff is None and len(a) != len(b):
                    diff = min(len(a), len(b))
                first_divergence[name].append(diff)
            for key, (tokens, secs) in got.items():
                totals[key][0] += len(tokens)
                totals[key][1] += secs
            ratios.append((len(got["ours"][0]) / got["ours"][1]) / (len(got["hf"][0]) / got["hf"][1]))
    tps = {k: v[0] / v[1] for k, v in totals.items()}
    return {
        "ours_tokens_per_s": tps["ours"],
        "hf_assisted_tokens_per_s": tps["hf"],
        "ratio_ours_over_hf": tps["ours"] / tps["hf"],
        "median_per_prompt_ratio": statistics.median(ratios),
        "tau": (accepted + iterations) / iterations,
        "draft_time_s": draft_s,
        "verify_time_s": verify_s,
        "target_only_ours_tokens_per_s": tps["base"],
        "target_only_hf_generate_tokens_per_s": tps["hf_base"],
        "speedup_ours": tps["ours"] / tps["base"],
        "speedup_hf_assisted": tps["hf"] / tps["base"],
        "outputs_identical": identical,
        "prompts_agreeing": agree,
        "first_divergence": first_divergence,
    }


def overhead(target, prompt: list[int], gamma: int, rounds: int = 3) -> dict:
    """Part (b): the target as its own draft; τ must be γ+1 and an iteration ≈ γ steps + 1 verify.

    Each round decodes 8 iterations and then times the isolated steps right away, so that both
    see the same machine load; the ratio is the median over rounds.
    """
    from draftforge.evaluate import engine

    engine.speculative_generate(target, target, prompt, gamma, gamma + 1)  # warm-up
    taus, measured, predicted, steps, verifies, ratios = [], [], [], [], [], []
    for _ in range(rounds):
        res = engine.speculative_generate(target, target, prompt, gamma, (gamma + 1) * 8)
        t_step, t_verify = step_times(target, prompt, gamma, repeats=8 * gamma)
        per_iter = (res.draft_time_s + res.verify_time_s) / res.iterations
        taus.append(res.tau)
        measured.append(per_iter)
        predicted.append(gamma * t_step + t_verify)
        steps.append(t_step)
        verifies.append(t_verify)
        ratios.append(measured[-1] / predicted[-1])
    return {
        "tau": min(taus),
        "tau_expected": gamma + 1,
        "iterations": res.iterations,
        "rounds": rounds,
        "measured_s_per_iteration": statistics.median(measured),
        "step_s": statistics.median(steps),
        "verify_s": statistics.median(verifies),
        "predicted_s_per_iteration": statistics.median(predicted),
        "ratio_measured_over_predicted": statistics.median(ratios),
        "ratios": ratios,
    }


def print_a(a: dict, pair: str, gamma: int, num_prompts: int, n: int) -> None:
    print(f"(a) {pair}, γ={gamma}, {num_prompts} prompts x {n} tokens")
    print(
        f"    ours {a['ours_tokens_per_s']:.2f} tok/s | HF assisted {a['hf_assisted_tokens_per_s']:.2f} tok/s"
        f" | ratio {a['ratio_ours_over_hf']:.3f} (median per prompt {a['median_per_prompt_ratio']:.3f})"
    )
    print(
        f"    τ {a['tau']:.2f}; target alone: ours {a['target_only_ours_tokens_per_s']:.2f} tok/s | "
        f"HF generate {a['target_only_hf_generate_tokens_per_s']:.2f} tok/s"
    )
    print(
        f"    greedy outputs identical (ours, HF assisted, target alone, HF greedy): {a['outputs_identical']}"
    )
    if not a["outputs_identical"]:
        print(f"    prompts agreeing: {a['prompts_agreeing']}; first divergence: {a['first_divergence']}")


def print_b(b: dict, gamma: int) -> None:
    print(
        f"(b) self-draft γ={gamma}: τ = {b['tau']:.2f} (expected {gamma + 1}), "
        f"{b['rounds']} rounds of {b['iterations']} iterations"
    )
    print(
        f"    per iteration {b['measured_s_per_iteration'] * 1e3:.1f} ms vs γ·step + verify = "
        f"{gamma}×{b['step_s'] * 1e3:.1f} + {b['verify_s'] * 1e3:.1f} = {b['predicted_s_per_iteration'] * 1e3:.1f} ms "
        f"(median ratio {b['ratio_measured_over_predicted']:.3f}; rounds "
        + ", ".join(f"{r:.3f}" for r in b["ratios"])
        + ")"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from draftforge.assets import load_model_and_tokenizer
    from draftforge.evaluate import engine
    from draftforge.evaluate.prompts import encode, load_prompts
    from draftforge.evaluate.truncate import truncated_draft
    from draftforge.provenance import cpu_model, device_fingerprint, library_versions, now_iso

    if args.threads:
        torch.set_num_threads(args.threads)
    target, tok = load_model_and_tokenizer(args.target, args.dtype, args.device)
    if args.draft:
        draft, dtok = load_model_and_tokenizer(args.draft, args.dtype, args.device)
        engine.check_compatible(draft, target, dtok, tok)
        draft_label = args.draft
    else:
        draft = truncated_draft(target, args.draft_layers)
        draft_label = f"{args.target} first {args.draft_layers} layers"
    eos = target.generation_config.eos_token_id
    prompts = [encode(p, tok) for p in load_prompts(args.prompts, args.num_prompts)]
    out = {
        "schema": "draftforge.bench-engine/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint(args.device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "target": args.target,
        "draft": draft_label,
        "gamma": args.gamma,
        "prompts": f"{args.prompts} x{len(prompts)}",
        "max_new_tokens": args.max_new_tokens,
    }
    out["a"] = compare(target, draft, prompts, args.gamma, args.max_new_tokens, eos, args.repeats)
    print_a(out["a"], f"{draft_label} -> {args.target}", args.gamma, len(prompts), args.max_new_tokens)
    if not args.skip_overhead:
        out["b"] = overhead(target, prompts[0], args.gamma)
        print_b(out["b"], args.gamma)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
