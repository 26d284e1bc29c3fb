from __future__ import annotations

import pytest

from draftforge.catalog import get_hardware, get_target
from draftforge.errors import DraftforgeError
from draftforge.latency import AnalyticConstants, AnalyticLatencyModel, LatencyModel
from draftforge.shapes import ModelShape

SHALLOW_WIDE = ModelShape(5, 4096, 32, 32, 11008, 32000)  # ~1.27B
DEEP_NARROW = ModelShape(24, 2048, 16, 16, 5504, 32000)  # ~1.35B


def test_protocol():
    assert isinstance(AnalyticLatencyModel.for_gpu("a100"), LatencyModel)


def test_paper_finding_shallow_wide_beats_deep_narrow_on_a100():
    assert SHALLOW_WIDE.param_count() == pytest.approx(DEEP_NARROW.param_count(), rel=0.1)
    model = AnalyticLatencyModel.for_gpu("a100")
    assert model.forward_time(SHALLOW_WIDE, 1, 512, 1) < model.forward_time(DEEP_NARROW, 1, 512, 1)


@pytest.mark.parametrize("runtime", ["eager", "cuda-graph"])
@pytest.mark.parametrize("tokens", [1, 5])
def test_breakdown_sums_and_floor(runtime, tokens):
    m = AnalyticLatencyModel.for_gpu("a100", tp=4, runtime=runtime)
    shape = get_target("llama-65b").shape
    b = m.breakdown(shape, 1, 512, tokens)
    assert sum(b["terms"].values()) == pytest.approx(b["total_s"])
    floor = shape.weight_bytes("bf16") / (4 * get_hardware("a100").memory_bandwidth)
    assert b["total_s"] > floor


def test_hand_computed_single_layer():
    hw = get_hardware("a100")
    c = AnalyticConstants(
        bandwidth_efficiency=0.5,
        compute_efficiency=0.5,
        layer_overhead_s={"eager": 1e-4, "cuda-graph": 1e-5},
        step_overhead_s={"eager": 2e-4, "cuda-graph": 2e-5},
    )
    s = ModelShape(1, 1024, 8, 8, 4096, 1000, tie_embeddings=True)
    m = AnalyticLatencyModel(hardware=hw, dtype="bf16", constants=c)
    b = m.breakdown(s, batch_size=1, context=0, tokens=1)
    layer_bytes = s.layer_params() * 2 + 1 * 1 * 2 * 1024 * 2  # weights + the new token's K and V
    assert b["terms"]["layers_weights_kv_flops"] == pytest.approx(layer_bytes / (hw.memory_bandwidth * 0.5))
    assert b["terms"]["lm_head"] == pytest.approx(1000 * 1024 * 2 / (hw.memory_bandwidth * 0.5))
    assert b["terms"]["layers_fixed_overhead"] == pytest.approx(1e-4)
    assert b["terms"]["tp_allreduce"] == 0.0
    assert b["bound"] == "memory"


def test_depth_costs_more_under_eager_than_cuda_graph():
    eager = AnalyticLatencyModel.for_gpu("h100", runtime="eager")
    graph = AnalyticLatencyModel.for_gpu("h100", runtime="cuda-graph")
    ratio_eager = eager.forward_time(DEEP_NARROW, 1, 512, 1) / eager.forward_time(SHALLOW_WIDE, 1, 512, 1)
    ratio_graph = graph.forward_time(DEEP_NARROW, 1, 512, 1) / graph.forward_time(SHALLOW_WIDE, 1, 512, 1)
    assert ratio_eager > ratio_graph


def test_large_batch_becomes_compute_bound():
    m = AnalyticLatencyModel.for_gpu("a100")
    assert m.breakdown(SHALLOW_WIDE, 1, 512, 1)["bound"] == "memory"
    assert m.breakdown(SHALLOW_WIDE, 256, 512, 8)["bound"] == "compute"


def test_faster_gpu_is_faster():
    s = get_target("llama-7b").shape
    times = [
        AnalyticLatencyModel.for_gpu(g).forward_time(s, 1, 512, 1) for g in ("l4", "a100", "h100", "h200")
    ]
    assert times == sorted(times, reverse=True)


def test_tensor_parallel_speeds_up_a_large_target():
    s = get_target("llama-65b").shape
    t1 = AnalyticLatencyModel.for_gpu("a100", tp=1).forward_time(s, 1, 512, 1)
    t4 = AnalyticLatencyModel.for_gpu("a100", tp=4).forward_time(s, 1, 512, 1)
    assert t4 < t1


def test_fits():
    s = get_target("llama-65b").shape
    assert not AnalyticLatencyModel.for_gpu("a100", tp=1).fits(s, 1, 2048)
    assert AnalyticLatencyModel.for_gpu("a100", tp=4).fits(s, 1, 2048)


def test_errors():
    with pytest.raises(DraftforgeError, match="has no spec sheet"):
        AnalyticLatencyModel.for_gpu("cpu")
    with pytest.raises(DraftforgeError, match="unknown runtime"):
        AnalyticLatencyModel.for_gpu("a100", runtime="tensorrt")
    with pytest.raises(DraftforgeError, match="unknown dtype"):
        AnalyticLatencyModel.for_gpu("a100", dtype="fp12")
    with pytest.raises(DraftforgeError, match="batch size and tokens"):
        AnalyticLatencyModel.for_gpu("a100").forward_time(SHALLOW_WIDE, 0, 10, 1)
