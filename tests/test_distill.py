"""The distillation recipe end to end on CPU: tiny-smoke, export, resume, NaN stop, user errors, ZeRO-2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from draftforge.distill import train as train_mod
from draftforge.distill.data import load_records
from draftforge.distill.export import read_manifest
from draftforge.distill.recipe import load_recipe
from draftforge.errors import DraftforgeError

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "recipes" / "tiny-smoke.yaml"


def _recipe(out: Path, *sets: str):
    return load_recipe(SMOKE, [f"output.dir={out}", *sets])


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    result = train_mod.run(_recipe(out, "output.log_every=1"), progress=False)
    return out, result


def test_tiny_smoke_trains_and_raises_acceptance(smoke_run):
    out, result = smoke_run
    assert result.steps == 30 and result.tokens == 30 * 4 * 64
    assert result.final_metrics["eval/greedy_agree"] > result.initial_metrics["eval/greedy_agree"] + 0.1
    assert result.final_metrics["eval/alpha"] > result.initial_metrics["eval/alpha"] + 0.1
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 31))
    assert losses[30] < losses[1] / 2


def test_draft_folder_contract(smoke_run):
    out, result = smoke_run
    m = read_manifest(result.draft_dir)
    for key in (
        "schema",
        "created",
        "versions",
        "shape",
        "params",
        "target",
        "init",
        "recipe",
        "recipe_sha256",
        "data",
        "loss",
        "steps",
        "tokens",
        "initial_metrics",
        "final_metrics",
        "search",
        "device",
    ):
        assert key in m, key
    assert m["schema"] == "draftforge.draft/1" and m["steps"] == 30 and m["search"] is None
    assert set(m["target"]) >= {"spec", "name", "hub_id", "tokenizer", "license"}
    assert set(m["final_metrics"]) == {"train/loss", "eval/alpha", "eval/greedy_agree"}
    assert set(m["initial_metrics"]) == {"eval/alpha", "eval/greedy_agree"}
    assert m["init"]["method"] == "layers" and m["init"]["layers"] == [1]
    assert m["data"]["train_tokens"] > 0 and m["params"] == 78016
    assert (result.draft_dir / "model.safetensors").is_file()
    assert (result.draft_dir / "generation_config.json").is_file()
    assert (out / "recipe.yaml").is_file()
    # the saved resolved recipe reproduces the hash
    assert load_recipe(out / "recipe.yaml").sha256() == m["recipe_sha256"]


def test_draft_loads_and_works_as_assistant_model(smoke_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = smoke_run
    draft = AutoModelForCausalLM.from_pretrained(result.draft_dir).eval()
    teacher = AutoModelForCausalLM.from_pretrained(out / "teacher").eval()
    tok = AutoTokenizer.from_pretrained(result.draft_dir)
    assert tok.chat_template
    ids = tok("The assert statement", return_tensors="pt")
    plain = teacher.generate(**ids, max_new_tokens=12, do_sample=False)
    assisted = teacher.generate(**ids, max_new_tokens=12, do_sample=False, assistant_model=draft)
    assert torch.equal(plain, assisted)


def test_output_folder_is_never_overwritten(smoke_run, tmp_path):
    out, _ = smoke_run
    with pytest.raises(DraftforgeError, match="not empty"):
        train_mod.run(_recipe(out), progress=False)


def test_resume_continues_exactly(tmp_path):
    sets = ("optim.max_steps=8", "output.save_every=2", "output.log_every=1", "eval.every_steps=100")
    whole = tmp_path / "whole"
    train_mod.run(_recipe(whole, *sets), progress=False)
    split = tmp_path / "split"
    first = train_mod.run(_recipe(split, *sets), progress=False, stop_after=4)  # an interrupted run
    assert first.steps == 4 and not (split / "draft").exists()
    second = train_mod.run(_recipe(split, *sets), resume=True, progress=False)
    assert second.steps == 8
    a, b = _losses(whole), _losses(split)
    assert sorted(b) == list(range(1, 9))  # one log line per step, also after resume
    for step in range(1, 9):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-7), step
    wa = read_manifest(whole / "draft")["final_metrics"]
    wb = read_manifest(split / "draft")["final_metrics"]
    assert wb["eval/alpha"] == pytest.approx(wa["eval/alpha"], rel=1e-5)


def test_nan_loss_stops_with_clear_message_and_intact_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "nan"
    real = train_mod.loss_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 5 else loss), parts

    monkeypatch.setattr(train_mod, "loss_step", poisoned)
    with pytest.raises(DraftforgeError, match=r"loss became nan at step 5.*step0000004"):
        train_mod.run(_recipe(out, "output.save_every=2"), progress=False)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step0000004"
    monkeypatch.setattr(train_mod, "loss_step", real)
    resumed = train_mod.run(_recipe(out, "output.save_every=2"), resume=True, progress=False)
    assert resumed.steps == 30


def test_missing_data_file_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "missing"
    with pytest.raises(DraftforgeError, match="data file not found"):
        train_mod.run(_recipe(out, "data.source=no/such/file.jsonl", "data.format=auto"), progress=False)
    assert not out.exists()


def test_resume_with_another_recipe_is_refused(smoke_run):
    out, _ = smoke_run
    with pytest.raises(DraftforgeError, match="differs from the one.*sections: loss"):
        train_mod.run(_recipe(out, "loss.terms={tv: 1.0}"), resume=True, progress=False)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(DraftforgeError, match="no checkpoint"):
        train_mod.run(_recipe(tmp_path / "fresh"), resume=True, progress=False)


def test_teacher_vocab_mismatch_is_a_clear_error():
    from draftforge.distill.data import byte_tokenizer
    from draftforge.distill.init import random_student

    recipe = load_recipe(SMOKE)
    teacher = random_student(recipe.target.shape.replace(vocab_size=512))
    with pytest.raises(DraftforgeError, match="differs from the teacher's 512"):
        train_mod.check_vocab(recipe.draft_shape(), teacher, byte_tokenizer())


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    recipe = load_recipe(REPO / "recipes" / "llama.yaml")
    with pytest.raises(DraftforgeError, match="could not load Hub dataset 'tatsu-lab/alpaca'"):
        load_records(recipe.data, recipe.base_dir)


def test_chat_data_masks_assistant_tokens_and_regenerates(tmp_path):
    from draftforge.distill.data import byte_tokenizer, encode_chat, prepare_data

    tok = byte_tokenizer()
    ids, mask = encode_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "yo<|im_end|>\n"
    records = [{"messages": [{"role": "user", "content": f"question {i}?"}]} for i in range(12)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = load_recipe(
        SMOKE,
        [
            "data.source=chat.jsonl",
            "data.kind=chat",
            "data.format=json",
            "data.eval_records=2",
            "data.seq_len=16",
            "data.max_records=null",
            "data.regenerate={enabled: true, max_records: 12, max_new_tokens: 8}",
        ],
    )
    recipe = recipe.model_copy(update={"base_dir": str(tmp_path)})
    teacher, tokenizer = train_mod.load_teacher(recipe, "cpu", 1)
    data = prepare_data(recipe.data, recipe.base_dir, tokenizer, teacher=teacher, teacher_id="t")
    assert data.info["regenerated"] == 12
    # the loss counts only the teacher's generated tokens: 8 of every prompt + 8 tokens
    assert 0 < data.train_mask.float().mean() < 0.5
    no_answers = recipe.model_copy(
        update={
            "data": recipe.data.model_copy(
                update={"regenerate": recipe.data.regenerate.model_copy(update={"enabled": False})}
            )
        }
    )
    with pytest.raises(DraftforgeError, match="assistant turn"):
        prepare_data(no_answers.data, recipe.base_dir, tokenizer)


def test_teacher_topk_cache_and_mixed_losses_train(tmp_path):
    out = tmp_path / "topk"
    result = train_mod.run(
        _recipe(
            out,
            "data.teacher_topk=16",
            "loss.terms={forward_kl: 0.4, tv: 0.3, jsd: 0.2, ce: 0.1}",
            "optim.max_steps=6",
            "optim.grad_accum=2",
            "data.on_policy.fraction=0.3",
            "data.on_policy.prompt_tokens=16",
            "data.on_policy.max_new_tokens=8",
        ),
        progress=False,
    )
    assert (out / "teacher_top16.pt").is_file()
    assert result.final_metrics["eval/alpha"] > result.initial_metrics["eval/alpha"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train/forward_kl", "train/tv", "train/jsd", "train/ce"} <= set().union(*rows)
    assert sum(r.get("train/on_policy", 0) for r in rows) >= 1  # some steps trained on student samples


def test_cli_dry_run_and_errors(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "draftforge", "distill", str(SMOKE), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["draft_params"] == 78016
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "draftforge",
            "distill",
            str(SMOKE),
            "--set",
            "optim.lr=-1",
            "--set",
            "deepspeed.zero_stage=9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "optim.lr" in r.stderr and "deepspeed.zero_stage" in r.stderr and "Traceback" not in r.stderr


def _child_env() -> dict[str, str]:
    """This environment without launcher variables, one OpenMP thread per child process."""
    launcher = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    return {**{k: v for k, v in os.environ.items() if k not in launcher}, "OMP_NUM_THREADS": "1"}


def _torchrun_two_ranks(sets) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m draftforge.distill.train` on the smoke recipe."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "draftforge.distill.train",
            str(SMOKE),
            "--no-progress",
            *(a for s in sets for a in ("--set", s)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_child_env(),
    )


@pytest.mark.slow
def test_two_process_zero2_matches_single_process_curve(tmp_path):
    """Two gloo ranks with ZeRO-2 and micro-batch 2 see exactly the batches of one rank with micro-batch 4."""
    common = ("optim.max_steps=10", "output.log_every=1", "eval.every_steps=100", "deepspeed.threads=1")
    single = tmp_path / "single"
    train_mod.run(_recipe(single, *common, "optim.micro_batch_size=4"), progress=False)
    two = tmp_path / "two"
    r = _torchrun_two_ranks(
        (*common, "optim.micro_batch_size=2", "deepspeed.zero_stage=2", f"output.dir={two}")
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(single), _losses(two)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=2e-2), (step, a[step], b[step])
    assert read_manifest(two / "draft")["steps"] == 10


@pytest.mark.slow
def test_two_process_zero3_with_partitioned_teacher(tmp_path):
    """ZeRO-3 student and a ZeRO-3-partitioned teacher on two gloo ranks: trains, gathers, exports."""
    from safetensors.torch import load_file

    out = tmp_path / "z3"
    sets = (
        "optim.max_steps=4",
        "optim.micro_batch_size=2",
        "deepspeed.zero_stage=3",
        "deepspeed.teacher_zero3=true",
        "eval.every_steps=2",
        "eval.max_batches=3",
        "output.save_every=2",
        "deepspeed.threads=1",
        f"output.dir={out}",
    )
    r = _torchrun_two_ranks(sets)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["final_metrics"]["eval/alpha"] > summary["initial_metrics"]["eval/alpha"]
    for folder, n in ((out / "draft", 1), (out / "teacher", 2)):  # full tensors, not ZeRO-3 partitions
        sd = load_file(folder / "model.safetensors")
        assert sd["model.embed_tokens.weight"].shape == (320, 64)
        assert f"model.layers.{n - 1}.mlp.up_proj.weight" in sd


@pytest.mark.slow
def test_smollm2_layer_init_distills_and_exports(smollm2_path, tmp_path):
    """The real SmolLM2-135M-Instruct teacher: layer-subset student, a few steps, a working assistant."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = load_recipe(
        REPO / "recipes" / "smollm2-cpu.yaml",
        [
            f"output.dir={tmp_path / 'sm'}",
            f"target={smollm2_path}",
            "optim.max_steps=4",
            "optim.warmup_steps=0",
            "output.log_every=1",
            "data.max_records=24",
            "data.eval_records=4",
            "data.seq_len=32",
            "data.teacher_topk=null",
            "eval.max_batches=1",
            "eval.every_steps=4",
            "output.save_every=4",
        ],
    )
    result = train_mod.run(recipe, progress=False)
    losses = _losses(tmp_path / "sm")
    assert losses[4] < losses[1]  # learning (the acceptance gain is measured by scripts/bench_distill.py)
    assert 0 < result.final_metrics["eval/alpha"] < 1
    m = read_manifest(result.draft_dir)
    assert m["init"]["layers"] == [0, 1] and m["shape"]["num_layers"] == 2
    draft = AutoModelForCausalLM.from_pretrained(result.draft_dir).eval()
    teacher = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    tok = AutoTokenizer.from_pretrained(result.draft_dir)
    assert (
        tok.chat_template and tok.chat_template == AutoTokenizer.from_pretrained(smollm2_path).chat_template
    )
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is a list?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    plain = teacher.generate(**ids, max_new_tokens=8, do_sample=False)
    assisted = teacher.generate(**ids, max_new_tokens=8, do_sample=False, assistant_model=draft)
    assert torch.equal(plain, assisted)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path):
    try:
        import tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    with pytest.raises(DraftforgeError, match="pip install tensorboard"):
        train_mod.run(_recipe(tmp_path / "tb", "output.tensorboard=true"), progress=False)
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_exactly(tmp_path):
    """SIGKILL a training process after a checkpoint; --resume continues as if nothing had happened."""
    import signal
    import time

    sets = ("optim.max_steps=60", "output.save_every=3", "output.log_every=1", "eval.every_steps=1000")
    killed = tmp_path / "killed"
    env = _child_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "draftforge.distill.train",
            str(SMOKE),
            "--no-progress",
            *(a for s in (*sets, f"output.dir={killed}") for a in ("--set", s)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if latest.is_file() and latest.read_text().strip() >= "step0000006":
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    tag = latest.read_text().strip()
    assert "step0000006" <= tag < "step0000060", tag  # killed part-way, after at least two checkpoints
    resumed = train_mod.run(_recipe(killed, *sets), resume=True, progress=False)
    whole = tmp_path / "whole"
    train_mod.run(_recipe(whole, *sets), progress=False)
    a, b = _losses(whole), _losses(killed)
    assert resumed.steps == 60 and sorted(b) == list(range(1, 61))
    for step in range(1, 61):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-7), step


def test_bf16_autocast_run_exports_bf16_weights(tmp_path):
    from safetensors.torch import load_file

    result = train_mod.run(
        _recipe(tmp_path / "bf16", "deepspeed.precision=bf16", "optim.max_steps=4"), progress=False
    )
    assert result.final_metrics["eval/alpha"] > result.initial_metrics["eval/alpha"]
    sd = load_file(result.draft_dir / "model.safetensors")
    assert {v.dtype for v in sd.values()} == {torch.bfloat16}


def test_recipe_publish_section_hands_the_draft_to_publish(tmp_path):
    dry = tmp_path / "hub-repo"
    train_mod.run(
        _recipe(
            tmp_path / "pub",
            "optim.max_steps=2",
            f"publish={{repo_id: me/tiny-draft, dry_run: {dry}, force: true}}",
        ),
        progress=False,
    )
    assert (dry / "README.md").is_file() and (dry / "model.safetensors").is_file()
    assert (dry / "draftforge.json").is_file()


def test_smollm2_chat_template_masks_only_the_assistant_turn(smollm2_path):
    from transformers import AutoTokenizer

    from draftforge.distill.data import encode_chat

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    messages = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    ids, mask = encode_chat(messages, tok)
    assert (
        tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "Hello! How can I help?<|im_end|>\n"
    )
    assert tok.decode(ids).startswith("<|im_start|>system")


def test_local_parquet_and_jsonl_sources_together(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": f"parquet record {i} " * 20} for i in range(5)]).to_parquet(
        str(tmp_path / "a.parquet")
    )
    (tmp_path / "b.jsonl").write_text(
        "".join(json.dumps({"text": f"json record {i} " * 20}) + "\n" for i in range(4))
    )
    recipe = load_recipe(
        SMOKE, ["data.source=[a.parquet, b.jsonl]", "data.format=auto", "data.max_records=null"]
    )
    records = load_records(recipe.data, tmp_path)
    assert len(records) == 9 and {r["text"].split()[0] for r in records} == {"parquet", "json"}
