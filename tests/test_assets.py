from __future__ import annotations

import json

import pytest

from draftforge import assets
from draftforge.errors import DraftforgeError


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAFTFORGE_CACHE", str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()


def test_resolve_model_keeps_paths_and_foreign_ids(tmp_path):
    assert assets.resolve_model(str(tmp_path)) == str(tmp_path)
    assert assets.resolve_model("someone/some-model") == "someone/some-model"
    assert assets.resolve_model("llama-2-7b") == "meta-llama/Llama-2-7b-hf"


def test_hub_offline_env_means_unreachable(monkeypatch):
    assets.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        assert assets.hub_reachable() is False
    finally:
        assets.hub_reachable.cache_clear()


def test_load_model_refuses_bad_dtype_and_missing_folder(tmp_path):
    with pytest.raises(DraftforgeError, match="dtype"):
        assets.load_model_and_tokenizer(str(tmp_path), dtype="float33")
    with pytest.raises(DraftforgeError, match="could not load model"):
        assets.load_model_and_tokenizer(str(tmp_path))


def test_humaneval_prompts():
    prompts = assets.humaneval_prompts()
    assert len(prompts) == 164
    assert prompts[0].lstrip().startswith("from typing import List")
    assert assets.humaneval_problems()[0]["task_id"] == "HumanEval/0"


@pytest.mark.slow
def test_smollm2_folder_is_a_plain_transformers_model(smollm2_path):
    import torch

    assert assets.resolve_model("smollm2-135m") == str(smollm2_path)
    assert assets.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == str(smollm2_path)
    marker = json.loads((smollm2_path / "draftforge-asset.json").read_text())
    assert marker["schema"] == "draftforge.asset/1"
    model, tok = assets.load_model_and_tokenizer("smollm2-135m")
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_cli_assets_fetch_humaneval_and_unknown():
    from typer.testing import CliRunner

    from draftforge.cli import app, main

    result = CliRunner().invoke(app, ["assets", "fetch", "humaneval", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompts"] == 164
    with pytest.raises(SystemExit) as info:
        main(["assets", "fetch", "llama"])
    assert info.value.code == 2


def test_cli_assets_fetch_smollm2_reuses_the_cache(smollm2_path):
    from typer.testing import CliRunner

    from draftforge.cli import app

    result = CliRunner().invoke(app, ["assets", "fetch", "smollm2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(smollm2_path)
