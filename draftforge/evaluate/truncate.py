"""A cheap draft for any target: its first k layers with the embeddings, final norm and LM head.

This is the layer-skip baseline draft (no training); it shares the target's tokenizer by
construction, which makes it the standard test and benchmark draft for a real target.
"""

from __future__ import annotations

import copy
from typing import Any


def truncated_draft(target: Any, num_layers: int) -> Any:
    """A new model holding copies of the target's first `num_layers` decoder layers, embeddings,
    final norm and LM head (llama-style `model.layers`, `model.embed_tokens`, `model.norm`)."""
    inner = getattr(target, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(target).__name__} has no model.layers; only llama-style models can be truncated"
        )
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)}, got {num_layers}")
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]
    draft = type(target)(config).to(
        device=next(target.parameters()).device, dtype=next(target.parameters()).dtype
    )
    state = {
        k: v
        for k, v in target.state_dict().items()
        if not k.startswith("model.layers.") or int(k.split(".")[2]) < num_layers
    }
    draft.load_state_dict(state, strict=True)
    draft.tie_weights()
    draft.generation_config = copy.deepcopy(target.generation_config)
    return draft.eval()
