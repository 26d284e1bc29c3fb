"""draftforge publish: dry-run folder, model card metadata, the gate, and the upload path.

The upload is exercised through huggingface_hub's real HfApi with its HTTP client replaced by an
httpx MockTransport (huggingface_hub.utils.set_client_factory), so the requests it would send to the
Hub are checked: the files of the one commit, their bytes, the commit message and the token header.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from draftforge.errors import DraftforgeError
from draftforge.files import write_json
from draftforge.publish import PublishConfig, run
from draftforge.shapes import ModelShape

SENTINEL_TOKEN = "hf_SENTINELtokenDoNotPrint0123456789"

DRAFT_SHAPE = ModelShape(
    num_layers=1,
    hidden_size=32,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=64,
    vocab_size=64,
    max_positions=128,
)
TARGET_SHAPE = DRAFT_SHAPE.replace(num_layers=4, hidden_size=64, intermediate_size=128)


# ---- building a tiny draft ----------------------------------------------------------------------
def _save_tiny_model(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    LlamaForCausalLM(DRAFT_SHAPE.to_hf_config()).save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(DRAFT_SHAPE.vocab_size - 1)} | {"<unk>": DRAFT_SHAPE.vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="w0")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)


def _draft_meta(search_path: str | None) -> dict:
    return {
        "schema": "draftforge.draft/1",
        "created": "2026-11-25T00:00:00+00:00",
        "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0", "draftforge": "0.1.0"},
        "shape": DRAFT_SHAPE.to_dict(),
        "params": DRAFT_SHAPE.param_count(),
        "target": {
            "spec": "smollm2-135m",
            "name": "smollm2-135m",
            "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "tokenizer": "smollm2",
            "license": "apache-2.0",
        },
        "init": {"method": "layers", "layers": "first_last"},
        "recipe": {"schema": "draftforge.recipe/1", "name": "tiny-pub", "target": "smollm2-135m"},
        "recipe_sha256": "ab" * 32,
        "data": {
            "source": "stdlib:pydoc_data/topics.py",
            "train_tokens": 12345,
            "cached": "/root/.cache/x.pt",
        },
        "loss": {"forward_kl": 1.0},
        "steps": 12,
        "tokens": 3072,
        "initial_metrics": {"eval/alpha": 0.2011, "eval/greedy_agree": 0.15},
        "final_metrics": {"train/loss": 2.5, "eval/alpha": 0.4213, "eval/greedy_agree": 0.35},
        "search": {"path": search_path, "rank": 1} if search_path else None,
        "device": {"device": "cpu", "cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2},
    }


def _eval_report(
    draft_path: str, speedups: tuple[float, ...] = (1.234, 1.456), params: int | None = None
) -> dict:
    results = []
    for gamma, speedup in zip((2, 4), speedups, strict=False):
        results.append(
            {
                "gamma": gamma,
                "alpha": 0.6 + 0.01 * gamma,
                "tau": 1.0 + gamma * 0.5,
                "per_position_acceptance": [0.7 - 0.05 * i for i in range(gamma)],
                "tokens_per_s": 20.0 * speedup,
                "target_tokens_per_s": 20.0,
                "speedup": speedup,
                "draft_time_s": 1.0,
                "verify_time_s": 2.0,
                "iterations": 10,
                "generated_tokens": 64,
                "proxy_alpha": 0.55,
                "per_category": {
                    "code": {"alpha": 0.7, "tau": 3.1, "speedup": speedup + 0.1, "n": 6},
                    "chat": {"alpha": 0.5, "tau": 2.2, "speedup": speedup - 0.1, "n": 4},
                },
            }
        )
    return {
        "schema": "draftforge.eval/1",
        "created": "2026-11-25T00:00:00+00:00",
        "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0"},
        "device": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "cuda": "12.8"},
        "draft": {
            "spec": draft_path,
            "path": draft_path,
            "params": params or DRAFT_SHAPE.param_count(),
            "shape": DRAFT_SHAPE.to_dict(),
        },
        "target": {
            "spec": "smollm2-135m",
            "path": "/cache/smollm2",
            "params": TARGET_SHAPE.param_count(),
            "shape": TARGET_SHAPE.to_dict(),
        },
        "settings": {
            "prompts": "humaneval",
            "num_prompts": 10,
            "max_new_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 0,
        },
        "results": results,
        "hf_assisted": {"gamma": 4, "tokens_per_s": 22.0, "speedup": 1.1, "outputs_identical": True},
        "best": max(range(len(results)), key=lambda i: results[i]["speedup"]),
    }


def _search_json() -> dict:
    cand = {
        "rank": 1,
        "shape": DRAFT_SHAPE.to_dict(),
        "params": DRAFT_SHAPE.param_count(),
        "draft_latency_s": 0.00123,
        "alpha": 0.61,
        "alpha_low": 0.55,
        "alpha_high": 0.67,
        "gamma": 4,
        "tau": 2.9,
        "latency_per_token_s": 0.004,
        "speedup": 1.87,
        "speedup_low": 1.6,
        "speedup_high": 2.1,
        "tokens_per_s": 250.0,
        "feasible": True,
        "reason": None,
    }
    return {
        "schema": "draftforge.search/1",
        "created": "2026-11-25T00:00:00+00:00",
        "inputs": {
            "gpu": "h100",
            "target": "smollm2-135m",
            "batch_sizes": [1],
            "context": 512,
            "trials": 300,
        },
        "latency_model": {
            "draft_label": "measured h100 bf16 eager",
            "draft": {
                "kind": "measured",
                "label": "measured h100 bf16 eager",
                "error_report": {"n": 40, "mape": 0.061, "within_10pct": 0.9, "worst_error": -0.18},
            },
            "target_by_batch_size": {"1": {"tp": 1, "label": "spec-sheet h100 bf16 eager"}},
        },
        "acceptance_model": {"source": "prior"},
        "candidates": [cand, {**cand, "rank": 2, "shape": DRAFT_SHAPE.replace(num_layers=2).to_dict()}],
        "why": "1 layer x 32 wide: a draft step takes 1.23 ms, so at gamma=4 it decodes 1.87x faster.",
        "baselines": [
            {**cand, "rank": None, "name": "smollm2-135m-itself", "speedup": 0.9},
            {**cand, "rank": None, "name": "too-big", "feasible": False, "reason": "does not fit"},
        ],
    }


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    _save_tiny_model(folder)
    return folder


@pytest.fixture
def draft(tmp_path, model_files) -> Path:
    """runs/draft (model + draftforge.json + eval.json + stray files) and runs/search/search.json."""
    import shutil

    root = tmp_path / "runs"
    d = root / "draft"
    shutil.copytree(model_files, d)
    write_json(root / "search" / "search.json", _search_json())
    write_json(d / "draftforge.json", _draft_meta(str(root / "search" / "search.json")))
    write_json(d / "eval.json", _eval_report(str(d)))
    (d / "train_log.jsonl").write_text('{"step": 1}\n')
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "step-6.pt").write_bytes(b"x")
    return d


# ---- dry run and the card -----------------------------------------------------------------------
def test_dry_run_writes_the_complete_upload(draft, tmp_path):
    out = tmp_path / "out"
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", dry_run=str(out)))

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == list(result.files)
    assert "made decoding slower" not in (out / "README.md").read_text()
    for name in (
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "draftforge.json",
        "eval/eval.json",
        "search.json",
    ):
        assert name in written, name
    assert "train_log.jsonl" not in written and not (out / "checkpoints").exists()
    assert any("train_log.jsonl" in s for s in result.skipped)
    assert any(s.startswith("checkpoints/") for s in result.skipped)
    # copies are byte-identical to their sources
    assert (out / "model.safetensors").read_bytes() == (draft / "model.safetensors").read_bytes()
    assert (out / "eval" / "eval.json").read_bytes() == (draft / "eval.json").read_bytes()
    assert result.url is None and result.dry_run_dir == str(out)
    assert result.speedup == pytest.approx(1.456) and result.gamma == 4
    assert result.commit_message == "draftforge: upload draft tiny-pub (α=0.640, speedup=1.46x, γ=4)"

    # the folder is a loadable transformers model with the draft's parameter count
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == DRAFT_SHAPE.param_count()
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_card_metadata_validates_with_huggingface_hub(draft, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard import metadata_load

    out = tmp_path / "out"
    run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", dry_run=str(out)))
    card = ModelCard.load(out / "README.md")
    assert isinstance(card.data, ModelCardData)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.license == "apache-2.0"
    assert {"speculative-decoding", "draft-model", "draftforge"} <= set(card.data.tags)
    # strict parse: ModelCardData raises on malformed metadata unless ignore_metadata_errors
    strict = ModelCardData(**metadata_load(out / "README.md"))
    assert strict.to_dict() == card.data.to_dict()

    text = card.text
    # figures come from the files: eval report, search result, draftforge.json
    assert "**1.46×**" in text and "**1.23×**" in text  # measured speedups (γ 4 and 2)
    assert "NVIDIA H100 80GB HBM3" in text and "humaneval (10 prompts" in text
    assert "0.70, 0.65, 0.60, 0.55" in text  # per-position acceptance of the best row
    assert "| code | 6 | 0.700 | 3.10 | 1.56× |" in text and "| chat | 4 | 0.500 | 2.20 | 1.36× |" in text
    # latency model and its held-out error
    assert (
        "measured h100 bf16 eager; its error on held-out shapes: MAPE 6.1%, 90% within ±10%, worst -18.0%"
        in text
    )
    assert "(target = smollm2-135m, gpu = h100, batch_sizes = [1], context = 512)" in text
    assert "speedup 1.87× (1.60×–2.10× over the α range)" in text  # the search's predicted speedup
    assert "The search's reason: 1 layer x 32 wide" in text
    assert (
        "| smollm2-135m-itself | 13,408 | 0.610 | 4 | 0.90× |" in text and "not usable: does not fit" in text
    )
    assert "torch 2.13.0" in text and "transformers 5.24.0" in text
    assert f"{DRAFT_SHAPE.param_count():,}" in text and f"{TARGET_SHAPE.param_count():,}" in text
    # usage snippets for the three runtimes, with the measured best γ
    assert "assistant_model=draft" in text and "num_assistant_tokens=4" in text
    assert '"method": "draft_model", "model": "me/tiny-draft", "num_speculative_tokens": 4' in text
    assert "--speculative-algorithm STANDALONE" in text
    assert "--speculative-draft-model-path me/tiny-draft" in text
    assert "--speculative-num-steps 4 --speculative-eagle-topk 1 --speculative-num-draft-tokens 5" in text
    # training: recipe, data, tokens, loss, metrics
    assert "tiny-pub" in text and "train_tokens = 12,345" in text and "forward_kl: 1.0" in text
    assert "| eval/alpha | 0.2011 | 0.4213 |" in text and "tokens processed in training: 3,072" in text
    assert "/root/.cache" not in text  # a training machine's cache path is not card material


def test_latency_model_lines():
    from draftforge.publish_card import _describe_latency_model

    spec = {"draft_label": "spec-sheet h100 bf16 eager", "draft": {"kind": "spec-sheet", "label": "x"}}
    assert "spec-sheet estimate" in _describe_latency_model(spec)
    bare = {"kind": "measured", "label": "measured cpu fp32 eager", "error_report": {"mape": 0.1}}
    assert (
        _describe_latency_model(bare) == "measured cpu fp32 eager; its error on held-out shapes: MAPE 10.0%"
    )
    assert "no error report" in _describe_latency_model({"label": "m", "error_report": None})


def test_the_cards_transformers_snippet_runs(draft, tmp_path, model_files):
    """The card's assisted-generation code, pointed at local folders, generates with the draft."""
    import re

    from transformers import LlamaForCausalLM

    target_dir = tmp_path / "target"
    LlamaForCausalLM(TARGET_SHAPE.to_hf_config()).save_pretrained(target_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (target_dir / name).write_bytes((model_files / name).read_bytes())
    out = tmp_path / "out"
    run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", dry_run=str(out)))
    text = (out / "README.md").read_text()
    code = re.search(r"```python\n(import torch\n.*?)```", text, re.S).group(1)
    code = code.replace("HuggingFaceTB/SmolLM2-135M-Instruct", str(target_dir)).replace(
        "me/tiny-draft", str(out)
    )
    code = code.replace("max_new_tokens=128", "max_new_tokens=8").replace("print(", "decoded = (")
    namespace: dict = {}
    exec(compile(code, "README.md snippet", "exec"), namespace)
    new_tokens = namespace["out"].shape[1] - namespace["inputs"]["input_ids"].shape[1]
    assert 1 <= new_tokens <= 8 and isinstance(namespace["decoded"], str)


def test_card_says_when_the_shape_is_not_from_a_search(draft, tmp_path):
    meta = json.loads((draft / "draftforge.json").read_text())
    meta["search"] = None
    write_json(draft / "draftforge.json", meta)
    out = tmp_path / "out"
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(out)))
    assert "search.json" not in result.files
    assert "not from a search" in (out / "README.md").read_text()


def test_card_without_hub_id_or_license_omits_those_keys(draft, tmp_path):
    from huggingface_hub import ModelCard

    meta = json.loads((draft / "draftforge.json").read_text())
    meta["target"] = {"spec": "/models/local-target", "name": "local-target", "hub_id": None, "license": None}
    write_json(draft / "draftforge.json", meta)
    run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "out")))
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model is None and card.data.license is None
    assert 'from_pretrained("/models/local-target"' in card.text


def test_dry_run_refuses_a_non_empty_folder(draft, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DraftforgeError, match="--dry-run"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ---- the gate and the inputs --------------------------------------------------------------------
def test_gate_refuses_a_draft_without_an_eval_report_unless_forced(draft, tmp_path):
    (draft / "eval.json").unlink()
    with pytest.raises(DraftforgeError, match="no eval report"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "b"), force=True))
    assert "no eval report" in result.forced_reason and result.speedup is None
    assert not any(f.startswith("eval/") for f in result.files)
    assert "has not been measured" in (tmp_path / "b" / "README.md").read_text()


def test_gate_refuses_a_speedup_below_one_unless_forced(draft, tmp_path):
    write_json(draft / "eval.json", _eval_report(str(draft), speedups=(0.81, 0.97)))
    with pytest.raises(DraftforgeError, match=r"speedup is 0\.970x \(below 1"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "a")))
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "b"), force=True))
    assert "below 1" in result.forced_reason and result.speedup == pytest.approx(0.97)
    assert "made decoding slower in every measurement" in (tmp_path / "b" / "README.md").read_text()


def test_gate_uses_the_best_of_several_reports(draft, tmp_path):
    write_json(draft / "eval.json", _eval_report(str(draft), speedups=(0.8, 0.9)))
    write_json(draft.parent / "eval-gpu.json", _eval_report(str(draft), speedups=(1.5, 2.25)))
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "o")))
    assert result.forced_reason is None and result.speedup == pytest.approx(2.25)
    assert {"eval/eval.json", "eval/eval-gpu.json"} <= set(result.files)


def test_reports_of_another_draft_are_not_used(draft, tmp_path):
    other = draft.parent / "other-draft"
    other.mkdir()
    (draft / "eval.json").unlink()
    write_json(draft.parent / "eval-other.json", _eval_report(str(other), speedups=(3.0, 3.5)))
    with pytest.raises(DraftforgeError, match="no eval report"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "o")))
    wrong = tmp_path / "eval-wrong.json"
    write_json(wrong, _eval_report(str(draft), params=123))
    with pytest.raises(DraftforgeError, match="123 parameters"):
        run(
            PublishConfig(
                draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "o"), eval_reports=(str(wrong),)
            )
        )


def test_explicit_eval_and_search_files(draft, tmp_path):
    (draft / "eval.json").unlink()
    report = tmp_path / "elsewhere" / "h100.json"
    write_json(report, _eval_report(str(draft)))
    meta = json.loads((draft / "draftforge.json").read_text())
    meta["search"] = {"path": "/no/such/search.json", "rank": 1}
    write_json(draft / "draftforge.json", meta)
    with pytest.raises(DraftforgeError, match="--search"):
        run(
            PublishConfig(
                draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "o"), eval_reports=(str(report),)
            )
        )
    result = run(
        PublishConfig(
            draft_dir=str(draft),
            repo_id="me/x",
            dry_run=str(tmp_path / "o"),
            eval_reports=(str(report),),
            search=str(draft.parent / "search" / "search.json"),
        )
    )
    assert "eval/h100.json" in result.files and "search.json" in result.files


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_meta", "no draftforge.json"),
        ("foreign_meta", "expected 'draftforge.draft/1'"),
        ("corrupt_meta", "not valid JSON"),
        ("no_weights", r"no model weights \(\*\.safetensors\)"),
        ("corrupt_eval", "not valid JSON"),
        ("foreign_eval", "expected 'draftforge.eval/1'"),
        ("empty_eval", "results' is missing or empty"),
        ("nan_eval", r"results\[1\]\.speedup is missing or not a finite number"),
    ],
)
def test_refuses_broken_inputs(draft, tmp_path, breakage, message):
    meta = draft / "draftforge.json"
    if breakage == "no_meta":
        meta.unlink()
    elif breakage == "foreign_meta":
        write_json(meta, {"schema": "draftforge.eval/1"})
    elif breakage == "corrupt_meta":
        meta.write_text("{not json")
    elif breakage == "no_weights":
        (draft / "model.safetensors").unlink()
    elif breakage == "corrupt_eval":
        (draft / "eval.json").write_text("{")
    elif breakage == "foreign_eval":
        write_json(draft / "eval.json", {"schema": "draftforge.search/1"})
    elif breakage == "nan_eval":
        report = _eval_report(str(draft))
        report["results"][1]["speedup"] = float("nan")
        write_json(draft / "eval.json", report)
    elif breakage == "empty_eval":
        write_json(draft / "eval.json", {**_eval_report(str(draft)), "results": []})
    with pytest.raises(DraftforgeError, match=message):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/x", dry_run=str(tmp_path / "o"), force=True))
    assert not (tmp_path / "o").exists()


def test_config_from_a_recipe_publish_section(draft, tmp_path):
    from draftforge.distill.recipe import PublishSection

    config = PublishConfig.from_section(draft, PublishSection(repo_id="me/from-recipe"))
    assert (config.draft_dir, config.repo_id, config.private) == (str(draft), "me/from-recipe", True)
    assert config.revision is None and config.dry_run is None and not config.force
    result = run(dataclasses.replace(config, dry_run=str(tmp_path / "o")))
    assert result.repo_id == "me/from-recipe" and "README.md" in result.files


def test_config_problems_are_reported_together(tmp_path):
    with pytest.raises(DraftforgeError) as info:
        run(
            PublishConfig(
                draft_dir=str(tmp_path / "nope"), repo_id="no-owner", eval_reports=("missing.json",)
            )
        )
    text = str(info.value)
    assert "DRAFT_DIR" in text and "--repo-id" in text and "--eval 'missing.json'" in text


# ---- upload through huggingface_hub with the network replaced -----------------------------------
class FakeHub:
    """An httpx MockTransport handler answering the Hub endpoints create_repo/create_commit use."""

    def __init__(self, fail: dict[str, tuple[int, str]] | None = None):
        self.requests: list[tuple[str, str, str | None]] = []
        self.commits: list[dict] = []
        self.validated: list[str] = []
        self.fail = fail or {}

    def __call__(self, request):
        import httpx2

        url = str(request.url)
        self.requests.append((request.method, url, request.headers.get("authorization")))
        for key, (status, text) in self.fail.items():
            if key in url:
                return httpx2.Response(status, json={"error": text})
        if url.endswith("/api/repos/create"):
            return httpx2.Response(
                200, json={"url": "https://huggingface.co/me/tiny-draft", "name": "me/tiny-draft"}
            )
        if url.endswith("/api/validate-yaml"):
            self.validated.append(json.loads(request.content)["content"])
            return httpx2.Response(200, json={})
        if "/branch/" in url:
            return httpx2.Response(200, json={})
        if "/preupload/" in url:
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if "/commit/" in url:
            lines = [json.loads(line) for line in request.content.decode().splitlines()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files = {
                x["value"]["path"]: base64.b64decode(x["value"]["content"])
                for x in lines
                if x["key"] == "file"
            }
            self.commits.append({"url": url, "summary": header["summary"], "files": files})
            return httpx2.Response(
                200,
                json={
                    "commitUrl": "https://huggingface.co/me/tiny-draft/commit/abc123",
                    "commitOid": "abc123",
                },
            )
        return httpx2.Response(404, json={"error": "not found"})


@pytest.fixture
def fake_hub(monkeypatch):
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub()

    def factory():
        return httpx2.Client(
            transport=httpx2.MockTransport(hub), event_hooks={"request": [_http.hf_request_event_hook]}
        )

    _http.set_client_factory(factory)
    yield hub
    _http.set_client_factory(_http.default_client_factory)


def test_upload_is_one_commit_of_exactly_the_dry_run_files(draft, tmp_path, fake_hub):
    dry = run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", dry_run=str(tmp_path / "dry")))
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", private=True))

    assert len(fake_hub.commits) == 1
    commit = fake_hub.commits[0]
    assert commit["url"].endswith("/api/models/me/tiny-draft/commit/main")
    assert commit["summary"] == "draftforge: upload draft tiny-pub (α=0.640, speedup=1.46x, γ=4)"
    assert commit["summary"] == result.commit_message
    assert sorted(commit["files"]) == list(dry.files) == list(result.files)
    for name, content in commit["files"].items():
        assert content == (tmp_path / "dry" / name).read_bytes(), name
    # the repository is created before the commit; the token is sent, as a header only
    posts = [u for m, u, _ in fake_hub.requests if m == "POST"]
    assert posts[0].endswith("/api/validate-yaml") and posts[1].endswith("/api/repos/create")
    assert posts[-1].endswith("/commit/main")
    assert all(
        auth == f"Bearer {SENTINEL_TOKEN}"
        for m, u, auth in fake_hub.requests
        if m == "POST" and not u.endswith("/api/validate-yaml")
    )
    assert fake_hub.validated and fake_hub.validated[0] == (tmp_path / "dry" / "README.md").read_text()
    assert result.url == "https://huggingface.co/me/tiny-draft"
    assert result.commit_url == "https://huggingface.co/me/tiny-draft/commit/abc123"


def test_upload_to_a_branch_creates_it_first(draft, fake_hub):
    run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft", revision="v1"))
    posts = [u for m, u, _ in fake_hub.requests if m == "POST"]
    assert any(u.endswith("/api/models/me/tiny-draft/branch/v1") for u in posts)
    assert fake_hub.commits[0]["url"].endswith("/commit/v1")


def test_commit_failure_after_create_repo_is_said_clearly(draft, fake_hub):
    fake_hub.fail = {"/commit/": (500, f"internal error for token {SENTINEL_TOKEN}")}
    with pytest.raises(DraftforgeError) as info:
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    text = str(info.value)
    assert "exists but nothing was committed" in text
    assert SENTINEL_TOKEN not in text


def test_a_card_the_hub_refuses_leaves_no_repository(draft, fake_hub):
    fake_hub.fail = {"/api/validate-yaml": (400, "license: must be a known licence")}
    with pytest.raises(DraftforgeError, match="rejected the model card's metadata.*nothing was uploaded"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    assert not any(u.endswith("/api/repos/create") for _, u, _ in fake_hub.requests)
    assert not fake_hub.commits


def test_permission_error_names_the_token_problem_without_the_token(draft, fake_hub):
    fake_hub.fail = {"/api/repos/create": (403, "You don't have the rights")}
    with pytest.raises(DraftforgeError, match="write access") as info:
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    assert "nothing was uploaded" in str(info.value) and SENTINEL_TOKEN not in str(info.value)
    assert not fake_hub.commits


def test_no_token_is_a_clear_error_before_any_request(draft, fake_hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(DraftforgeError, match="no Hugging Face token found"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    assert not fake_hub.requests


def test_unreachable_hub_is_a_clear_error(draft, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    # offline mode (what tests run under) and a closed port both mean: the Hub could not be reached
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DraftforgeError, match="could not be reached.*nothing was uploaded"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(DraftforgeError, match="could not be reached.*nothing was uploaded") as info:
        run(PublishConfig(draft_dir=str(draft), repo_id="me/tiny-draft"))
    assert SENTINEL_TOKEN not in str(info.value)


# ---- the command line ---------------------------------------------------------------------------
def test_cli_json_dry_run(draft, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from draftforge.cli import app

    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["publish", str(draft), "--repo-id", "me/x", "--dry-run", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["dry_run_dir"] == str(out) and "README.md" in data["files"]
    assert SENTINEL_TOKEN not in res.output


def test_cli_upload_output_never_shows_the_token(draft, fake_hub):
    from typer.testing import CliRunner

    from draftforge.cli import app

    res = CliRunner().invoke(app, ["publish", str(draft), "--repo-id", "me/tiny-draft", "--private"])
    assert res.exit_code == 0, res.output
    assert "uploaded" in res.output and "commit/abc123" in res.output
    assert SENTINEL_TOKEN not in res.output


def test_cli_offline_error_exits_2_without_the_token(draft):
    env = {"HF_TOKEN": SENTINEL_TOKEN, "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "draftforge", "publish", str(draft), "--repo-id", "me/x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: the Hugging Face Hub could not be reached")
    assert "Traceback" not in proc.stderr
    assert SENTINEL_TOKEN not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_publish_dry_run_of_a_real_distilled_draft(tmp_path):
    """Contract 4 end to end: `draftforge distill` (tiny-smoke recipe) writes a folder publish accepts."""
    from huggingface_hub import ModelCard

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny-smoke.yaml"
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "draftforge", "distill", str(recipe), "--set", f"output.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    draft = run_dir / "draft"
    with pytest.raises(DraftforgeError, match="no eval report"):
        run(PublishConfig(draft_dir=str(draft), repo_id="me/smoke", dry_run=str(tmp_path / "refused")))
    out = tmp_path / "out"
    result = run(PublishConfig(draft_dir=str(draft), repo_id="me/smoke", dry_run=str(out), force=True))
    assert {"README.md", "config.json", "model.safetensors", "draftforge.json"} <= set(result.files)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == list(result.files)
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "draftforge" in card.data.tags
    assert "tiny-smoke" in card.text and "not from a search" in card.text


def test_a_failed_dry_run_leaves_no_folder(tmp_path):
    from draftforge.publish import write_folder

    plan = {"README.md": b"card", "model.safetensors": tmp_path / "vanished.safetensors"}
    with pytest.raises(DraftforgeError, match="could not write the dry-run folder"):
        write_folder(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()
