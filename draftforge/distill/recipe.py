"""The distillation recipe: a typed, frozen YAML schema validated at the edge.

A recipe names the target (teacher), the draft shape (explicit, or a `search.json` + rank),
how the student starts (random, a subset of the target's layers, or width-pruned), the data,
the loss mixture, optimisation, DeepSpeed settings, evaluation, output and optional publishing.

`load_recipe(path, overrides)` reads YAML, applies `--set key.sub=value` overrides and reports every
problem at once, each naming its key. `render_search_recipe(...)` writes the YAML that
`draftforge search` places next to its results (contract 5).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

RECIPE_SCHEMA = "draftforge.recipe/1"

LossName = Literal["forward_kl", "reverse_kl", "jsd", "tv", "ce"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_shape(d: dict[str, Any]) -> None:
    """Raise ValueError (so pydantic reports it under the key) when `d` is not a valid ModelShape."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(ModelShape)}
    unknown = sorted(set(d) - set(fields))
    missing = sorted(n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in d)
    if unknown or missing:
        parts = ([f"unknown keys {', '.join(unknown)}"] if unknown else []) + (
            [f"missing {', '.join(missing)}"] if missing else []
        )
        raise ValueError("invalid model shape: " + "; ".join(parts))
    try:
        ModelShape.from_dict(d)
    except (DraftforgeError, TypeError) as exc:
        raise ValueError(str(exc)) from None


class RandomTarget(_Section):
    """A randomly initialised teacher built from a shape (smoke tests; no download, byte tokenizer)."""

    random_shape: dict[str, Any] = Field(description="ModelShape fields of the random teacher.")
    seed: int = Field(0, description="Seed of the teacher's random weights.")
    init_std: float = Field(
        0.02,
        gt=0.0,
        description="Std of the random weights; larger gives a more peaked, more learnable teacher.",
    )

    @model_validator(mode="after")
    def _shape_ok(self) -> RandomTarget:
        _check_shape(self.random_shape)
        return self

    @property
    def shape(self) -> ModelShape:
        return ModelShape.from_dict(self.random_shape)


class DraftSection(_Section):
    """The draft (student) shape: explicit `shape`, or `search` (a search.json path) and `rank`."""

    shape: dict[str, Any] | None = Field(None, description="ModelShape fields of the draft.")
    search: str | None = Field(None, description="A draftforge.search/1 file; relative to the recipe.")
    rank: int = Field(1, ge=1, description="Which ranked candidate of `search` to train (1 = best).")

    @model_validator(mode="after")
    def _one_source(self) -> DraftSection:
        if self.shape is None and self.search is None:
            raise ValueError("give draft.shape or draft.search (a search.json) and draft.rank")
        if self.shape is not None:
            _check_shape(self.shape)
        return self


class InitSection(_Section):
    """How the student's weights start."""

    method: Literal["random", "layers", "prune"] = Field(
        "layers",
        description="random; layers = copy a subset of the target's layers (same width required); "
        "prune = one-shot structured width pruning (Minitron-style) of the donor, then layer subset.",
    )
    layers: Literal["first_last", "spread"] | list[int] = Field(
        "first_last",
        description="Which donor layers: first_last (first n-1 and the last), spread (evenly spaced), "
        "or explicit indices.",
    )
    donor: str | None = Field(
        None, description="Model to copy/prune from (same tokenizer); default: the target itself."
    )
    calibration_tokens: int = Field(2048, ge=16, description="Tokens used to score importance for pruning.")
    freeze_embeddings: bool = Field(False, description="Keep the token embeddings fixed.")
    freeze_lm_head: bool = Field(False, description="Keep the LM head fixed (tied heads follow embeddings).")


class RegenerateSection(_Section):
    """Sequence-level KD: replace responses (or continuations) with the teacher's own generations."""

    enabled: bool = False
    max_records: int = Field(64, ge=1, description="How many records to regenerate (the rest stay as is).")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    batch_size: int = Field(8, ge=1)
    prompt_tokens: int = Field(64, ge=1, description="Text records: prefix length used as the prompt.")


class OnPolicySection(_Section):
    """DistillSpec on-policy data: a fraction of steps trains on the student's own samples."""

    fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of steps that use student samples.")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    prompt_tokens: int = Field(32, ge=1)


class DataSection(_Section):
    """Training data: a Hub dataset id or local files; text or chat records; packed to seq_len."""

    source: str | list[str] = Field(
        description="Hub dataset id, or local .txt/.json/.jsonl/.parquet/.py files (relative to the "
        "recipe), or a list of them."
    )
    format: Literal["auto", "hub", "text", "json", "parquet"] = Field(
        "auto", description="auto: by file suffix for paths, hub otherwise."
    )
    kind: Literal["text", "chat"] = Field(
        "text", description="text: plain text field; chat: a messages list rendered with the chat template."
    )
    hub_config: str | None = None
    split: str = "train"
    text_field: str = "text"
    messages_field: str = "messages"
    chunk_chars: int = Field(2000, ge=100, description="Plain text files are cut into records this long.")
    max_records: int | None = Field(None, ge=1)
    eval_records: int = Field(16, ge=1, description="Records held out for evaluation.")
    seq_len: int = Field(256, ge=8)
    shuffle_seed: int = 0
    regenerate: RegenerateSection = RegenerateSection()
    on_policy: OnPolicySection = OnPolicySection()
    teacher_topk: int | None = Field(
        None,
        ge=1,
        description="Precompute and cache the teacher's top-k logits once (skips teacher forwards).",
    )


class LossSection(_Section):
    """The distillation loss: a weighted mixture of pure losses from draftforge.distill.losses."""

    terms: dict[LossName, float] = Field(default_factory=lambda: {"forward_kl": 1.0})
    temperature: float = Field(1.0, gt=0.0)
    jsd_beta: float = Field(0.5, ge=0.0, le=1.0)
    chunk_tokens: int = Field(1024, ge=1, description="Positions per chunk when computing the loss.")

    @model_validator(mode="after")
    def _weights(self) -> LossSection:
        if not self.terms or any(w < 0 for w in self.terms.values()) or sum(self.terms.values()) <= 0:
            raise ValueError("loss.terms needs at least one non-negative weight and a positive sum")
        return self


class OptimSection(_Section):
    lr: float = Field(3e-4, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine decays to lr * min_lr_ratio.")
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = Field(10, ge=0)
    max_steps: int = Field(100, ge=1)
    micro_batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    grad_clip: float = Field(1.0, ge=0.0, description="0 disables clipping.")


class DeepSpeedSection(_Section):
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    offload_optimizer: bool = False
    offload_params: bool = Field(False, description="ZeRO-3 parameter offload to CPU.")
    teacher_zero3: bool = Field(False, description="Partition the frozen teacher with ZeRO-3 inference.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process.")

    @model_validator(mode="after")
    def _offload(self) -> DeepSpeedSection:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("deepspeed.offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs zero_stage 1, 2 or 3")
        return self


class EvalSection(_Section):
    every_steps: int = Field(50, ge=1)
    max_batches: int = Field(4, ge=1)
    temperature: float = Field(1.0, gt=0.0, description="Temperature of the acceptance proxy.")


class OutputSection(_Section):
    dir: str = Field(description="New folder for checkpoints, logs and the exported draft.")
    save_every: int = Field(50, ge=1, description="Checkpoint every n optimizer steps.")
    log_every: int = Field(10, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    tensorboard: bool = False


class PublishSection(_Section):
    """Upload the exported draft with `draftforge publish` when training ends (needs HF_TOKEN)."""

    repo_id: str = Field(description="OWNER/NAME of the Hub model repository.")
    private: bool = True
    revision: str | None = Field(None, description="Branch to upload to (default: main).")
    dry_run: str | None = Field(
        None, description="Write the repository to this new folder instead of uploading."
    )
    force: bool = Field(
        False, description="Publish even where draftforge publish would refuse (no eval report)."
    )


class Recipe(_Section):
    """A complete distillation recipe (see recipes/*.yaml)."""

    recipe_schema: Literal["draftforge.recipe/1"] = Field(RECIPE_SCHEMA, alias="schema")
    name: str = "draft"
    target: str | RandomTarget = Field(description="Catalog name, local model folder or Hub id.")
    draft: DraftSection
    init: InitSection = InitSection()
    data: DataSection
    loss: LossSection = LossSection()
    optim: OptimSection = OptimSection()
    deepspeed: DeepSpeedSection = DeepSpeedSection()
    eval: EvalSection = EvalSection()
    output: OutputSection
    publish: PublishSection | None = None
    seed: int = 0
    #: folder relative paths in the recipe are read from (not a YAML key; set by the loader).
    base_dir: str = Field(".", exclude=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # ---- derived ------------------------------------------------------------------------------
    def path(self, p: str) -> Path:
        """Resolve a path written in the recipe (relative to the recipe's folder)."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else Path(self.base_dir) / q

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude={"base_dir"})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def target_spec(self) -> str:
        if isinstance(self.target, RandomTarget):
            return f"random:{self.target.shape.describe()} V{self.target.shape.vocab_size}"
        return self.target

    def draft_shape(self) -> ModelShape:
        """The student's shape: explicit, or read from the search file at `rank`."""
        if self.draft.search is not None:
            shape = shape_from_search(self.path(self.draft.search), self.draft.rank)
            if self.draft.shape is not None and ModelShape.from_dict(self.draft.shape) != shape:
                raise DraftforgeError(
                    f"draft.shape disagrees with rank {self.draft.rank} of {self.draft.search}; drop one of them"
                )
            return shape
        assert self.draft.shape is not None
        return ModelShape.from_dict(self.draft.shape)


# ---- loading ------------------------------------------------------------------------------------
def _format_errors(exc: ValidationError) -> list[str]:
    """One line per key; for `str | Section` unions the section's own message wins."""
    by_key: dict[str, tuple[bool, str]] = {}
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        from_str_branch = "str" in parts or "list[str]" in parts
        loc = ".".join(p for p in parts if p not in ("str", "list[str]") and not p.startswith("function-"))
        loc = ".".join(p for p in loc.split(".") if p not in ("RandomTarget",))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        key = loc or "(top level)"
        if key not in by_key or (by_key[key][0] and not from_str_branch):
            by_key[key] = (from_str_branch, f"{key}: {msg}")
    return [line for _, line in by_key.values()]


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a nested dict (copied)."""
    data = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise DraftforgeError(f"--set takes key.sub=value, got {item!r}")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise DraftforgeError(f"--set needs a key before '=', got {item!r}")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            node[parts[-1]] = value
    return data


def recipe_from_dict(raw: Any, base_dir: str | os.PathLike = ".", where: str = "recipe") -> Recipe:
    """Validate a recipe dict; every problem is reported in one DraftforgeError naming its key."""
    if not isinstance(raw, dict):
        raise DraftforgeError(f"{where} must be a YAML mapping of sections, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate({**raw, "base_dir": str(base_dir)})
    except ValidationError as exc:
        problems = _format_errors(exc)
        raise DraftforgeError(f"{where} has {len(problems)} problem(s): " + "; ".join(problems)) from None
    except DraftforgeError as exc:
        raise DraftforgeError(f"{where}: {exc}") from None
    _check_consistency(recipe, where)
    return recipe


def _check_consistency(recipe: Recipe, where: str) -> None:
    """Cross-section checks that need the catalog (cheap; no downloads)."""
    problems: list[str] = []
    if recipe.draft.shape is not None:
        draft = ModelShape.from_dict(recipe.draft.shape)
        teacher = _known_target_shape(recipe)
        if teacher is not None and teacher.vocab_size != draft.vocab_size:
            problems.append(
                f"draft.shape.vocab_size {draft.vocab_size} differs from the target's {teacher.vocab_size}; "
                "a draft must share its target's tokenizer"
            )
        if recipe.init.method == "layers" and teacher is not None and recipe.init.donor is None:
            diff = [
                f"{k} {getattr(draft, k)} vs {getattr(teacher, k)}"
                for k in _WIDTH_FIELDS
                if getattr(draft, k) != getattr(teacher, k)
            ]
            if diff:
                problems.append(
                    "init.method layers copies target layers but the draft's width differs ("
                    + ", ".join(diff)
                    + "); use init.method prune or random"
                )
            if draft.num_layers > teacher.num_layers:
                problems.append(
                    f"draft.shape.num_layers {draft.num_layers} exceeds the target's {teacher.num_layers}"
                )
        if isinstance(recipe.init.layers, list):
            if len(recipe.init.layers) != draft.num_layers:
                problems.append(
                    f"init.layers lists {len(recipe.init.layers)} indices but the draft has {draft.num_layers} layers"
                )
            if teacher is not None and any(not 0 <= i < teacher.num_layers for i in recipe.init.layers):
                problems.append(f"init.layers must be indices in 0..{teacher.num_layers - 1}")
    if recipe.data.seq_len > 0 and recipe.data.on_policy.fraction > 0 and recipe.data.kind == "chat":
        pass  # chat prompts are fine for on-policy sampling
    if recipe.deepspeed.precision == "fp16" and recipe.deepspeed.device == "cpu":
        problems.append("deepspeed.precision fp16 is not supported on CPU; use fp32 or bf16")
    if problems:
        raise DraftforgeError(f"{where} has {len(problems)} problem(s): " + "; ".join(problems))


_WIDTH_FIELDS = ("hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "family")


def default_init(teacher: ModelShape, draft: ModelShape) -> str:
    """The initialisation a generated recipe uses: copy target layers when the widths match, prune
    the target when the draft is a narrower cut of it (same head_dim), random otherwise."""
    if (
        all(getattr(draft, k) == getattr(teacher, k) for k in _WIDTH_FIELDS)
        and draft.num_layers <= teacher.num_layers
    ):
        return "layers"
    prunable = (
        draft.family == teacher.family != "opt"
        and draft.head_dim == teacher.head_dim
        and all(getattr(draft, k) <= getattr(teacher, k) for k in _WIDTH_FIELDS[:-1])
        and draft.num_heads // draft.num_kv_heads <= teacher.num_heads // teacher.num_kv_heads
        and draft.num_layers <= teacher.num_layers
    )
    return "prune" if prunable else "random"


def _known_target_shape(recipe: Recipe) -> ModelShape | None:
    """The teacher's shape when it is known without downloading (random, catalog, local folder)."""
    if isinstance(recipe.target, RandomTarget):
        return recipe.target.shape
    from draftforge.catalog import get_target

    try:
        return get_target(recipe.target).shape
    except DraftforgeError:
        pass
    config = recipe.path(recipe.target) / "config.json"
    if config.is_file():
        try:
            return ModelShape.from_hf_config(json.loads(config.read_text(encoding="utf-8")))
        except (DraftforgeError, json.JSONDecodeError):
            return None
    return None


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML file, apply `--set` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise DraftforgeError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DraftforgeError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    return recipe_from_dict(raw, base_dir=path.resolve().parent, where=str(path))


def shape_from_search(path: Path, rank: int) -> ModelShape:
    """The shape of candidate `rank` in a draftforge.search/1 file."""
    from draftforge.files import read_versioned

    result = read_versioned(path, "draftforge.search/1")
    for cand in result.get("candidates", []):
        if cand.get("rank") == rank:
            return ModelShape.from_dict(cand["shape"])
    ranks = [c.get("rank") for c in result.get("candidates", [])]
    raise DraftforgeError(f"{path} has no candidate of rank {rank}; ranks present: {ranks}")


# ---- recipes written by `draftforge search` (contract 5) ---------------------------------------
def render_search_recipe(
    target: str, shape: ModelShape, search_json: str | None, rank: int, gpu: str | None
) -> str:
    """YAML text of a ready distill recipe for `shape` (rank `rank` of `search_json`) and `target`.

    The shape is written explicitly (and checked against `search_json` at load time when that is
    given). Initialisation copies target layers when widths match and width-prunes the target
    otherwise; DeepSpeed settings follow the GPU (bf16, ZeRO-3 with a partitioned teacher when the
    teacher's bf16 weights exceed ~40% of one GPU's memory) or CPU fp32 without a GPU.
    """
    from draftforge.catalog import get_hardware, resolve_target

    teacher = resolve_target(target)
    if teacher.shape.vocab_size != shape.vocab_size:
        raise DraftforgeError(
            f"draft vocab_size {shape.vocab_size} differs from target {target!r}'s {teacher.shape.vocab_size}"
        )
    init: dict[str, Any] = {"method": default_init(teacher.shape, shape), "layers": "first_last"}
    ds: dict[str, Any]
    if gpu is None:
        ds = {"zero_stage": 0, "precision": "fp32", "device": "cpu"}
        optim = {"lr": 3e-4, "max_steps": 300, "warmup_steps": 20, "micro_batch_size": 4, "grad_accum": 1}
    else:
        hw = get_hardware(gpu)
        big = hw.memory_bytes > 0 and teacher.shape.weight_bytes("bf16") > 0.4 * hw.memory_bytes
        ds = {"zero_stage": 3 if big else 2, "precision": "bf16", "device": "cuda", "teacher_zero3": big}
        optim = {"lr": 3e-4, "max_steps": 20000, "warmup_steps": 500, "micro_batch_size": 8, "grad_accum": 4}
    draft: dict[str, Any] = {"shape": shape.to_dict()}
    if search_json is not None:
        # the recipe is written next to search.json, so the reference is relative to it
        draft.update(search=Path(search_json).name, rank=rank)
    name = f"{teacher.name}-draft-{shape.describe().replace(' ', '-').replace('/', '_').lower()}"
    recipe: dict[str, Any] = {
        "schema": RECIPE_SCHEMA,
        "name": name,
        "target": target,
        "draft": draft,
        "init": init,
        "data": (
            {
                "source": "HuggingFaceH4/ultrachat_200k",
                "split": "train_sft",
                "kind": "chat",
                "messages_field": "messages",
                "seq_len": 1024,
                "max_records": 200000,
                "eval_records": 64,
                "regenerate": {
                    "enabled": True,
                    "max_records": 20000,
                    "max_new_tokens": 256,
                    "batch_size": 32,
                },
            }
            if gpu
            # on a CPU: offline text that exists wherever Python does (replace with your own data)
            else {
                "source": "pydoc:topics",
                "kind": "text",
                "seq_len": 128,
                "max_records": 400,
                "eval_records": 16,
            }
        ),
        "loss": {"terms": {"forward_kl": 0.5, "tv": 0.5}, "temperature": 1.0},
        "optim": optim,
        "deepspeed": ds,
        "eval": {"every_steps": 500 if gpu else 50, "max_batches": 8},
        "output": {"dir": f"runs/{name}", "save_every": 1000 if gpu else 100},
    }
    header = (
        f"# Distill recipe written by `draftforge search` for {teacher.name}"
        + (f" on {gpu}" if gpu else "")
        + f": rank {rank} shape {shape.describe()} ({shape.param_count() / 1e6:.1f}M parameters).\n"
        "# Run: draftforge distill <this file>   (edit data.source for your own data)\n"
    )
    text = header + yaml.safe_dump(recipe, sort_keys=False)
    # the result must load through the real loader (search.json is checked at run time)
    recipe_from_dict(yaml.safe_load(text), base_dir=Path(search_json).parent if search_json else ".")
    return text
