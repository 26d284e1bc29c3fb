"""Student initialisation: random, a subset of a donor's layers, or one-shot structured width pruning.

The donor is the target itself or another model with the same tokenizer. Layer copying needs the
donor's width; pruning (Minitron, Muralidharan et al. 2024, arXiv 2407.14679) first shrinks the
donor's hidden size, attention heads and MLP neurons to the draft's, ranking each by activation
magnitude on a small calibration batch, then keeps the chosen layers. That is how a shallow *and*
wide draft gets a good start from a deep model.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import torch

from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

_LAYER_KEY = re.compile(r"^(.*\.layers\.)(\d+)(\..*)$")


# ---- configs -----------------------------------------------------------------------------------
def student_config(shape: ModelShape, reference: Any | None = None):
    """A transformers config for `shape`, inheriting everything else (RoPE, norm eps, special token
    ids, activation) from `reference` (the donor's or target's config) when it is of the same family."""
    if reference is None or ModelShape.from_hf_config(reference).family != shape.family:
        return shape.to_hf_config()
    cfg = copy.deepcopy(reference)
    if shape.family == "opt":
        cfg.num_hidden_layers = shape.num_layers
        cfg.hidden_size = shape.hidden_size
        cfg.ffn_dim = shape.intermediate_size
        cfg.num_attention_heads = shape.num_heads
        cfg.word_embed_proj_dim = shape.embed_dim or shape.hidden_size
        cfg.max_position_embeddings = shape.max_positions
    else:
        cfg.num_hidden_layers = shape.num_layers
        cfg.hidden_size = shape.hidden_size
        cfg.intermediate_size = shape.intermediate_size
        cfg.num_attention_heads = shape.num_heads
        cfg.num_key_value_heads = shape.num_kv_heads
        cfg.head_dim = shape.head_dim
        cfg.max_position_embeddings = shape.max_positions
        cfg.layer_types = (
            None if getattr(cfg, "layer_types", None) is None else cfg.layer_types[: shape.num_layers]
        )
    cfg.vocab_size = shape.vocab_size
    cfg.tie_word_embeddings = shape.tie_embeddings
    return cfg


def _new_model(config, dtype: torch.dtype, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def random_student(
    shape: ModelShape,
    reference_config: Any | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    init_std: float | None = None,
):
    """A freshly initialised model of `shape` (transformers' own init, seeded; `init_std` overrides
    the config's initializer_range)."""
    config = student_config(shape, reference_config)
    if init_std is not None:
        config.initializer_range = init_std
    return _new_model(config, dtype, seed)


# ---- layer subsets -----------------------------------------------------------------------------
def choose_layers(n: int, donor_layers: int, how: str | Sequence[int]) -> list[int]:
    """Donor layer indices for an n-layer student: first_last = the first n−1 and the last (the usual
    choice: early layers build features, the last maps them to the vocabulary), spread = evenly spaced,
    or explicit indices."""
    if not isinstance(how, str):
        idx = [int(i) for i in how]
        if len(idx) != n or any(not 0 <= i < donor_layers for i in idx):
            raise DraftforgeError(f"init.layers {idx} must be {n} indices in 0..{donor_layers - 1}")
        return idx
    if n > donor_layers:
        raise DraftforgeError(f"the draft has {n} layers but the donor only {donor_layers}")
    if how == "first_last":
        return list(range(n - 1)) + [donor_layers - 1] if n > 1 else [donor_layers - 1]
    if how == "spread":
        if n == 1:
            return [donor_layers - 1]
        return [round(i * (donor_layers - 1) / (n - 1)) for i in range(n)]
    raise DraftforgeError(f"init.layers must be first_last, spread or a list of indices, got {how!r}")


def copy_layers(donor, shape: ModelShape, layers: Sequence[int], dtype: torch.dtype = torch.float32):
    """A student of `shape` whose decoder layers are copies of `donor`'s `layers` (in that order), with
    embeddings, final norm and LM head copied too. The donor must have the student's width."""
    donor_shape = ModelShape.from_hf_config(donor.config)
    same = (
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "intermediate_size",
        "vocab_size",
        "family",
        "embed_dim",
    )
    diff = [
        f"{k} {getattr(shape, k)} vs {getattr(donor_shape, k)}"
        for k in same
        if getattr(shape, k) != getattr(donor_shape, k)
    ]
    if diff:
        raise DraftforgeError(
            "init.method layers needs a donor of the draft's width ("
            + "; ".join(diff)
            + "); use init.method prune"
        )
    student = _new_model(student_config(shape, donor.config), dtype, 0)
    donor_sd = donor.state_dict()
    new_sd = {}
    for key in student.state_dict():
        m = _LAYER_KEY.match(key)
        src = f"{m.group(1)}{layers[int(m.group(2))]}{m.group(3)}" if m else key
        if src not in donor_sd:
            if key.endswith("lm_head.weight") and shape.tie_embeddings:
                continue
            raise DraftforgeError(f"donor has no weight {src!r} for student weight {key!r}")
        new_sd[key] = donor_sd[src].detach().clone().to(dtype)
    student.load_state_dict(new_sd, strict=False)
    if shape.tie_embeddings:
        student.tie_weights()
    return student


# ---- width pruning (llama / mistral / qwen2) ---------------------------------------------------
@torch.no_grad()
def activation_importance(donor, calibration_ids: torch.Tensor, layers: Sequence[int]) -> dict[str, Any]:
    """Minitron-style importance from one forward over `calibration_ids` (B, T):
    hidden channels = Σ |RMSNorm output| over kept layers' input/post-attention norms and the final norm;
    heads = ‖attention output per head‖ (input of o_proj); neurons = Σ |input of down_proj|."""
    inner = donor.model
    hidden = torch.zeros(donor.config.hidden_size)
    heads: dict[int, torch.Tensor] = {}
    neurons: dict[int, torch.Tensor] = {}
    head_dim = donor.config.hidden_size // donor.config.num_attention_heads
    hooks = []

    def add_hidden(_mod, _inp, out):
        hidden.add_(out.detach().float().abs().reshape(-1, out.shape[-1]).sum(0))

    for i in layers:
        layer = inner.layers[i]
        hooks.append(layer.input_layernorm.register_forward_hook(add_hidden))
        hooks.append(layer.post_attention_layernorm.register_forward_hook(add_hidden))

        def o_hook(_mod, inp, _out, i=i):
            x = inp[0].detach().float().reshape(-1, donor.config.num_attention_heads, head_dim)  # (N, H, d)
            heads[i] = heads.get(i, 0) + x.pow(2).sum((0, 2))

        def d_hook(_mod, inp, _out, i=i):
            x = inp[0].detach().float()
            neurons[i] = neurons.get(i, 0) + x.abs().reshape(-1, x.shape[-1]).sum(0)

        hooks.append(layer.self_attn.o_proj.register_forward_hook(o_hook))
        hooks.append(layer.mlp.down_proj.register_forward_hook(d_hook))
    hooks.append(inner.norm.register_forward_hook(add_hidden))
    try:
        donor(input_ids=calibration_ids)
    finally:
        for h in hooks:
            h.remove()
    return {"hidden": hidden, "heads": {i: v.sqrt() for i, v in heads.items()}, "neurons": neurons}


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return scores.topk(k).indices.sort().values


def prune_width(
    donor,
    shape: ModelShape,
    layers: Sequence[int],
    calibration_ids: torch.Tensor,
    dtype: torch.dtype = torch.float32,
):
    """A student of `shape` cut from `donor` (same family, head_dim and tokenizer): keep the most
    important hidden channels, KV groups (and query heads within them) and MLP neurons of the donor
    layers `layers`, ranked by `activation_importance` on `calibration_ids`."""
    d = ModelShape.from_hf_config(donor.config)
    problems = []
    if d.family == "opt" or shape.family != d.family:
        problems.append(
            f"pruning supports llama, mistral and qwen2 donors of the draft's family (got {d.family})"
        )
    if shape.head_dim != d.head_dim:
        problems.append(
            f"pruning keeps the donor's head_dim {d.head_dim}; use num_heads = hidden_size / {d.head_dim}"
        )
    if shape.vocab_size != d.vocab_size:
        problems.append(f"draft vocab {shape.vocab_size} differs from the donor's {d.vocab_size}")
    for k in ("hidden_size", "num_heads", "num_kv_heads", "intermediate_size"):
        if getattr(shape, k) > getattr(d, k):
            problems.append(f"draft {k} {getattr(shape, k)} exceeds the donor's {getattr(d, k)}")
    group, new_group = d.num_heads // d.num_kv_heads, shape.num_heads // shape.num_kv_heads
    if new_group > group:
        problems.append(f"draft has {new_group} query heads per KV head, the donor only {group}")
    if problems:
        raise DraftforgeError("cannot prune the donor to the draft shape: " + "; ".join(problems))

    imp = activation_importance(donor, calibration_ids, layers)
    keep_h = _top(imp["hidden"], shape.hidden_size)  # hidden channels
    hd = d.head_dim
    student = _new_model(student_config(shape, donor.config), dtype, 0)
    src = donor.state_dict()
    out: dict[str, torch.Tensor] = {}

    def rows(w, idx):
        return w.index_select(0, idx)

    def cols(w, idx):
        return w.index_select(1, idx)

    def head_rows(heads_idx):
        return torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in heads_idx.tolist()])

    out["model.embed_tokens.weight"] = cols(src["model.embed_tokens.weight"], keep_h)
    out["model.norm.weight"] = src["model.norm.weight"][keep_h]
    if not shape.tie_embeddings:
        head_w = src.get("lm_head.weight", src["model.embed_tokens.weight"])
        out["lm_head.weight"] = cols(head_w, keep_h)
    for new_i, old_i in enumerate(layers):
        p, q = f"model.layers.{old_i}.", f"model.layers.{new_i}."
        head_scores = imp["heads"][old_i].reshape(d.num_kv_heads, group)  # (KV, G)
        kv_keep = _top(head_scores.sum(1), shape.num_kv_heads)
        q_heads = torch.cat([g * group + _top(head_scores[g], new_group) for g in kv_keep.tolist()])
        q_idx, kv_idx = head_rows(q_heads), head_rows(kv_keep)
        neur = _top(imp["neurons"][old_i], shape.intermediate_size)
        for name in ("input_layernorm", "post_attention_layernorm"):
            out[f"{q}{name}.weight"] = src[f"{p}{name}.weight"][keep_h]
        out[f"{q}self_attn.q_proj.weight"] = cols(rows(src[f"{p}self_attn.q_proj.weight"], q_idx), keep_h)
        for name in ("k_proj", "v_proj"):
            out[f"{q}self_attn.{name}.weight"] = cols(
                rows(src[f"{p}self_attn.{name}.weight"], kv_idx), keep_h
            )
        for name, idx in (("q_proj", q_idx), ("k_proj", kv_idx), ("v_proj", kv_idx)):
            if f"{p}self_attn.{name}.bias" in src:
                out[f"{q}self_attn.{name}.bias"] = src[f"{p}self_attn.{name}.bias"][idx]
        out[f"{q}self_attn.o_proj.weight"] = cols(rows(src[f"{p}self_attn.o_proj.weight"], keep_h), q_idx)
        for name in ("gate_proj", "up_proj"):
            out[f"{q}mlp.{name}.weight"] = cols(rows(src[f"{p}mlp.{name}.weight"], neur), keep_h)
        out[f"{q}mlp.down_proj.weight"] = cols(rows(src[f"{p}mlp.down_proj.weight"], keep_h), neur)
    missing, unexpected = student.load_state_dict({k: v.to(dtype) for k, v in out.items()}, strict=False)
    missing = [
        k for k in missing if not (shape.tie_embeddings and k == "lm_head.weight") and "rotary" not in k
    ]
    if missing or unexpected:
        raise RuntimeError(f"pruned state dict mismatch: missing {missing}, unexpected {unexpected}")
    if shape.tie_embeddings:
        student.tie_weights()
    return student


# ---- entry point -------------------------------------------------------------------------------
def set_frozen(student, freeze_embeddings: bool, freeze_lm_head: bool) -> None:
    """Freeze the token embeddings and/or the LM head (a tied head follows the embeddings)."""
    emb = student.get_input_embeddings()
    head = student.get_output_embeddings()
    if freeze_embeddings:
        for p in emb.parameters():
            p.requires_grad_(False)
    if freeze_lm_head and head is not None:
        for p in head.parameters():
            p.requires_grad_(False)


def init_student(
    shape: ModelShape,
    method: str,
    layers: str | Sequence[int],
    donor=None,
    reference_config: Any | None = None,
    calibration_ids: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
):
    """Build the student: `random`, `layers` (copy donor layers) or `prune` (width-prune the donor,
    then keep layers). Returns (model, info dict recorded in draftforge.json)."""
    info: dict[str, Any] = {"method": method}
    if method == "random":
        model = random_student(shape, reference_config, seed=seed, dtype=dtype)
        info["seed"] = seed
        return model, info
    if donor is None:
        raise DraftforgeError(f"init.method {method} needs a donor model")
    donor_layers = donor.config.num_hidden_layers
    idx = choose_layers(shape.num_layers, donor_layers, layers)
    info["layers"] = idx
    if method == "layers":
        return copy_layers(donor, shape, idx, dtype=dtype), info
    if method == "prune":
        if calibration_ids is None:
            raise DraftforgeError("init.method prune needs calibration data")
        info["calibration_tokens"] = int(calibration_ids.numel())
        return prune_width(donor, shape, idx, calibration_ids, dtype=dtype), info
    raise DraftforgeError(f"unknown init.method {method!r}; use random, layers or prune")
