"""Setting a distillation up: the run folder, preflight checks, the teacher and tokenizer, the
vocabulary check and the student's initialisation (all before the first training step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from draftforge.distill.data import DistillData
from draftforge.distill.engine import TORCH_DTYPES, Dist, teacher_deepspeed_config
from draftforge.distill.recipe import RandomTarget, Recipe
from draftforge.distill.runstate import CHECKPOINTS, barrier
from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape


def prepare_output(recipe: Recipe, resume: bool, dist: Dist) -> Path:
    """The run folder: new (never overwritten) unless resuming, which needs an existing checkpoint."""
    from draftforge.files import ensure_new_dir

    out = Path(recipe.output.dir)
    if resume:
        if not (out / CHECKPOINTS / "latest").is_file():
            raise DraftforgeError(f"--resume: {out} has no checkpoint to resume from; run without --resume")
        check_same_recipe(recipe, out / "recipe.yaml")
        return out
    if dist.is_main:
        ensure_new_dir(out)
        (out / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    barrier()
    return out


#: sections a resumed run may change (how long, how often to log/evaluate/save); the rest must match
RESUMABLE_CHANGES = ("output", "eval", "publish")


def check_same_recipe(recipe: Recipe, saved: Path) -> None:
    """Refuse to resume with a recipe that trains something else than the one the run started with
    (only output/eval/publish settings and optim.max_steps may change)."""
    import yaml

    if not saved.is_file():
        return
    before = yaml.safe_load(saved.read_text(encoding="utf-8"))
    now = recipe.to_dict()
    changed = [
        k
        for k in sorted(set(before) | set(now))
        if k not in RESUMABLE_CHANGES and before.get(k) != now.get(k)
    ]
    if "optim" in changed:
        strip = {"max_steps"}
        if {k: v for k, v in before["optim"].items() if k not in strip} == {
            k: v for k, v in now["optim"].items() if k not in strip
        }:
            changed.remove("optim")
    if changed:
        raise DraftforgeError(
            f"--resume with a recipe that differs from the one in {saved} (sections: {', '.join(changed)}); "
            "resume with the same recipe or start a new output.dir"
        )


def preflight(recipe: Recipe) -> None:
    """Fail fast, before loading any model: missing local data files, missing optional packages."""
    if recipe.output.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise DraftforgeError(
                "output.tensorboard needs the tensorboard package (pip install tensorboard)"
            ) from None
    from draftforge.distill.data import _is_local, _resolve_local

    sources = [recipe.data.source] if isinstance(recipe.data.source, str) else recipe.data.source
    for source in sources:
        if ":" in source.split("/")[0] or recipe.data.format == "hub":
            continue  # stdlib:, pydoc:, humaneval: and Hub ids are checked when loaded
        base = Path(recipe.base_dir)
        if _is_local(source, base) and not _resolve_local(source, base).exists():
            raise DraftforgeError(
                f"data file not found: {_resolve_local(source, base)} (data.source {source!r}, relative to the recipe)"
            )


def target_info(recipe: Recipe) -> dict[str, Any]:
    """The target block of draftforge.json: spec, catalog name, Hub id, tokenizer, licence."""
    if isinstance(recipe.target, RandomTarget):
        return {
            "spec": recipe.target_spec(),
            "name": "random",
            "hub_id": None,
            "tokenizer": "bytes",
            "license": None,
        }
    from draftforge.catalog import get_target

    try:
        t = get_target(recipe.target)
        return {
            "spec": recipe.target,
            "name": t.name,
            "hub_id": t.hub_id,
            "tokenizer": t.tokenizer,
            "license": t.license,
        }
    except DraftforgeError:
        return {
            "spec": recipe.target,
            "name": Path(recipe.target).name,
            "hub_id": None,
            "tokenizer": None,
            "license": None,
        }


def load_teacher(recipe: Recipe, device: str, world: int):
    """The frozen teacher and its tokenizer. Random targets are built from their shape with a byte
    tokenizer; real ones load via draftforge.assets (offline SmolLM2, local folders, Hub ids)."""
    dtype = TORCH_DTYPES[recipe.deepspeed.precision] if device != "cpu" else torch.float32
    if isinstance(recipe.target, RandomTarget):
        from draftforge.distill.data import byte_tokenizer
        from draftforge.distill.init import random_student

        tokenizer = byte_tokenizer()
        shape = recipe.target.shape
        if shape.vocab_size < len(tokenizer):
            raise DraftforgeError(
                f"target.random_shape.vocab_size must be at least {len(tokenizer)} (bytes tokenizer)"
            )
        teacher = random_student(shape, seed=recipe.target.seed, dtype=dtype, init_std=recipe.target.init_std)
    else:
        from draftforge.assets import load_model_and_tokenizer

        hf_ds_config = None
        if recipe.deepspeed.teacher_zero3:
            # keeps transformers partitioning the weights across ranks while they load (ZeRO-3 init)
            from transformers.integrations import HfDeepSpeedConfig

            hf_ds_config = HfDeepSpeedConfig(teacher_deepspeed_config(recipe, world))  # noqa: F841
        name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
        teacher, tokenizer = load_model_and_tokenizer(recipe.target, dtype=name, device="cpu")
        del hf_ds_config
    if not recipe.deepspeed.teacher_zero3:
        teacher.to(device)
    return teacher, tokenizer


def check_vocab(shape: ModelShape, teacher, tokenizer) -> None:
    tv = teacher.config.vocab_size
    if shape.vocab_size != tv:
        raise DraftforgeError(
            f"draft vocab_size {shape.vocab_size} differs from the teacher's {tv}; a draft must share its "
            "target's tokenizer and vocabulary (fix draft.shape.vocab_size)"
        )
    if len(tokenizer) > shape.vocab_size:
        raise DraftforgeError(
            f"the tokenizer has {len(tokenizer)} tokens, more than the vocabulary {shape.vocab_size}"
        )


def build_student(recipe: Recipe, shape: ModelShape, teacher, data: DistillData):
    """Initialise the student (random / layer copy / pruning) from the donor (default: the teacher)."""
    from draftforge.distill.init import init_student, set_frozen

    init = recipe.init
    donor = teacher
    if init.method != "random" and init.donor is not None:
        from draftforge.assets import load_model_and_tokenizer

        donor, _ = load_model_and_tokenizer(init.donor, dtype="float32", device="cpu")
    calib = None
    if init.method == "prune":
        n = max(1, init.calibration_tokens // data.train_ids.shape[1])
        calib = data.train_ids[:n]
    # copying/pruning happens on CPU, which keeps accelerator memory for training
    donor_cpu = donor if next(donor.parameters()).device.type == "cpu" else None
    if donor_cpu is None:
        donor_cpu = _cpu_copy(donor)
    model, info = init_student(
        shape,
        init.method,
        init.layers,
        donor=donor_cpu,
        reference_config=teacher.config,
        calibration_ids=calib,
        seed=recipe.seed,
    )
    if init.donor is not None:
        info["donor"] = init.donor
    set_frozen(model, init.freeze_embeddings, init.freeze_lm_head)
    info.update(freeze_embeddings=init.freeze_embeddings, freeze_lm_head=init.freeze_lm_head)
    return model, info


def _cpu_copy(model):
    import copy

    return copy.deepcopy(model).to("cpu", torch.float32)
