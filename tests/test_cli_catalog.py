from __future__ import annotations

import json
import subprocess
import sys

import pytest

from draftforge.catalog import get_hardware, get_target


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "draftforge", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("hardware", "targets", "predict"):
        assert cmd in r.stdout


def test_targets_show_json():
    r = run_cli("targets", "show", "llama-65b", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["shape"]["num_layers"] == 80 and d["shape"]["hidden_size"] == 8192
    assert d["shape"]["intermediate_size"] == 22016 and d["shape"]["num_heads"] == 64
    assert d["shape"]["vocab_size"] == 32000
    assert d["params"] == pytest.approx(65.2e9, rel=0.01)


def test_predict_json_breakdown_and_floor():
    r = run_cli("predict", "--gpu", "a100", "--target", "llama-65b", "--tp", "4", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert sum(d["terms"].values()) == pytest.approx(d["total_s"])
    floor = get_target("llama-65b").shape.weight_bytes("bf16") / (4 * get_hardware("a100").memory_bandwidth)
    assert d["total_s"] > floor


def test_predict_explicit_shape():
    r = run_cli(
        "predict",
        "--gpu",
        "h100",
        "--shape",
        "layers=5,hidden=4096,heads=32,intermediate=11008,vocab=32000",
        "--runtime",
        "cuda-graph",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["shape"]["num_kv_heads"] == 32


def test_hardware_list_and_targets_list_json():
    hw = json.loads(run_cli("hardware", "list", "--json").stdout)
    assert {"a100-80gb", "h200", "mi300x", "cpu"} <= {h["name"] for h in hw}
    tg = json.loads(run_cli("targets", "list", "--json").stdout)
    assert len(tg) >= 21


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("hardware", "show", "nonexistent"), "unknown GPU 'nonexistent'"),
        (("targets", "show", "llama-66b"), "unknown target"),
        (("predict", "--gpu", "a100"), "give exactly one of --target or --shape"),
        (
            ("predict", "--gpu", "a100", "--shape", "layers=5,hidden=100,heads=3,intermediate=10,vocab=10"),
            "must divide hidden_size",
        ),
        (("predict", "--gpu", "cpu", "--target", "llama-7b"), "has no spec sheet"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, fragment):
    r = run_cli(*args)
    assert r.returncode == 2
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
