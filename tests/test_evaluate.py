"""`draftforge evaluate` end to end on tiny saved models (and on SmolLM2, slow)."""

from __future__ import annotations

import json
import string

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from draftforge.cli import app
from draftforge.errors import DraftforgeError
from draftforge.evaluate.report import SCHEMA, problems, read_report
from draftforge.evaluate.runner import EvalConfig, run

CHAT_TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII (vocab 100), built offline."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    chars = [c for c in string.printable if c not in "\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny(path, seed: int, layers: int, vocab: int, base=None, noise: float = 0.0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=2,
        bos_token_id=1,
    )
    model = LlamaForCausalLM(config).eval()
    if base is not None:  # a noisy copy of the base's first layers: partial agreement
        state = {k: v for k, v in base.state_dict().items() if k in model.state_dict()}
        model.load_state_dict(state)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * noise * p.std().clamp_min(1e-3))
    model.save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    vocab = len(char_tokenizer().get_vocab())
    target = save_tiny(root / "target", 0, 2, vocab)
    save_tiny(root / "draft", 1, 2, vocab, base=target, noise=0.3)
    save_tiny(root / "other", 2, 1, vocab + 4)
    return root


def test_run_writes_a_valid_report_and_plot(tiny_pair, tmp_path):
    config = EvalConfig(
        draft=str(tiny_pair / "draft"),
        target=str(tiny_pair / "target"),
        prompts="chat-mini",
        gammas=(1, 3),
        max_new_tokens=16,
        num_prompts=4,
        out=str(tmp_path / "r.json"),
    )
    seen = []
    report, path = run(config, progress=lambda done, total, desc: seen.append((done, total)))
    assert path == tmp_path / "r.json" and (tmp_path / "r.png").stat().st_size > 1000
    assert seen[-1][0] == seen[-1][1] == 4 * 4 + 4
    again = read_report(path)
    assert again == json.loads(path.read_text()) and problems(again) == []
    assert again["schema"] == SCHEMA and again["settings"]["num_prompts"] == 4
    assert [r["gamma"] for r in again["results"]] == [1, 3]
    for r in again["results"]:
        assert 1.0 <= r["tau"] <= r["gamma"] + 1 and len(r["per_position_acceptance"]) == r["gamma"]
        assert sum(c["n"] for c in r["per_category"].values()) == 4
        assert r["generated_tokens"] == 4 * 16
    assert again["hf_assisted"]["outputs_identical"] is True
    assert again["target"]["shape"]["num_layers"] == 2 and again["draft"]["params"] > 0
    with pytest.raises(DraftforgeError, match="exists"):
        run(config)


def test_sampling_run_has_no_hf_entry(tiny_pair, tmp_path):
    config = EvalConfig(
        draft=str(tiny_pair / "draft"),
        target=str(tiny_pair / "target"),
        prompts="humaneval",
        gammas=(2,),
        temperature=0.8,
        top_p=0.9,
        max_new_tokens=8,
        num_prompts=2,
        out=str(tmp_path / "s.json"),
    )
    report, _ = run(config)
    assert report["hf_assisted"] is None and report["settings"]["temperature"] == 0.8
    assert report["results"][0]["per_category"].keys() == {"code"}


def test_mismatched_vocabulary_is_refused(tiny_pair, tmp_path):
    config = EvalConfig(
        draft=str(tiny_pair / "other"), target=str(tiny_pair / "target"), out=str(tmp_path / "x.json")
    )
    with pytest.raises(DraftforgeError, match="vocabulary"):
        run(config)


def test_config_reports_all_problems():
    with pytest.raises(DraftforgeError) as info:
        EvalConfig(draft="d", target="t", gammas=(0,), temperature=-1, top_p=0, max_new_tokens=0)
    for key in ("gamma", "temperature", "top_p", "max_new_tokens"):
        assert key in str(info.value)


def test_read_report_refuses_incomplete_files(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": []}))
    with pytest.raises(DraftforgeError, match="not a complete"):
        read_report(path)


def test_cli_json(tiny_pair, tmp_path):
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--draft",
            str(tiny_pair / "draft"),
            "--target",
            str(tiny_pair / "target"),
            "--prompts",
            "humaneval",
            "--num-prompts",
            "2",
            "--gamma",
            "2,4",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["path"] == str(out) and payload["report"]["schema"] == SCHEMA
    assert read_report(out)["results"][1]["gamma"] == 4


def test_cli_bad_gamma_is_a_clean_error(tiny_pair):
    from draftforge.cli import main

    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--draft", "x", "--target", "y", "--gamma", "0"])
    assert info.value.code == 2
