"""Physically meaningful features of one forward pass; the fitted latency model is linear in them.

time(forward) ≈ Σ_f coefficient_f · feature_f(shape, batch, context, tokens, dtype), every coefficient
non-negative, so each one reads as a unit cost: seconds per forward, per layer, per byte read, per
FLOP, per activation element. Because every term grows with what really costs time, the fit
extrapolates sanely to shapes outside the measured grid (no polynomial blow-ups).

Each feature has a `kind`, which says how it moves to another GPU of the catalog (see
`model.FittedLatencyModel.rescaled_to`): "bytes" terms scale with memory bandwidth, "flops" terms
with dense tensor throughput, "fixed" terms (launch and Python overhead) stay as measured.
Pure functions, no I/O, no numpy.
"""

from __future__ import annotations

from typing import Literal

from draftforge.shapes import ModelShape, dtype_bytes

FeatureKind = Literal["fixed", "bytes", "flops"]

#: name -> (kind, unit of the feature, what it stands for). Order is the column order of a design matrix.
FEATURES: dict[str, tuple[FeatureKind, str, str]] = {
    "forward": ("fixed", "1", "per-forward constant: embedding, final norm, Python loop, launch"),
    "layers": ("fixed", "layers", "fixed cost per decoder layer (kernel launches, module overhead)"),
    "layer_token_rows": ("fixed", "layers x new tokens", "per-row cost of small ops (norms, rotary)"),
    "attention_heads": ("fixed", "layers x sequences x heads", "per-head cost of eager attention"),
    "weight_bytes": ("bytes", "B", "decoder-layer weights read once per forward"),
    "kv_bytes": ("bytes", "B", "keys and values read (cached + new tokens, every sequence)"),
    "lm_head_bytes": ("bytes", "B", "LM-head weights read (vocab x hidden)"),
    "matmul_flops": ("flops", "FLOP", "projection and MLP FLOPs of the decoder layers"),
    "attention_flops": ("flops", "FLOP", "QK^T and attention-weighted V FLOPs"),
    "lm_head_flops": ("flops", "FLOP", "LM-head FLOPs (logits for every new token)"),
    "activation_elements": ("bytes", "elements", "elementwise activations written (hidden + FFN)"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


def feature_kind(name: str) -> FeatureKind:
    return FEATURES[name][0]


def forward_features(
    shape: ModelShape, batch_size: int, context: int, tokens: int, dtype: str
) -> dict[str, float]:
    """Features of one forward pass, keyed like `FEATURES`.

    `context` cached tokens per sequence, `tokens` new tokens per sequence (1 for a draft step,
    γ+1 for verification), `batch_size` sequences. Bytes use `dtype` for weights and the KV cache.
    """
    b = dtype_bytes(dtype)
    layers = shape.num_layers
    rows = batch_size * tokens  # new tokens in this forward, over all sequences
    embed = shape.embed_dim or shape.hidden_size
    matmul_params = shape.attention_params() + shape.mlp_params()
    return {
        "forward": 1.0,
        "layers": float(layers),
        "layer_token_rows": float(layers * rows),
        "attention_heads": float(layers * batch_size * shape.num_heads),
        "weight_bytes": float(layers * shape.layer_weight_bytes(dtype)),
        "kv_bytes": float(layers * batch_size * (context + tokens) * 2 * shape.kv_dim * b),
        "lm_head_bytes": float(shape.lm_head_weight_bytes(dtype)),
        "matmul_flops": float(layers * rows * 2 * matmul_params),
        "attention_flops": float(layers * rows * 4 * (context + tokens) * shape.hidden_size),
        "lm_head_flops": float(rows * 2 * shape.vocab_size * embed),
        "activation_elements": float(layers * rows * (shape.hidden_size + shape.intermediate_size)),
    }


def feature_row(shape: ModelShape, batch_size: int, context: int, tokens: int, dtype: str) -> list[float]:
    """`forward_features` as a list in `FEATURE_NAMES` order (one row of a design matrix)."""
    f = forward_features(shape, batch_size, context, tokens, dtype)
    return [f[name] for name in FEATURE_NAMES]
