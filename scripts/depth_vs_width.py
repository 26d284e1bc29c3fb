"""Deep-narrow vs shallow-wide drafts of equal decoder size: which is faster on this device?

The seed paper (Yan et al., "Decoding Speculative Decoding") found draft latency driven by depth,
not width. This measures it: for each family, shapes with the same decoder parameters (layers x
hidden² constant) at 4x fewer layers and 2x the width each step, one decode forward each (batch 1,
one new token, a filled KV cache), interleaved over rounds, and prints each latency and its ratio
to the shallowest shape of the family.

    python scripts/depth_vs_width.py                      # CPU, fp32, eager
    python scripts/depth_vs_width.py --device cuda --dtype bf16 --runtime cuda-graph
"""

from __future__ import annotations

import argparse
import json


def families(device: str) -> list[tuple[int, tuple[int, ...]]]:
    """(base hidden, depths) per family: depths[0] layers at the base width, then 4x shallower."""
    if device.startswith("cuda"):
        return [(1024, (32, 8, 2)), (2048, (24, 6))]
    return [(256, (16, 4, 1)), (512, (16, 4, 1))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--runtime", default="eager", choices=("eager", "cuda-graph"))
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the result JSON into this new folder")
    args = parser.parse_args(argv)

    import torch

    from draftforge.latency.compare import equal_param_pairs, time_shapes
    from draftforge.provenance import device_fingerprint, library_versions, now_iso

    dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    result = {
        "schema": "draftforge.depth-vs-width/1",
        "created": now_iso(),
        "versions": library_versions(),
        "device": device_fingerprint(args.device),
        "dtype": dtype,
        "runtime": args.runtime,
        "context": args.context,
        "families": [],
    }
    for base_hidden, depths in families(args.device):
        shapes = equal_param_pairs(base_hidden, depths, args.vocab_size)
        rows = time_shapes(
            shapes,
            args.device,
            dtype,
            args.runtime,
            context=args.context,
            rounds=args.rounds,
            repeats=args.repeats,
        )
        shallow = rows[-1]["median_s"]
        for row in rows:
            row["ratio_to_shallowest"] = row["median_s"] / shallow
        result["families"].append(rows)
    print(
        f"{result['device'].get('gpu') or result['device']['cpu']}, {dtype} {args.runtime}, batch 1, "
        f"context {args.context}, 1 token/forward"
    )
    print(
        f"{'shape':<22} {'params':>9} {'decoder':>9} {'median ms':>10} {'p10-p90 ms':>16} {'x shallowest':>13}"
    )
    for rows in result["families"]:
        for r in rows:
            print(
                f"{r['describe']:<22} {r['params'] / 1e6:>8.1f}M {r['decoder_params'] / 1e6:>8.1f}M "
                f"{r['median_s'] * 1e3:>10.3f} {r['p10_s'] * 1e3:>7.3f}-{r['p90_s'] * 1e3:<8.3f} "
                f"{r['ratio_to_shallowest']:>13.2f}"
            )
        print()
    if args.out:
        from draftforge.files import ensure_new_dir, write_json

        path = write_json(ensure_new_dir(args.out) / "depth_vs_width.json", result)
        print(json.dumps({"result": str(path)}))
    return result


if __name__ == "__main__":
    main()
