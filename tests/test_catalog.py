from __future__ import annotations

import json

import pytest

from draftforge.catalog import get_hardware, get_target, list_hardware, resolve_target, same_tokenizer_targets
from draftforge.errors import DraftforgeError

REQUIRED_GPUS = [
    "a100-40gb",
    "a100-80gb",
    "a100-80gb-pcie",
    "h100-sxm",
    "h100-pcie",
    "h200",
    "l4",
    "l40s",
    "a10g",
    "rtx4090",
    "v100",
    "mi300x",
]
REQUIRED_TARGETS = [
    "llama-7b",
    "llama-13b",
    "llama-30b",
    "llama-65b",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "opt-125m",
    "opt-350m",
    "opt-1.3b",
    "opt-2.7b",
    "opt-6.7b",
    "opt-13b",
    "opt-30b",
    "opt-66b",
    "mistral-7b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "smollm2-135m",
]


@pytest.mark.parametrize("name", REQUIRED_GPUS)
def test_every_required_gpu_has_sourced_figures(name):
    hw = get_hardware(name)
    assert hw.peak_flops > 1e13 and hw.memory_bandwidth > 1e11 and hw.memory_bytes > 1e10
    assert hw.interconnect_bandwidth > 1e9
    assert set(hw.sources) >= {"bf16_tflops", "memory_tb_s", "memory_gb", "interconnect_gb_s"}


def test_aliases():
    assert get_hardware("a100").name == "a100-80gb"
    assert get_hardware("H100").name == "h100-sxm"
    assert get_hardware("cpu").kind == "cpu"
    assert len(list_hardware()) >= 13


def test_unknown_gpu_lists_close_names():
    with pytest.raises(DraftforgeError, match=r"unknown GPU 'a1000'; closest: .*a100"):
        get_hardware("a1000")


@pytest.mark.parametrize("name", REQUIRED_TARGETS)
def test_required_targets_present(name):
    assert get_target(name).shape.vocab_size > 0


def test_issue_examples():
    s = get_target("llama-65b").shape
    assert (s.num_layers, s.hidden_size, s.intermediate_size, s.num_heads, s.vocab_size) == (
        80,
        8192,
        22016,
        64,
        32000,
    )
    assert s.param_count() == pytest.approx(65.2e9, rel=0.01)
    s70 = get_target("llama-2-70b").shape
    assert (s70.num_kv_heads, s70.intermediate_size) == (8, 28672)
    o = get_target("opt-66b").shape
    assert (o.hidden_size, o.num_layers, o.mlp) == (9216, 64, "standard")


def test_hub_id_resolves_to_catalog_offline():
    assert resolve_target("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2-135m"


def test_config_json_path(tmp_path):
    cfg = get_target("smollm2-135m").shape.to_hf_config()
    path = tmp_path / "m" / "config.json"
    path.parent.mkdir()
    path.write_text(cfg.to_json_string())
    t = resolve_target(str(path.parent))
    assert t.shape == get_target("smollm2-135m").shape
    assert t.tokenizer == "smollm2"


def test_bad_config_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(DraftforgeError, match="not a valid config.json"):
        resolve_target(str(path))
    path.write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DraftforgeError, match="unsupported model_type"):
        resolve_target(str(path))


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DraftforgeError, match="could not fetch the config of Hub model"):
        resolve_target("nobody-here/not-a-model")


def test_unknown_target():
    with pytest.raises(DraftforgeError, match="unknown target 'llama-66b'; closest: .*llama-65b"):
        resolve_target("llama-66b")


def test_same_tokenizer_baselines():
    names = [t.name for t in same_tokenizer_targets(get_target("llama-65b"))]
    assert "llama-7b" in names and "llama-13b" in names and "llama-65b" not in names
    assert all(get_target(n).tokenizer == "llama" for n in names)
    opt = [t.name for t in same_tokenizer_targets(get_target("opt-66b"))]
    assert opt[0] == "opt-125m" and "opt-6.7b" in opt
