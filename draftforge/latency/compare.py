"""The seed paper's finding, measured: deep-narrow against shallow-wide shapes of equal size.

`equal_param_pairs` builds shapes whose decoder layers hold (about) the same parameters at
different depths (layers x hidden² constant); `time_shapes` times one decode forward of each on
the local device, interleaving the shapes over several rounds so that load drift on a shared host
hits them alike. Used by scripts/depth_vs_width.py and scripts/gpu_profile.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from draftforge.shapes import ModelShape


def llama_shape(
    layers: int, hidden: int, vocab: int = 32000, head_dim: int = 64, ratio: float = 2.75
) -> ModelShape:
    heads = hidden // head_dim
    return ModelShape(
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        intermediate_size=int(round(ratio * hidden / 64)) * 64,
        vocab_size=vocab,
    )


def equal_param_pairs(base_hidden: int, depths: Sequence[int], vocab: int = 32000) -> list[ModelShape]:
    """Shapes with the decoder parameters of `depths[0]` layers at `base_hidden`, at other depths.

    Width scales as 1/sqrt(depth) (rounded to a multiple of 64), so layers x hidden² stays constant:
    e.g. base_hidden 512, depths (16, 4, 1) -> 16 x 512, 4 x 1024, 1 x 2048.
    """
    d0 = depths[0]
    out = []
    for d in depths:
        hidden = max(64, int(round(base_hidden * (d0 / d) ** 0.5 / 64)) * 64)
        out.append(llama_shape(d, hidden, vocab))
    return out


def time_shapes(
    shapes: Sequence[ModelShape],
    device: str = "cpu",
    dtype: str = "fp32",
    runtime: str = "eager",
    batch_size: int = 1,
    context: int = 256,
    tokens: int = 1,
    rounds: int = 3,
    repeats: int = 10,
    warmup: int = 3,
) -> list[dict[str, Any]]:
    """Median seconds of one forward per shape, over `rounds` interleaved rounds of `repeats` each.

    All models stay alive for the interleaving, so keep the list small. CPU timing uses the thread's
    CPU time when torch runs one thread (see ProfileConfig.clock), CUDA uses events.
    """
    import torch

    from draftforge.latency.workloads import (
        build_model,
        cpu_timer,
        cuda_timer,
        eager_workload,
        static_workload,
        thread_timer,
        time_repeats,
        trimmed_stats,
    )

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if device.startswith("cuda"):
        timer = cuda_timer
    else:
        timer = thread_timer if torch.get_num_threads() == 1 else cpu_timer
    workloads = []
    for shape in shapes:
        model = build_model(shape, torch_dtype, device)
        if runtime == "cuda-graph":
            forward, reset = static_workload(model, batch_size, context, tokens, capture=True)
        else:
            forward, reset = eager_workload(model, batch_size, context, tokens)
        workloads.append((model, forward, reset))
    samples: list[list[float]] = [[] for _ in shapes]
    for r in range(rounds):
        for i, (_, forward, reset) in enumerate(workloads):
            samples[i] += time_repeats(forward, reset, timer, warmup if r == 0 else 1, repeats, repeats, 0.0)
    del workloads
    return [
        {
            "shape": s.to_dict(),
            "describe": s.describe(),
            "params": s.param_count(),
            "decoder_params": s.num_layers * s.layer_params(),
            **trimmed_stats(xs),
        }
        for s, xs in zip(shapes, samples, strict=True)
    ]
