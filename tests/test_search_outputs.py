"""search's files (search.json, config.json, recipe.yaml, plots), its CLI, and measured profiles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("optuna")

from draftforge import search  # noqa: E402
from draftforge.errors import DraftforgeError  # noqa: E402
from draftforge.latency import model as latency_model  # noqa: E402
from draftforge.search import SearchConfig  # noqa: E402
from draftforge.shapes import ModelShape  # noqa: E402

CANDIDATE_KEYS = {
    "rank",
    "shape",
    "params",
    "draft_latency_s",
    "alpha",
    "alpha_low",
    "alpha_high",
    "gamma",
    "tau",
    "latency_per_token_s",
    "speedup",
    "tokens_per_s",
}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "draftforge", "search", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    result = search.run(SearchConfig(gpu="a100", target="llama-65b", trials=60, top_k=3, batch_sizes=(1, 8)))
    from draftforge.search_report import write_outputs

    out = tmp_path_factory.mktemp("search") / "out"
    return result, out, write_outputs(result, out)


def test_search_json_follows_contract_5(written):
    result, out, paths = written
    doc = json.loads((out / "search.json").read_text())
    assert doc["schema"] == "draftforge.search/1" and doc["created"] and doc["versions"]["optuna"]
    assert {"inputs", "latency_model", "acceptance_model", "candidates", "baselines"} <= set(doc)
    assert doc["acceptance_model"]["source"] == "prior"
    assert doc["latency_model"]["draft"]["kind"] in ("spec-sheet", "measured")
    assert doc["inputs"]["target"] == "llama-65b" and doc["inputs"]["batch_sizes"] == [1, 8]
    assert [c["rank"] for c in doc["candidates"]] == [1, 2, 3]
    for c in doc["candidates"] + doc["baselines"]:
        assert set(c) >= CANDIDATE_KEYS
        assert ModelShape.from_dict(c["shape"]).param_count() == c["params"]
    assert all("name" in b for b in doc["baselines"])
    assert [b["batch_size"] for b in doc["by_batch_size"]] == [1, 8]
    assert doc["candidates"] == doc["by_batch_size"][0]["candidates"]


def test_config_json_per_candidate_is_the_shape(written):
    transformers = pytest.importorskip("transformers")
    result, out, paths = written
    assert len(paths["configs"]) == 6  # 3 candidates x 2 batch sizes
    for batch in result.batches:
        for cand in batch.candidates:
            folder = out / "candidates" / f"b{batch.batch_size}-rank{cand.rank}"
            config = transformers.AutoConfig.from_pretrained(folder)
            assert ModelShape.from_hf_config(config) == cand.shape


def test_recipe_loads_through_the_distill_loader(written):
    from draftforge.distill.recipe import load_recipe

    result, out, paths = written
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.draft_shape() == result.batches[0].candidates[0].shape  # via search.json rank 1
    assert recipe.target == "llama-65b"
    second = load_recipe(out / "recipe-b8.yaml")
    assert second.draft_shape() == result.batches[1].candidates[0].shape


def test_plots_are_pngs(written):
    result, out, paths = written
    assert len(paths["plots"]) == 4
    for name in ("latency_vs_layers-b1.png", "pareto-b1.png", "latency_vs_layers-b8.png", "pareto-b8.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_never_overwrites_a_non_empty_folder(written):
    from draftforge.search_report import write_outputs

    result, out, paths = written
    with pytest.raises(DraftforgeError, match="not empty"):
        write_outputs(result, out)


# ---- measured profiles ----------------------------------------------------------------------------
def write_profile(path, device: str, dtype: str = "fp32", runtime: str = "eager"):
    """A tiny synthetic `draftforge.profile/1`: a fixed cost per forward and per layer plus bytes/bandwidth."""
    shape = ModelShape(2, 64, 4, 4, 128, 256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "schema": "draftforge.profile/1",
                "created": "2026-01-01T00:00:00+00:00",
                "versions": {},
                "device": {"name": device},
                "dtype": dtype,
                "runtime": runtime,
                "measurements": [
                    {
                        "shape": shape.to_dict(),
                        "batch_size": 1,
                        "context": 0,
                        "tokens": 1,
                        "median_s": 1e-3,
                        "p10_s": 1e-3,
                        "p90_s": 1e-3,
                        "repeats": 3,
                    }
                ],
                "model": {
                    "coefficients": {
                        "forward": 2e-3,
                        "layers": 4e-4,
                        "weight_bytes": 1 / 20e9,
                        "lm_head_bytes": 1 / 20e9,
                        "matmul_flops": 1 / 200e9,
                    }
                },
                "error_report": {"mape": 0.05, "n": 10},
            }
        ),
        encoding="utf-8",
    )
    return path


def test_local_cpu_uses_its_cached_profile_and_profiles_first_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAFTFORGE_CACHE", str(tmp_path / "cache"))
    from draftforge.latency import profiler

    calls = []

    def fake_run(config):
        calls.append(config)
        return write_profile(latency_model.default_profile_path("cpu", "fp32", "eager"), "cpu")

    monkeypatch.setattr(profiler, "run", fake_run)
    config = SearchConfig(gpu="cpu", target="smollm2-135m", trials=30, max_params=60_000_000)
    result = search.run(config)  # no cached profile: measured first
    assert len(calls) == 1 and calls[0].device == "cpu" and calls[0].dtype == "fp32"
    assert any("profiled cpu first" in n for n in result.notes)
    assert result.latency_model["draft"]["kind"] == "measured"
    # the target runs on the same CPU without tensor parallelism: same measured model
    assert result.latency_model["target_by_batch_size"]["1"]["label"] == "measured cpu fp32 eager"
    assert result.batches[0].candidates[0].shape.vocab_size == 49152

    search.run(config)  # cached now: no new measurement
    assert len(calls) == 1
    search.run(SearchConfig(**{**config.__dict__, "reprofile": True}))
    assert len(calls) == 2 and calls[1].overwrite


def test_profile_file_of_another_gpu_is_rescaled_and_said_so(tmp_path):
    path = write_profile(tmp_path / "h100.json", "h100-sxm", dtype="bf16")
    s = search.setup(SearchConfig(gpu="a100", target="llama-65b", profile=str(path)))
    assert "rescaled to a100-80gb" in s.models["draft"].label
    assert any("measured profile" in n for n in s.notes)
    # the 65B target with tensor parallelism stays on the spec sheet, and says so
    assert s.problems[0].target_latency.label.startswith("spec-sheet a100-80gb bf16 eager tp2")


def test_cpu_profile_cannot_stand_in_for_a_gpu(tmp_path):
    path = write_profile(tmp_path / "cpu.json", "cpu")
    with pytest.raises(DraftforgeError, match="cannot be rescaled"):
        search.setup(SearchConfig(gpu="a100", target="llama-65b", profile=str(path), dtype="fp32"))


# ---- the command line -----------------------------------------------------------------------------
def test_cli_json_and_table(tmp_path):
    r = run_cli("--gpu", "a100", "--target", "llama-65b", "--json", "--trials", "60")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "draftforge.search/1" and set(doc["candidates"][0]) >= CANDIDATE_KEYS
    r = run_cli("--gpu", "a100", "--target", "llama-65b", "--trials", "60", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "why:" in r.stdout and "llama-7b" in r.stdout and "tensor parallelism 2" in r.stdout
    assert (tmp_path / "o" / "search.json").is_file() and (tmp_path / "o" / "recipe.yaml").is_file()


def test_cli_user_errors_exit_2_with_one_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"alpha": 2}\n')
    cases = [
        (["--gpu", "a1000", "--target", "llama-65b"], "unknown GPU"),
        (["--gpu", "a100", "--target", "llama-99b"], "unknown target"),
        (["--gpu", "a100", "--target", "llama-65b", "--max-params", "1e3"], "no draft shape"),
        (
            [
                "--gpu",
                "a100",
                "--target",
                "llama-65b",
                "--storage",
                "nosuchdialect://h/db",
                "--study-name",
                "s",
            ],
            "cannot open",
        ),
        (["--gpu", "a100", "--target", "llama-65b", "--calibration", str(bad)], "bad calibration rows"),
        (["--gpu", "a100", "--target", "llama-65b", "--out", str(tmp_path / "full")], "not empty"),
    ]
    for args, message in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_local_gpu_outside_the_catalog_uses_its_cached_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAFTFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(latency_model, "local_device_name", lambda: "nvidia-future-gpu")
    write_profile(
        latency_model.default_profile_path("nvidia-future-gpu", "bf16", "eager"),
        "nvidia-future-gpu",
        dtype="bf16",
    )
    result = search.run(SearchConfig(gpu="local", target="llama-7b", trials=30))
    assert result.inputs["draft_gpu"] == "nvidia-future-gpu" and result.batches[0].tp == 1
    assert (
        result.latency_model["target_by_batch_size"]["1"]["label"] == "measured nvidia-future-gpu bf16 eager"
    )
    assert any("has no memory figure" in n for n in result.notes)
