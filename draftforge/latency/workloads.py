"""The timed hot path: random-weight models, decode workloads with a filled KV cache, and timers.

Small named functions (gpt-fast style): `build_model` materialises a shape, `eager_workload` and
`static_workload` return a (forward, reset) pair for one (batch, context, tokens) workload, and
`time_repeats` times a forward with warm-up, an untimed reset before every call, and a stopping
rule; `trimmed_stats` reduces the samples. Timers: CUDA events on GPU; on CPU either wall time
(perf_counter) or the calling thread's CPU time (see `ProfileConfig.clock`).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from typing import Any

from draftforge.shapes import ModelShape


# ---- timing ----------------------------------------------------------------------------------------
def trimmed_stats(samples: list[float]) -> dict[str, float]:
    """median, p10, p90 (linear interpolation) of timing samples in seconds."""
    xs = sorted(samples)

    def q(p: float) -> float:
        pos = p * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"median_s": q(0.5), "p10_s": q(0.1), "p90_s": q(0.9)}


def time_repeats(
    forward: Callable[[], Any],
    reset: Callable[[], Any],
    timer: Callable[[Callable[[], Any]], float],
    warmup: int,
    min_repeats: int,
    max_repeats: int,
    seconds: float,
) -> list[float]:
    """Warm up, then time `forward` (with `reset` untimed before each call) until `min_repeats`
    samples and `seconds` spent, or `max_repeats`."""
    for _ in range(warmup):
        reset()
        forward()
    samples: list[float] = []
    while len(samples) < max_repeats and (len(samples) < min_repeats or sum(samples) < seconds):
        reset()
        samples.append(timer(forward))
    return samples


def cpu_timer(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def thread_timer(fn: Callable[[], Any]) -> float:
    """CPU seconds the calling thread spent in `fn` (excludes time the scheduler gave to others)."""
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def cuda_timer(fn: Callable[[], Any]) -> float:
    """Seconds of `fn` on the current CUDA stream, by CUDA events (synchronised)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


# ---- models and workloads --------------------------------------------------------------------------
def build_model(shape: ModelShape, dtype, device):
    """A random-weight transformers model of `shape`: built on the meta device, then materialised.

    Weights are uniform(-0.02, 0.02); values do not change the kernels timed, but NaN or denormal
    garbage from uninitialised memory could, hence the fill.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = shape.to_hf_config()
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model = model.to_empty(device=device)
    with torch.no_grad():  # first touch of the fresh pages dominates this, not the random numbers
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.uniform_(-0.02, 0.02)
    return model.eval()


def _cache_kwarg(model) -> str:
    """transformers 5.x calls the cache `cache=`; earlier releases `past_key_values=`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _random_kv(model, batch_size: int, length: int):
    import torch

    cfg = model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    param = next(model.parameters())
    return torch.randn(batch_size, heads, length, head_dim, dtype=param.dtype, device=param.device)


def eager_workload(model, batch_size: int, context: int, tokens: int):
    """(forward, reset) for a DynamicCache holding `context` tokens; reset crops the new tokens off."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if context > 0:
        for layer in range(model.config.num_hidden_layers):
            cache.update(
                _random_kv(model, batch_size, context), _random_kv(model, batch_size, context), layer
            )
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch_size, tokens), device=device)
    kwargs = {_cache_kwarg(model): cache, "use_cache": True}

    def forward():
        with torch.inference_mode():
            return model(input_ids=ids, **kwargs)

    def reset():
        if cache.get_seq_length() > context:
            cache.crop(-tokens)

    return forward, reset


def static_workload(model, batch_size: int, context: int, tokens: int, capture: bool):
    """(forward, reset) on a StaticCache of `context + tokens` slots; with `capture`, the forward is
    one captured CUDA graph replayed (the fast-engine runtime). Without `capture` it runs eagerly
    (used on CPU by the tests to check the forward is free of host syncs)."""
    import torch
    from transformers import StaticCache

    cfg = model.config
    cache = StaticCache(config=cfg, max_cache_len=context + tokens)
    device = next(model.parameters()).device
    if context > 0:
        position = torch.arange(context, device=device)
        for layer in range(cfg.num_hidden_layers):
            cache.update(
                _random_kv(model, batch_size, context),
                _random_kv(model, batch_size, context),
                layer,
                {"cache_position": position},
            )
    ids = torch.randint(0, cfg.vocab_size, (batch_size, tokens), device=device)
    position_ids = torch.arange(context, context + tokens, device=device).expand(batch_size, tokens)
    # A ready 4D mask (query i sees slots 0..context+i) is used as-is by transformers; letting it build
    # one would read the tensor query offset of the static cache on the host, which a graph cannot capture.
    slots = torch.arange(context + tokens, device=device)
    allowed = slots[None, :] <= (context + torch.arange(tokens, device=device))[:, None]  # (T, context+T)
    mask = allowed[None, None].expand(batch_size, 1, tokens, context + tokens)  # (B, 1, T, context+T)
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "position_ids": position_ids,
        "attention_mask": mask,
        _cache_kwarg(model): cache,
        "use_cache": True,
    }
    if "cache_position" in inspect.signature(model.forward).parameters:  # transformers < 5.2x
        kwargs["cache_position"] = torch.arange(context, context + tokens, device=device)

    def reset():
        # transformers >= 5.2x advances a per-layer write position in place; rewind it so every
        # replay writes the same slots (older releases write at the explicit cache_position). Looked
        # up on every call: a layer initialised lazily by the first forward gets a new tensor.
        with torch.inference_mode():  # the tensor may have been created inside inference mode
            for layer in getattr(cache, "layers", []):
                length = getattr(layer, "cumulative_length", None)
                if isinstance(length, torch.Tensor):
                    length.fill_(context)

    def eager_forward():
        with torch.inference_mode():
            return model(**kwargs)

    if not capture:
        return eager_forward, reset
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up outside the graph (allocations, lazy init, cuBLAS handles)
            reset()
            eager_forward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    reset()
    with torch.inference_mode(), torch.cuda.graph(graph):
        model(**kwargs)
    return graph.replay, reset
