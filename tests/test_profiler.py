"""The profiler: config validation, grid and order, timing helpers, workloads, and a tiny real run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from draftforge.cli import app
from draftforge.errors import DraftforgeError
from draftforge.latency.model import load_latency_model, read_profile
from draftforge.latency.profiler import (
    ProfileConfig,
    combine_passes,
    coverage_order,
    run,
    shape_grid,
)
from draftforge.latency.workloads import (
    build_model,
    eager_workload,
    static_workload,
    time_repeats,
    trimmed_stats,
)
from draftforge.shapes import ModelShape

TINY = ModelShape(
    num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=64
)


def _tiny_config(tmp_path, **changes) -> ProfileConfig:
    base = dict(
        device="cpu",
        budget_minutes=1.0,
        out=str(tmp_path / "p.json"),
        layers=(1, 2, 3),
        hidden=(32, 64),
        head_dim=16,
        ffn_ratios=(2.0,),
        kv_groups=(1,),
        vocab_size=64,
        contexts=(4, 16),
        tokens=(1, 3),
        warmup=1,
        min_repeats=2,
        max_repeats=3,
        seconds_per_workload=0.0,
        folds=3,
        progress=False,
    )
    base.update(changes)
    return ProfileConfig(**base)


# ---- config and grid -----------------------------------------------------------------------------
def test_config_reports_every_problem_at_once():
    with pytest.raises(DraftforgeError) as exc:
        ProfileConfig(device="tpu", dtype="fp7", budget_minutes=0, layers=(0,))
    msg = str(exc.value)
    for part in ("device must be", "dtype must be", "budget_minutes", "layers"):
        assert part in msg


def test_cuda_graph_needs_cuda_and_thread_clock_needs_one_thread():
    with pytest.raises(DraftforgeError, match="cuda-graph needs --device cuda"):
        ProfileConfig(device="cpu", runtime="cuda-graph")
    with pytest.raises(DraftforgeError, match="clock 'thread'"):
        ProfileConfig(device="cpu", threads=2, clock="thread")


def test_resolved_defaults_per_device():
    cpu = ProfileConfig().resolved()
    assert (cpu.dtype, cpu.threads, cpu.clock) == ("fp32", 1, "thread")
    assert cpu.layers and cpu.hidden and cpu.contexts and cpu.max_params
    assert ProfileConfig(threads=2).resolved().clock == "wall"
    gpu = ProfileConfig(device="cuda", runtime="cuda-graph").resolved()
    assert gpu.dtype == "bf16" and gpu.threads is None and gpu.clock == "wall"
    assert ProfileConfig(dtype="float32").resolved().dtype == "fp32"


def test_shape_grid_filters_and_fails_clearly(tmp_path):
    cfg = _tiny_config(tmp_path, hidden=(32, 40, 64), kv_groups=(1, 4)).resolved()
    shapes = shape_grid(cfg)
    assert {s.hidden_size for s in shapes} == {32, 64}  # 40 is not a multiple of head_dim 16
    assert all(s.num_heads % s.num_kv_heads == 0 for s in shapes)
    assert any(s.num_kv_heads == 1 for s in shapes if s.hidden_size == 64)  # 4 heads / 4 groups
    assert all(s.intermediate_size % 64 == 0 for s in shapes)
    capped = shape_grid(_tiny_config(tmp_path, max_params=20_000).resolved())
    assert capped and all(s.param_count() <= 20_000 for s in capped)
    with pytest.raises(DraftforgeError, match="no shape of the profile grid is feasible"):
        shape_grid(_tiny_config(tmp_path, max_params=10).resolved())
    with pytest.raises(DraftforgeError, match="no shape"):
        shape_grid(_tiny_config(tmp_path, hidden=(40,)).resolved())


def test_coverage_order_spreads_any_prefix():
    cfg = ProfileConfig(ffn_ratios=(2.75,), kv_groups=(1,), max_params=None).resolved()
    shapes = shape_grid(cfg)
    order = coverage_order(shapes)
    assert sorted(order, key=repr) == sorted(shapes, key=repr)
    assert order[0] == min(shapes, key=lambda s: s.param_count())
    head = order[:4]  # the first few already reach both ends of depth and width
    assert max(s.num_layers for s in head) == max(cfg.layers)
    assert max(s.hidden_size for s in head) == max(cfg.hidden)
    assert min(s.hidden_size for s in head) == min(cfg.hidden)
    # first 10 shapes span several distinct depths and widths, not one row of the grid
    assert len({s.num_layers for s in order[:10]}) >= 4 and len({s.hidden_size for s in order[:10]}) >= 4


# ---- timing helpers ------------------------------------------------------------------------------
def test_trimmed_stats_by_hand():
    s = trimmed_stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median_s"] == 3.0
    assert s["p10_s"] == pytest.approx(1.4)
    assert s["p90_s"] == pytest.approx(4.6)
    assert trimmed_stats([2.0]) == {"median_s": 2.0, "p10_s": 2.0, "p90_s": 2.0}


def test_combine_passes_keeps_the_quietest_pass():
    from draftforge.latency.model import Measurement

    a = [Measurement(TINY, 1, 8, 1, 2.0, 1.9, 2.5, 5), Measurement(TINY, 1, 8, 5, 3.0, 2.8, 3.1, 5)]
    b = [Measurement(TINY, 1, 8, 1, 1.5, 1.4, 1.6, 6), Measurement(TINY, 1, 8, 5, 3.3, 3.2, 4.0, 6)]
    assert combine_passes([a]) == a
    one, five = combine_passes([a, b])
    assert (one.median_s, one.p10_s, one.p90_s, one.repeats, one.pass_medians_s) == (
        1.5,
        1.4,
        2.5,
        11,
        (2.0, 1.5),
    )
    assert (five.median_s, five.p10_s, five.p90_s, five.pass_medians_s) == (3.0, 2.8, 4.0, (3.0, 3.3))
    assert Measurement.from_dict(five.to_dict()) == five


def test_time_repeats_warms_up_resets_and_stops():
    calls = {"forward": 0, "reset": 0}

    def forward():
        calls["forward"] += 1

    def reset():
        calls["reset"] += 1

    samples = time_repeats(
        forward, reset, lambda fn: (fn(), 0.1)[1], warmup=2, min_repeats=3, max_repeats=10, seconds=0.45
    )
    assert len(samples) == 5  # 3 required, then until 0.45 s are spent (5 x 0.1)
    assert calls == {"forward": 7, "reset": 7}  # warm-up included, reset before every call
    assert len(time_repeats(forward, reset, lambda fn: 1.0, 0, 2, 4, 100.0)) == 4  # capped at max_repeats


# ---- models and workloads ------------------------------------------------------------------------
def test_build_model_matches_shape_and_is_finite():
    model = build_model(TINY, torch.float32, "cpu")
    assert sum(p.numel() for p in model.parameters()) == TINY.param_count()
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            assert torch.isfinite(t).all()


def test_eager_workload_keeps_the_context_fixed():
    model = build_model(TINY, torch.float32, "cpu")
    forward, reset = eager_workload(model, batch_size=2, context=7, tokens=3)
    for _ in range(3):
        reset()
        out = forward()
        assert out.logits.shape == (2, 3, 64)  # (B, T, V)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    assert cache.get_seq_length() == 10
    reset()
    assert cache.get_seq_length() == 7


@pytest.mark.parametrize("context, tokens", [(6, 1), (6, 4), (0, 2)])
def test_static_workload_matches_eager_and_never_syncs(monkeypatch, context, tokens):
    """The cuda-graph path (StaticCache, explicit 4D mask) computes what eager computes, and its forward
    never reads a tensor on the host (which a CUDA graph capture forbids)."""
    model = build_model(TINY, torch.float32, "cpu")
    torch.manual_seed(0)
    forward, reset = static_workload(model, 2, context, tokens, capture=False)
    reset()
    forward()

    def host_sync(*args, **kwargs):
        raise AssertionError("host sync inside the forward")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, host_sync)
    reset()
    static_logits = forward().logits
    reset()
    again = forward().logits
    monkeypatch.undo()
    assert torch.equal(static_logits, again)  # replays write the same slots
    torch.manual_seed(0)  # same random cache contents and inputs, in the same order
    eager_forward, eager_reset = eager_workload(model, 2, context, tokens)
    eager_reset()
    torch.testing.assert_close(static_logits, eager_forward().logits, atol=1e-5, rtol=1e-4)
    if context:
        torch.manual_seed(0)
        other_forward, _ = eager_workload(model, 2, context - 1, tokens)
        assert not torch.allclose(static_logits, other_forward().logits, atol=1e-6)


# ---- a tiny real run -----------------------------------------------------------------------------
def test_tiny_profile_run_writes_a_valid_profile(tmp_path):
    path = run(_tiny_config(tmp_path))
    obj = json.loads(path.read_text())
    assert obj["schema"] == "draftforge.profile/1"
    assert (
        obj["device"]["name"] == "cpu"
        and obj["device"]["threads"] == 1
        and obj["device"]["clock"] == "thread"
    )
    assert obj["versions"]["torch"] and obj["created"]
    prof = read_profile(path)
    assert len(prof.measurements) == 6 * 2 * 2  # 6 shapes x 2 contexts x 2 token counts
    assert all(len(m.pass_medians_s) == 2 for m in prof.measurements)  # CPU default: two passes
    assert {m.group for m in prof.measurements} == {(n, h) for n in (1, 2, 3) for h in (32, 64)}
    for m in prof.measurements:
        assert 0 < m.p10_s <= m.median_s <= m.p90_s and m.repeats >= 2
    assert prof.error_report["groups"] == 6 and 0 <= prof.error_report["within_10pct"] <= 1
    model = load_latency_model(path)
    assert math.isfinite(model.forward_time(TINY.replace(num_layers=5), 1, 100, 1))
    assert torch.get_num_threads() >= 1
    with pytest.raises(DraftforgeError, match="exists"):
        run(_tiny_config(tmp_path))


def test_budget_stops_early_and_records_skipped(tmp_path):
    # 1.2 s for a grid of 12 shapes: the first is always measured, the rest must be skipped or measured
    cfg = _tiny_config(tmp_path, budget_minutes=0.02, layers=(1, 2, 3, 4, 5, 6), min_repeats=3, max_repeats=3)
    obj = json.loads(run(cfg).read_text())
    measured = {(m["shape"]["num_layers"], m["shape"]["hidden_size"]) for m in obj["measurements"]}
    assert measured and len(measured) + len(obj["skipped"]) == 12
    assert all(s["reason"] == "time budget" for s in obj["skipped"])
    assert obj["elapsed_s"] < 30  # no runaway past a 1.2 s budget (generous for a loaded machine)


@pytest.mark.slow
def test_cli_profile_run_show_and_plot(tmp_path):
    out = tmp_path / "cli.json"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "profile",
            "--device",
            "cpu",
            "--budget-minutes",
            "0.3",
            "--out",
            str(out),
            "--layers",
            "1,2",
            "--hidden",
            "64,128",
            "--contexts",
            "8",
            "--tokens",
            "1,2",
            "--vocab-size",
            "64",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["path"] == str(out) and summary["measurements"] > 0 and summary["dtype"] == "fp32"
    assert runner.invoke(app, ["profile", "show", str(out)]).exit_code == 0
    res = runner.invoke(app, ["profile", "plot", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli.png").stat().st_size > 1000
    res = runner.invoke(app, ["profile", "--device", "cuda:x"])
    assert res.exit_code != 0


# ---- depth vs width and the GPU script's reduced mode ---------------------------------------------
def test_equal_param_pairs_and_time_shapes():
    from draftforge.latency.compare import equal_param_pairs, time_shapes

    shapes = equal_param_pairs(64, (16, 4, 1), vocab=64)
    assert [(s.num_layers, s.hidden_size) for s in shapes] == [(16, 64), (4, 128), (1, 256)]
    decoder = [s.num_layers * s.layer_params() for s in shapes]
    assert max(decoder) / min(decoder) < 1.15  # about equal decoder parameters
    rows = time_shapes(shapes[1:], context=8, rounds=2, repeats=2, warmup=1)
    assert [r["shape"] for r in rows] == [s.to_dict() for s in shapes[1:]]
    assert all(0 < r["p10_s"] <= r["median_s"] <= r["p90_s"] for r in rows)


@pytest.mark.slow
def test_gpu_profile_script_reduced_mode(tmp_path):
    import runpy

    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine the script runs the full GPU profile")
    from pathlib import Path

    script = runpy.run_path(
        str(Path(__file__).parents[1] / "scripts" / "gpu_profile.py"), run_name="gpu_profile"
    )
    summary = script["main"](["--out", str(tmp_path / "gp"), "--minutes-per-runtime", "0.25"])
    assert summary["mode"] == "reduced-cpu" and not summary["errors"]
    prof = read_profile(summary["profiles"]["eager"]["path"])
    assert prof.device_name == "cpu" and len(prof.measurements) > 0
    assert len(summary["depth_vs_width"]) == 3
    assert json.loads((tmp_path / "gp" / "summary.json").read_text())["schema"] == "draftforge.gpu-profile/1"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "device must be 'cpu' or 'cuda[:N]'"),
        (["--hidden", "40,72"], "no shape of the profile grid is feasible"),
        (["--max-params", "1000"], "no shape of the profile grid is feasible"),
        (["--runtime", "cuda-graph"], "cuda-graph needs --device cuda"),
    ],
)
def test_cli_profile_user_errors_are_one_clear_line(tmp_path, capsys, args, message):
    from draftforge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["profile", "--out", str(tmp_path / "x.json"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "x.json").exists()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine")
    with pytest.raises(DraftforgeError, match="no CUDA device is available"):
        run(ProfileConfig(device="cuda", out=str(tmp_path / "x.json"), progress=False))


def test_shapes_that_do_not_fit_are_skipped_not_fatal(tmp_path, monkeypatch):
    from draftforge.latency import profiler

    cfg = _tiny_config(tmp_path, passes=1)
    shapes = shape_grid(cfg.resolved())
    sizes = sorted(profiler._needed_bytes(s, cfg.resolved()) for s in shapes)
    monkeypatch.setattr(profiler, "_available_bytes", lambda device: sizes[2])  # the 3 smallest fit
    real_build = profiler.build_model  # the name the profiler calls

    def build_or_oom(shape, dtype, device):
        if shape.num_layers == 1 and shape.hidden_size == 32:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real_build(shape, dtype, device)

    monkeypatch.setattr(profiler, "build_model", build_or_oom)
    obj = json.loads(run(cfg).read_text())
    reasons = [s["reason"] for s in obj["skipped"]]
    assert (
        reasons.count("does not fit in memory") == 4
    )  # 3 too big for the memory check + 1 allocation failure
    measured = {(m["shape"]["num_layers"], m["shape"]["hidden_size"]) for m in obj["measurements"]}
    assert len(measured) == 2 and (1, 32) not in measured


def test_bf16_on_cpu_is_an_option(tmp_path):
    obj = json.loads(run(_tiny_config(tmp_path, dtype="bf16", layers=(1, 2), passes=1)).read_text())
    assert obj["dtype"] == "bf16" and len(obj["measurements"]) == 4 * 2 * 2
