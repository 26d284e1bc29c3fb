"""Built-in data: hardware spec sheets, target model shapes, measured profiles; lookup only.

Figures live in `hardware.yaml` and `targets.yaml` next to this file, each with its source.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from draftforge.errors import DraftforgeError, unknown_name_error
from draftforge.shapes import ModelShape

_GPU_FIELDS = ("bf16_tflops", "memory_tb_s", "memory_gb", "interconnect_gb_s")


@dataclass(frozen=True)
class Hardware:
    """One accelerator's spec sheet. Units: FLOP/s, bytes/s, bytes (per direction for links)."""

    name: str
    display_name: str
    kind: Literal["gpu", "cpu"] = "gpu"
    peak_flops: float = 0.0
    memory_bandwidth: float = 0.0
    memory_bytes: float = 0.0
    interconnect: str = ""
    interconnect_bandwidth: float = 0.0
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def has_spec_sheet(self) -> bool:
        return self.kind == "gpu"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "kind": self.kind,
            "aliases": list(self.aliases),
            "peak_flops": self.peak_flops,
            "memory_bandwidth": self.memory_bandwidth,
            "memory_bytes": self.memory_bytes,
            "interconnect": self.interconnect,
            "interconnect_bandwidth": self.interconnect_bandwidth,
            "sources": dict(self.sources),
        }


@dataclass(frozen=True)
class Target:
    """A target model: its shape plus what a draft must share with it (tokenizer) and metadata."""

    name: str
    shape: ModelShape
    hub_id: str | None = None
    tokenizer: str | None = None
    license: str | None = None
    published_params: float | None = None
    source: str = "catalog"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hub_id": self.hub_id,
            "tokenizer": self.tokenizer,
            "license": self.license,
            "source": self.source,
            "published_params": self.published_params,
            "params": self.shape.param_count(),
            "shape": self.shape.to_dict(),
        }


def _load_yaml(name: str) -> dict[str, Any]:
    text = resources.files("draftforge.catalog").joinpath(name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@functools.cache
def _hardware() -> dict[str, Hardware]:
    out: dict[str, Hardware] = {}
    for name, entry in _load_yaml("hardware.yaml").items():
        kind = entry.get("kind", "gpu")
        if kind == "gpu":
            missing = [f for f in _GPU_FIELDS if f not in entry or f not in entry.get("sources", {})]
            if missing:
                raise RuntimeError(f"hardware.yaml entry {name} lacks a figure or its source: {missing}")
        out[name] = Hardware(
            name=name,
            display_name=entry["display_name"],
            kind=kind,
            peak_flops=float(entry.get("bf16_tflops", 0)) * 1e12,
            memory_bandwidth=float(entry.get("memory_tb_s", 0)) * 1e12,
            memory_bytes=float(entry.get("memory_gb", 0)) * 1e9,
            interconnect=entry.get("interconnect", ""),
            interconnect_bandwidth=float(entry.get("interconnect_gb_s", 0)) * 1e9,
            aliases=tuple(entry.get("aliases", ())),
            sources=dict(entry.get("sources", {})),
        )
    return out


def _aliases() -> dict[str, str]:
    table = {name: name for name in _hardware()}
    for hw in _hardware().values():
        for alias in hw.aliases:
            table[alias] = hw.name
    return table


def list_hardware() -> list[Hardware]:
    return list(_hardware().values())


def get_hardware(name: str) -> Hardware:
    """Look up a catalog accelerator by name or alias (case-insensitive)."""
    key = name.strip().lower()
    table = _aliases()
    if key not in table:
        raise unknown_name_error("GPU", name, table)
    return _hardware()[table[key]]


@functools.cache
def _targets() -> dict[str, Target]:
    out: dict[str, Target] = {}
    for name, entry in _load_yaml("targets.yaml").items():
        out[name] = Target(
            name=name,
            shape=ModelShape.from_dict(entry["shape"]),
            hub_id=entry.get("hub_id"),
            tokenizer=entry.get("tokenizer"),
            license=entry.get("license"),
            published_params=float(entry["published_params"]) if "published_params" in entry else None,
        )
    return out


def list_targets() -> list[Target]:
    return list(_targets().values())


def get_target(name: str) -> Target:
    """Look up a catalog target by name (case-insensitive) or by its Hub id."""
    key = name.strip().lower()
    targets = _targets()
    if key in targets:
        return targets[key]
    for target in targets.values():
        if target.hub_id and target.hub_id.lower() == key:
            return target
    raise unknown_name_error("target", name, targets)


def resolve_target(spec: str) -> Target:
    """A target from a catalog name, a Hub id of a catalog model, a config.json path, or any Hub id.

    Hub ids outside the catalog are read with transformers' AutoConfig (never with remote code);
    offline that raises a clear error.
    """
    try:
        return get_target(spec)
    except DraftforgeError as not_in_catalog:
        path = Path(os.path.expanduser(spec))
        if path.is_dir():
            path = path / "config.json"
        if path.is_file():
            return _target_from_config_file(path)
        if "/" in spec and not spec.startswith((".", "/")) and spec.count("/") == 1:
            return _target_from_hub(spec)
        raise not_in_catalog


def _target_from_config_file(path: Path) -> Target:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DraftforgeError(f"{path} is not a valid config.json ({exc})") from None
    shape = ModelShape.from_hf_config(config)
    return Target(name=path.parent.name, shape=shape, tokenizer=_tokenizer_key(shape), source=str(path))


def _target_from_hub(repo_id: str) -> Target:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(repo_id, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise DraftforgeError(
            f"could not fetch the config of Hub model {repo_id!r} (offline, private or misspelt?): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    shape = ModelShape.from_hf_config(config)
    return Target(
        name=repo_id.split("/")[-1].lower(),
        shape=shape,
        hub_id=repo_id,
        tokenizer=_tokenizer_key(shape),
        source=f"hub:{repo_id}",
    )


def _tokenizer_key(shape: ModelShape) -> str | None:
    """Best-effort tokenizer identity of a non-catalog model: a catalog tokenizer with the same vocab."""
    for target in _targets().values():
        if target.shape.vocab_size == shape.vocab_size and target.shape.family == shape.family:
            return target.tokenizer
    return None


def same_tokenizer_targets(target: Target) -> list[Target]:
    """Catalog models smaller than `target` that share its tokenizer (the drafts users would pick)."""
    if target.tokenizer is None:
        return []
    own = target.shape.param_count()
    return sorted(
        (
            t
            for t in _targets().values()
            if t.tokenizer == target.tokenizer and t.shape.param_count() < own and t.name != target.name
        ),
        key=lambda t: t.shape.param_count(),
    )


def builtin_profiles_dir() -> Path:
    """Folder of measured profiles shipped with draftforge (`draftforge.profile/1` JSON files)."""
    return Path(str(resources.files("draftforge.catalog").joinpath("profiles")))
