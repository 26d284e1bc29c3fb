from __future__ import annotations

import json

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import FixedTrial  # noqa: E402

from draftforge import search  # noqa: E402
from draftforge.catalog import get_target  # noqa: E402
from draftforge.errors import DraftforgeError  # noqa: E402
from draftforge.latency.analytic import AnalyticLatencyModel  # noqa: E402
from draftforge.search import SearchConfig, SearchSpace  # noqa: E402
from draftforge.search_setup import open_storage  # noqa: E402
from draftforge.speedup import expected_tokens  # noqa: E402


def _problem(**kw):
    return search.setup(SearchConfig(**{"gpu": "a100", "target": "llama-65b", **kw})).problems[0]


def _best(**kw):
    """The exhaustive optimum (ground truth) of a configuration."""
    return search.run(SearchConfig(**{"gpu": "a100", "target": "llama-65b", "sampler": "exhaustive", **kw}))


# ---- the objective ---------------------------------------------------------------------------------
def test_objective_with_fixed_trial_matches_hand_arithmetic(monkeypatch):
    from draftforge.latency import model as latency_model

    monkeypatch.setattr(
        latency_model, "find_builtin_profile", lambda *a: None
    )  # the spec sheet, whatever ships
    p = _problem()
    params = {"layers": 5, "hidden": 4096, "head_dim": 128, "kv_group": 1, "ffn_ratio": 8 / 3}
    trial = FixedTrial(params)
    value = search.make_objective(p)(trial)
    shape = p.space.shape(**{k: v for k, v in params.items()})
    assert (shape.num_layers, shape.hidden_size, shape.num_heads, shape.num_kv_heads) == (5, 4096, 32, 32)
    assert shape.intermediate_size == 11008  # 8/3 * 4096 rounded up to 256: LLaMA-7B's FFN
    # the same number by hand: spec-sheet times, prior alpha, integer search over gamma
    draft_model = AnalyticLatencyModel.for_gpu("a100")
    target_model = AnalyticLatencyModel.for_gpu("a100", tp=2)  # 131 GB of weights: 2 x 80 GB
    t_d = draft_model.forward_time(shape, 1, 512, 1)
    alpha = p.acceptance.predict(shape, get_target("llama-65b").shape).alpha
    by_gamma = {
        g: (g * t_d + target_model.forward_time(get_target("llama-65b").shape, 1, 512, g + 1))
        / expected_tokens(alpha, g)
        for g in range(1, 17)
    }
    assert value == pytest.approx(min(by_gamma.values()), rel=1e-12)
    assert trial.user_attrs["gamma"] == min(by_gamma, key=by_gamma.get)
    pareto = search.make_objective(p, "pareto")(FixedTrial(params))
    assert pareto == pytest.approx((t_d, alpha))


def test_infeasible_shape_is_pruned_with_its_reason():
    p = _problem(max_params=500_000_000)
    trial = FixedTrial({"layers": 5, "hidden": 4096, "head_dim": 128, "kv_group": 1, "ffn_ratio": 8 / 3})
    with pytest.raises(optuna.TrialPruned, match="outside"):
        search.make_objective(p)(trial)
    assert "parameters outside" in trial.user_attrs["infeasible"]


def test_draft_gpu_memory_is_a_hard_constraint():
    p = _problem(gpu="l4", target_gpu="a100", max_params=70_000_000_000)
    big = get_target("llama-30b").shape  # 65 GB of bf16 weights on a 24 GB L4
    cand = p.evaluate(big, check_range=False)
    assert not cand.feasible and "draft GPU" in cand.reason


@pytest.mark.parametrize("target", ["llama-65b", "llama-3.1-70b", "opt-66b", "qwen2.5-72b", "smollm2-135m"])
def test_every_shape_of_the_space_is_a_standard_hf_model_of_the_family(target):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    t = get_target(target).shape
    space = SearchSpace.for_target(t)
    shapes = list(space.enumerate())
    assert len(shapes) > 100
    for s in shapes:
        assert (s.family, s.vocab_size, s.tie_embeddings) == (t.family, t.vocab_size, t.tie_embeddings)
        assert s.head_dim in (64, 128) and s.num_heads % s.num_kv_heads == 0
    # instantiate a spread of them (meta device: no memory) and check the parameter count
    for s in shapes[:: max(1, len(shapes) // 6)] + [shapes[-1]]:
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(s.to_hf_config())
        assert sum(p.numel() for p in model.parameters()) == s.param_count(), s.describe()


# ---- what the search recommends --------------------------------------------------------------------
def test_llama65b_on_a100_batch1_is_shallow_wide_and_beats_every_baseline():
    result = search.run(SearchConfig(gpu="a100", target="llama-65b"))  # the CLI default: Optuna TPE
    batch = result.batches[0]
    best = batch.candidates[0]
    assert best.shape.num_layers <= 8  # shallow: the paper's drafts have a few layers...
    assert best.shape.hidden_size >= 2048  # ...at large width
    assert best.shape.hidden_size / best.shape.num_layers >= 256
    names = {b.name for b in batch.baselines}
    assert {"llama-7b", "llama-13b", "llama-2-7b", "llama-30b"} <= names
    assert all(best.speedup > b.speedup for b in batch.baselines)
    assert best.speedup > 1.0 and 1 <= best.gamma <= 16 and 1.0 <= best.tau <= best.gamma + 1
    assert (
        best.alpha_low < best.alpha < best.alpha_high and best.speedup_low < best.speedup < best.speedup_high
    )
    assert "llama-7b" in batch.why and f"gamma={best.gamma}" in batch.why
    assert any("tensor parallelism 2" in n for n in result.notes)  # smallest power of two that fits
    assert result.acceptance_model["source"] == "prior"


def test_optuna_finds_the_exhaustive_optimum_within_one_percent():
    p = _problem()
    truth = min(c.latency_per_token_s for c in search.exhaustive(p))
    found = min(c.latency_per_token_s for c in search.run_study(p, 300, seed=0))
    assert found <= truth * 1.01


def test_cheaper_layers_make_the_draft_deeper():
    """cuda-graph removes most of the per-layer launch overhead, so depth costs less (the paper's physics)."""
    eager = _best(max_layers=16).best
    graph = _best(max_layers=16, runtime="cuda-graph").best
    assert graph.shape.num_layers > eager.shape.num_layers
    assert graph.speedup > eager.speedup


def test_slow_memory_makes_the_draft_narrower():
    """A draft GPU with 0.3 TB/s (L4) pays far more per weight byte than an A100 (2 TB/s)."""
    a100 = _best(max_layers=16).best
    l4 = _best(max_layers=16, gpu="l4", target_gpu="a100").best
    assert l4.shape.hidden_size < a100.shape.hidden_size and l4.params < a100.params / 2


def test_a_faster_target_leaves_less_room_for_the_draft():
    tp2 = _best(max_layers=16).best
    tp4 = _best(max_layers=16, tp=4).best
    assert tp4.params < tp2.params
    assert tp4.speedup < tp2.speedup


def test_larger_batches_shorten_gamma_and_shrink_the_gain():
    result = _best(max_layers=16, batch_sizes=(1, 32, 128), tp=8)
    gammas = [b.candidates[0].gamma for b in result.batches]
    speedups = [b.candidates[0].speedup for b in result.batches]
    assert gammas == sorted(gammas, reverse=True) and gammas[0] > gammas[-1]
    assert speedups == sorted(speedups, reverse=True)
    assert [b.batch_size for b in result.batches] == [1, 32, 128]


def test_default_tp_is_the_smallest_power_of_two_that_fits():
    assert search.setup(SearchConfig(gpu="a100", target="llama-65b")).tps == [2]
    assert search.setup(SearchConfig(gpu="a100-40gb", target="llama-65b")).tps == [4]
    assert search.setup(SearchConfig(gpu="h200", target="llama-65b")).tps == [2]  # 131 GB > 90% of 141
    assert search.setup(SearchConfig(gpu="mi300x", target="llama-65b")).tps == [1]
    assert search.setup(SearchConfig(gpu="a100", target="llama-7b")).tps == [1]


def test_pareto_mode_returns_a_non_dominated_front():
    result = search.run(SearchConfig(gpu="a100", target="llama-65b", objective="pareto", trials=150))
    front = result.batches[0].pareto
    assert len(front) >= 3
    for a in front:
        assert not any(
            b.draft_latency_s <= a.draft_latency_s and b.alpha >= a.alpha and b != a for b in front
        )
    # the latency-per-token optimum of everything seen lies on the front
    best = min(result.batches[0].evaluated, key=lambda c: c.latency_per_token_s)
    assert best in front


def test_seeded_study_is_deterministic():
    p = _problem()
    runs = [
        sorted((c.shape.describe(), c.latency_per_token_s) for c in search.run_study(p, 60, seed=7))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


# ---- storage ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_shared_storage_resumes_and_joins_a_study(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite" else f"journal:{tmp_path / 'study.log'}"
    p = _problem()
    first = search.run_study(p, 20, seed=1, storage=url, study_name="shared")
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    assert len(study.trials) == 20
    second = search.run_study(p, 20, seed=2, storage=url, study_name="shared")  # a second worker joins
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    assert len(study.trials) == 40
    assert len(second) >= len(first)  # it sees the first worker's shapes too
    # the same study cannot be joined for another problem
    with pytest.raises(DraftforgeError, match="another problem"):
        search.run_study(_problem(batch_sizes=(8,)), 1, storage=url, study_name="shared")


def test_storage_that_cannot_be_opened(tmp_path):
    p = _problem()
    with pytest.raises(DraftforgeError, match="cannot open"):
        search.run_study(p, 1, storage=f"sqlite:///{tmp_path}/no/such/dir/x.db", study_name="s")
    with pytest.raises(DraftforgeError, match="neither a database URL"):
        search.run_study(p, 1, storage="just-a-name", study_name="s")
    with pytest.raises(DraftforgeError, match="cannot open"):
        search.run_study(p, 1, storage="nosuchdialect://host/db", study_name="s")


# ---- user errors -----------------------------------------------------------------------------------
def test_clear_errors_for_bad_inputs():
    with pytest.raises(DraftforgeError, match="unknown GPU 'a1000'"):
        search.run(SearchConfig(gpu="a1000", target="llama-65b"))
    with pytest.raises(DraftforgeError, match="unknown target"):
        search.run(SearchConfig(gpu="a100", target="llama-99b"))
    with pytest.raises(DraftforgeError, match="no draft shape .* fits the constraints"):
        search.run(SearchConfig(gpu="a100", target="llama-65b", max_params=1000, trials=5))
    with pytest.raises(DraftforgeError) as err:
        search.run(
            SearchConfig(
                gpu="a100", target="llama-65b", tp=3, trials=0, min_params=10, max_params=5, study_name="x"
            )
        )
    for flag in ("--tp", "--trials", "--min-params", "--study-name"):
        assert flag in str(err.value)


def test_calibration_feeds_the_search_and_is_recorded(tmp_path):
    """Measured α well above the prior for small drafts makes a smaller draft pay, and the output says so."""
    t = get_target("llama-65b").shape
    rows = []
    for layers, hidden in [(2, 1024), (4, 2048), (8, 4096)]:
        s = SearchSpace.for_target(t).shape(layers, hidden, 128, 1, 4.0)
        rows.append({"shape": s.to_dict(), "target": "llama-65b", "alpha": 0.85})  # flat: size does not help
    path = tmp_path / "measured.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    prior = _best(max_layers=16)
    calibrated = _best(max_layers=16, calibration=(str(path),))
    assert prior.acceptance_model["source"] == "prior"
    assert (
        calibrated.acceptance_model["source"] == "calibrated" and calibrated.acceptance_model["n_points"] == 3
    )
    assert abs(calibrated.acceptance_model["slope_per_decade"]) < 0.02
    assert calibrated.best.params < prior.best.params


def _cand(latency_ms: float, alpha: float, per_token_ms: float, layers: int = 2):
    shape = SearchSpace.for_target(get_target("llama-7b").shape).shape(layers, 1024, 128, 1, 4.0)
    return search.Candidate(
        shape,
        shape.param_count(),
        latency_ms / 1e3,
        alpha,
        alpha - 0.1,
        alpha + 0.1,
        4,
        3.0,
        per_token_ms / 1e3,
        2.0,
        100.0,
        1.5,
        2.5,
    )


def test_pareto_front_and_rank_on_hand_made_points():
    a, b, c, d = _cand(1, 0.5, 30), _cand(2, 0.6, 20), _cand(3, 0.55, 25), _cand(4, 0.7, 22, layers=3)
    assert search.pareto_front([c, d, a, b]) == [a, b, d]  # c is beaten by b on both axes
    ranked = search.rank([a, b, c, d])
    assert [x.latency_per_token_s for x in ranked] == [0.020, 0.022, 0.025, 0.030]
    assert [x.rank for x in ranked] == [1, 2, 3, 4]
