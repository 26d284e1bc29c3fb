"""Export the trained draft as a plain transformers folder plus `draftforge.json` (draftforge.draft/1).

The folder loads with `AutoModelForCausalLM.from_pretrained` (safetensors weights), carries the
target's tokenizer and chat template and a generation config, and works as `assistant_model=` in
transformers' assisted generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from draftforge.files import read_versioned, write_json
from draftforge.provenance import device_fingerprint, library_versions, now_iso
from draftforge.shapes import ModelShape

DRAFT_SCHEMA = "draftforge.draft/1"
MANIFEST = "draftforge.json"


def gather_state_dict(engine, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """The full student state dict on rank 0 (None elsewhere); gathers ZeRO-3 partitions.
    Must be called on every rank."""
    import torch.distributed as dist

    module = engine.module
    rank = dist.get_rank() if dist.is_initialized() else 0
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if rank == 0 else None
        return sd
    if rank != 0:
        return None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def generation_config_for(teacher, tokenizer):
    """The teacher's generation config (same special tokens), or one built from the tokenizer."""
    from transformers import GenerationConfig

    base = getattr(teacher, "generation_config", None)
    if base is not None:
        return GenerationConfig.from_dict(base.to_dict())
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )


def save_draft(
    folder: Path,
    config,
    state_dict: dict[str, torch.Tensor],
    tokenizer,
    generation_config,
    manifest: dict[str, Any],
) -> Path:
    """Write the draft folder: weights (safetensors), config, tokenizer + chat template,
    generation config and draftforge.json."""
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    dtype = next(iter(state_dict.values())).dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(state_dict, assign=True, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = generation_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_json(folder / MANIFEST, manifest)
    return folder


def draft_manifest(
    *,
    shape: ModelShape,
    target: dict[str, Any],
    init: dict[str, Any],
    recipe,
    data_info: dict[str, Any],
    steps: int,
    tokens: int,
    initial_metrics: dict[str, float],
    final_metrics: dict[str, float],
    device: str,
) -> dict[str, Any]:
    """The draftforge.draft/1 record (contract 4)."""
    search = None
    if recipe.draft.search is not None:
        search = {"path": str(recipe.path(recipe.draft.search)), "rank": recipe.draft.rank}
    return {
        "schema": DRAFT_SCHEMA,
        "created": now_iso(),
        "versions": library_versions(),
        "shape": shape.to_dict(),
        "params": shape.param_count(),
        "target": target,
        "init": init,
        "recipe": recipe.to_dict(),
        "recipe_sha256": recipe.sha256(),
        "data": data_info,
        "loss": recipe.loss.model_dump(mode="json"),
        "steps": steps,
        "tokens": tokens,
        "initial_metrics": initial_metrics,
        "final_metrics": final_metrics,
        "search": search,
        "device": device_fingerprint(device),
    }


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read a draft folder's draftforge.json (refuses other schemas)."""
    return read_versioned(Path(folder) / MANIFEST, DRAFT_SCHEMA)
