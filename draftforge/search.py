"""The search: which draft shape gives the lowest latency per token for a target on given hardware.

An Optuna study (ask/tell) over standard HF shapes of the target's family and vocabulary (layers,
hidden, head_dim -> heads, kv heads, intermediate size). For each shape the objective is the predicted
latency per accepted token at the exactly optimal γ (integer search, `speedup.optimal_gamma`):

    (γ·T_draft(shape) + T_verify(target, γ+1 tokens)) / E(α(shape), γ)

with T_draft from the draft GPU's latency model, T_verify from the target's (its own GPU and tensor
parallelism) and α from `acceptance`. Constraints (parameter range, draft-GPU memory) are hard: a shape
outside them is pruned with its reason and can never be recommended. Multi-objective mode returns the
(draft latency, α) Pareto front; the latency-per-token optimum always lies on it, since it falls with
lower draft latency and with higher α. Entry: `run(SearchConfig) -> SearchResult`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from draftforge.acceptance import AcceptanceModel
from draftforge.catalog import Target, resolve_target, same_tokenizer_targets
from draftforge.errors import DraftforgeError
from draftforge.latency.model import LatencyModel
from draftforge.search_setup import open_study, resolve_latency_models, target_latency_model
from draftforge.shapes import ModelShape
from draftforge.speedup import optimal_gamma

Objective = Literal["latency", "pareto"]
Sampler = Literal["tpe", "exhaustive"]
FFN_RATIOS: tuple[float, ...] = (2.0, 8 / 3, 3.5, 4.0)
KV_GROUPS: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(frozen=True)
class SearchConfig:
    """Everything `draftforge search` takes; validated by `problems()` (all at once, naming each flag)."""

    gpu: str
    target: str
    #: GPU that runs the target (verification); None means the draft's GPU.
    target_gpu: str | None = None
    #: tensor-parallel degree of the target; None means the smallest power of two that fits it.
    tp: int | None = None
    batch_sizes: tuple[int, ...] = (1,)
    #: cached tokens per sequence when drafting and verifying.
    context: int = 512
    #: None: bf16 on GPUs, fp32 on the CPU.
    dtype: str | None = None
    runtime: Literal["eager", "cuda-graph"] = "eager"
    profile: str | None = None
    reprofile: bool = False
    profile_budget_minutes: float = 3.0
    calibration: tuple[str, ...] = ()
    min_params: int | None = None
    #: None: a tenth of the target's parameters.
    max_params: int | None = None
    #: None: min(32, target layers).
    max_layers: int | None = None
    trials: int = 300
    objective: Objective = "latency"
    sampler: Sampler = "tpe"
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    top_k: int = 5
    max_gamma: int = 16
    #: show the profiler's progress bar (off for --json, whose stdout must stay pure JSON)
    show_progress: bool = True

    def problems(self) -> list[str]:
        out = []
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            out.append(f"--batch-size must be positive integers, got {list(self.batch_sizes)}")
        if self.context < 0:
            out.append(f"--context must be >= 0, got {self.context}")
        if self.tp is not None and (self.tp < 1 or self.tp & (self.tp - 1)):
            out.append(f"--tp must be a power of two, got {self.tp}")
        if self.runtime not in ("eager", "cuda-graph"):
            out.append(f"--runtime must be eager or cuda-graph, got {self.runtime!r}")
        if self.trials < 1:
            out.append(f"--trials must be >= 1, got {self.trials}")
        if self.objective not in ("latency", "pareto"):
            out.append(f"--objective must be latency or pareto, got {self.objective!r}")
        if self.sampler not in ("tpe", "exhaustive"):
            out.append(f"--sampler must be tpe or exhaustive, got {self.sampler!r}")
        if self.top_k < 1:
            out.append(f"--top must be >= 1, got {self.top_k}")
        if self.max_gamma < 1:
            out.append(f"--max-gamma must be >= 1, got {self.max_gamma}")
        if self.max_layers is not None and self.max_layers < 1:
            out.append(f"--max-layers must be >= 1, got {self.max_layers}")
        lo, hi = self.min_params, self.max_params
        if lo is not None and lo < 0 or hi is not None and hi < 1:
            out.append("--min-params and --max-params must be positive")
        elif lo is not None and hi is not None and lo > hi:
            out.append(f"--min-params ({lo:,}) is above --max-params ({hi:,})")
        if self.study_name and not self.storage:
            out.append("--study-name needs --storage (an in-memory study cannot be joined)")
        return out


# ---- the space -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSpace:
    """Standard HF shapes of the target's family: every point instantiates with `to_hf_config()`.

    hidden is a multiple of `hidden_step` (a multiple of every head_dim, so heads = hidden/head_dim is
    whole); kv heads = heads / group, the group being the largest allowed power of two dividing heads;
    intermediate = ffn_ratio·hidden rounded up to a multiple of 64 (256 from hidden 1024 on).
    """

    template: ModelShape  # the target: family, vocab, tied embeddings, positions
    max_layers: int
    hidden_step: int
    hidden_max: int
    head_dims: tuple[int, ...]
    kv_groups: tuple[int, ...]
    ffn_ratios: tuple[float, ...]
    min_params: int
    max_params: int

    @classmethod
    def for_target(
        cls,
        target: ModelShape,
        min_params: int | None = None,
        max_params: int | None = None,
        max_layers: int | None = None,
    ) -> SearchSpace:
        if target.hidden_size % 128 == 0:
            step, head_dims = 128 * max(1, round(target.hidden_size / 32 / 128)), (64, 128)
        else:
            step, head_dims = 64, (64,)
        return cls(
            template=target,
            max_layers=max_layers or min(32, target.num_layers),
            hidden_step=step,
            hidden_max=max(step, target.hidden_size // step * step),
            head_dims=head_dims,
            kv_groups=KV_GROUPS if target.family != "opt" else (1,),
            ffn_ratios=FFN_RATIOS,
            min_params=min_params or 0,
            max_params=max_params or target.param_count() // 10,
        )

    def hidden_values(self) -> range:
        return range(self.hidden_step, self.hidden_max + 1, self.hidden_step)

    def shape(self, layers: int, hidden: int, head_dim: int, kv_group: int, ffn_ratio: float) -> ModelShape:
        heads = hidden // head_dim
        group = max(g for g in (1, 2, 4, 8) if g <= kv_group and heads % g == 0)
        multiple = 256 if hidden >= 1024 else 64
        intermediate = math.ceil(ffn_ratio * hidden / multiple - 1e-9) * multiple
        return self.template.replace(
            num_layers=layers,
            hidden_size=hidden,
            num_heads=heads,
            num_kv_heads=heads // group,
            intermediate_size=intermediate,
            embed_dim=None,
        )

    def suggest(self, trial: Any) -> ModelShape:
        """The shape an Optuna trial (or FixedTrial) proposes."""
        return self.shape(
            trial.suggest_int("layers", 1, self.max_layers),
            trial.suggest_int("hidden", self.hidden_step, self.hidden_max, step=self.hidden_step),
            trial.suggest_categorical("head_dim", list(self.head_dims)),
            trial.suggest_categorical("kv_group", list(self.kv_groups)),
            trial.suggest_categorical("ffn_ratio", list(self.ffn_ratios)),
        )

    def enumerate(self) -> Iterator[ModelShape]:
        """Every distinct shape of the space (for the exhaustive optimum)."""
        seen: set[ModelShape] = set()
        for layers in range(1, self.max_layers + 1):
            for hidden in self.hidden_values():
                for head_dim in self.head_dims:
                    for group in self.kv_groups:
                        for ratio in self.ffn_ratios:
                            shape = self.shape(layers, hidden, head_dim, group, ratio)
                            if shape not in seen:
                                seen.add(shape)
                                yield shape

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.template.family,
            "vocab_size": self.template.vocab_size,
            "layers": [1, self.max_layers],
            "hidden": [self.hidden_step, self.hidden_max, self.hidden_step],
            "head_dims": list(self.head_dims),
            "kv_groups": list(self.kv_groups),
            "ffn_ratios": [round(r, 4) for r in self.ffn_ratios],
            "params": [self.min_params, self.max_params],
        }


# ---- one shape's prediction --------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A draft shape scored by the latency and acceptance models (contract 5's candidate keys)."""

    shape: ModelShape
    params: int
    draft_latency_s: float
    alpha: float
    alpha_low: float
    alpha_high: float
    gamma: int
    tau: float
    latency_per_token_s: float
    speedup: float
    tokens_per_s: float
    speedup_low: float
    speedup_high: float
    feasible: bool = True
    reason: str | None = None
    name: str | None = None
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"rank": self.rank, **dataclasses.asdict(self), "shape": self.shape.to_dict()}
        if self.name is None:
            del d["name"]
        return d


@dataclass
class Problem:
    """Everything one batch size's search needs, resolved; `evaluate(shape)` is the pure scoring."""

    target: Target
    draft_latency: LatencyModel
    target_latency: LatencyModel
    acceptance: AcceptanceModel
    space: SearchSpace
    batch_size: int
    context: int
    dtype: str
    max_gamma: int = 16
    #: draft device memory (bytes) for the memory constraint; None when unknown (CPU).
    draft_memory_bytes: float | None = None
    _verify: dict[int, float] = field(default_factory=dict, repr=False)

    def t_verify(self, tokens: int) -> float:
        """Target forward time for `tokens` new tokens per sequence (cached)."""
        if tokens not in self._verify:
            self._verify[tokens] = self.target_latency.forward_time(
                self.target.shape, self.batch_size, self.context, tokens
            )
        return self._verify[tokens]

    @property
    def t_target(self) -> float:
        return self.t_verify(1)

    def violations(self, shape: ModelShape, check_range: bool = True) -> list[str]:
        out = []
        params = shape.param_count()
        if check_range and not self.space.min_params <= params <= self.space.max_params:
            out.append(
                f"{params / 1e6:.0f}M parameters outside [{self.space.min_params / 1e6:.0f}M, "
                f"{self.space.max_params / 1e6:.0f}M]"
            )
        if self.draft_memory_bytes is not None:
            from draftforge.shapes import dtype_bytes

            need = params * dtype_bytes(self.dtype) + self.batch_size * (
                self.context + self.max_gamma + 1
            ) * shape.kv_bytes_per_token(self.dtype)
            if need > 0.9 * self.draft_memory_bytes:
                out.append(
                    f"needs {need / 1e9:.1f} GB, more than 90% of the draft GPU's "
                    f"{self.draft_memory_bytes / 1e9:.0f} GB"
                )
        return out

    def evaluate(self, shape: ModelShape, name: str | None = None, check_range: bool = True) -> Candidate:
        t_draft = self.draft_latency.forward_time(shape, self.batch_size, self.context, 1)
        est = self.acceptance.predict(shape, self.target.shape)

        def best(alpha: float):
            return optimal_gamma(alpha, t_draft, self.t_verify, self.t_target, self.max_gamma)

        mid, low, high = best(est.alpha), best(est.low), best(est.high)
        problems = self.violations(shape, check_range)
        return Candidate(
            shape=shape,
            params=shape.param_count(),
            draft_latency_s=t_draft,
            alpha=est.alpha,
            alpha_low=est.low,
            alpha_high=est.high,
            gamma=mid.gamma,
            tau=mid.tau,
            latency_per_token_s=mid.latency_per_token,
            speedup=mid.speedup,
            tokens_per_s=self.batch_size / mid.latency_per_token,
            speedup_low=low.speedup,
            speedup_high=high.speedup,
            feasible=not problems,
            reason="; ".join(problems) or None,
            name=name,
        )

    def fingerprint(self) -> dict[str, Any]:
        """What makes two studies the same problem (checked before joining a shared study)."""
        return {
            "target": self.target.name,
            "draft_latency": self.draft_latency.label,
            "target_latency": self.target_latency.label,
            "batch_size": self.batch_size,
            "context": self.context,
            "space": self.space.to_dict(),
            "acceptance": self.acceptance.formula,
            "max_gamma": self.max_gamma,
        }


def make_objective(problem: Problem, objective: Objective = "latency") -> Callable[[Any], Any]:
    """The Optuna objective: latency per token (s), or (draft latency s, α) in pareto mode.

    An infeasible shape raises `optuna.TrialPruned` naming the violated constraint, so it is never
    a result. Works with `optuna.trial.FixedTrial` for tests.
    """
    import optuna

    def fn(trial: Any) -> Any:
        cand = problem.evaluate(problem.space.suggest(trial))
        trial.set_user_attr("gamma", cand.gamma)
        trial.set_user_attr("alpha", cand.alpha)
        trial.set_user_attr("params", cand.params)
        if not cand.feasible:
            trial.set_user_attr("infeasible", cand.reason)
            raise optuna.TrialPruned(cand.reason)
        if objective == "pareto":
            return cand.draft_latency_s, cand.alpha
        return cand.latency_per_token_s

    return fn


# ---- the study --------------------------------------------------------------------------------------
def run_study(
    problem: Problem,
    trials: int,
    objective: Objective = "latency",
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Run `trials` ask/tell trials; return every feasible shape the study has seen (all workers)."""
    import optuna
    from optuna.trial import TrialState

    study = open_study(storage, study_name, objective, seed, problem.fingerprint())
    fn = make_objective(problem, objective)
    for _ in range(trials):
        trial = study.ask()
        try:
            study.tell(trial, fn(trial))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        if progress is not None:
            progress(1)
    shapes: dict[ModelShape, Candidate] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        p = t.params
        shape = problem.space.shape(p["layers"], p["hidden"], p["head_dim"], p["kv_group"], p["ffn_ratio"])
        if shape not in shapes:
            shapes[shape] = problem.evaluate(shape)
    return [c for c in shapes.values() if c.feasible]


def exhaustive(problem: Problem) -> list[Candidate]:
    """Every feasible shape of the space, scored (the ground truth the study is benchmarked against)."""
    return [c for c in map(problem.evaluate, problem.space.enumerate()) if c.feasible]


def rank(candidates: list[Candidate]) -> list[Candidate]:
    ordered = sorted(candidates, key=lambda c: (c.latency_per_token_s, c.params, -c.shape.head_dim))
    return [dataclasses.replace(c, rank=i + 1) for i, c in enumerate(ordered)]


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Shapes no other shape beats on both draft latency (lower) and α (higher), by latency."""
    front: list[Candidate] = []
    best_alpha = -1.0
    for c in sorted(candidates, key=lambda c: (c.draft_latency_s, -c.alpha)):
        if c.alpha > best_alpha + 1e-12:
            front.append(c)
            best_alpha = c.alpha
    return front


# ---- the entry point -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    tp: int  # the target's tensor-parallel degree at this batch size
    candidates: list[Candidate]  # top-k, ranked
    baselines: list[Candidate]
    pareto: list[Candidate]
    evaluated: list[Candidate]  # every feasible shape seen (for plots)
    t_target_s: float
    trials: int
    study_name: str | None
    why: str


@dataclass(frozen=True)
class SearchResult:
    config: SearchConfig
    target: Target
    inputs: dict[str, Any]
    latency_model: dict[str, Any]
    acceptance_model: dict[str, Any]
    batches: list[BatchResult]
    notes: list[str]

    @property
    def best(self) -> Candidate:
        return self.batches[0].candidates[0]


@dataclass(frozen=True)
class Setup:
    """A search's resolved inputs: one `Problem` (and target tensor parallelism) per batch size."""

    target: Target
    space: SearchSpace
    acceptance: AcceptanceModel
    models: dict[str, Any]
    problems: list[Problem]
    tps: list[int]
    notes: list[str]


def setup(config: SearchConfig) -> Setup:
    """Validate `config` and resolve the target, the latency and acceptance models and the space."""
    problems = config.problems()
    if problems:
        raise DraftforgeError("invalid search settings: " + "; ".join(problems))
    target = resolve_target(config.target)
    acceptance = _acceptance(config)
    models = resolve_latency_models(config)
    space = SearchSpace.for_target(target.shape, config.min_params, config.max_params, config.max_layers)
    per_batch, tps, notes = [], [], list(models["notes"])
    for batch in config.batch_sizes:
        target_model, tp, note = target_latency_model(config, target, batch, models)
        notes.append(note)
        tps.append(tp)
        per_batch.append(
            Problem(
                target=target,
                draft_latency=models["draft"],
                target_latency=target_model,
                acceptance=acceptance,
                space=space,
                batch_size=batch,
                context=config.context,
                dtype=models["dtype"],
                max_gamma=config.max_gamma,
                draft_memory_bytes=models["draft_memory_bytes"],
            )
        )
    return Setup(target, space, acceptance, models, per_batch, tps, notes)


def run(
    config: SearchConfig, progress: Callable[[str, int], Callable[[int], None]] | None = None
) -> SearchResult:
    """Resolve the inputs, run one study per batch size, rank and compare with the baselines.

    `progress(description, total)` may return a callback advanced once per trial (the CLI's bar).
    """
    s = setup(config)
    batches = [_search_one(p, tp, config, progress) for p, tp in zip(s.problems, s.tps, strict=True)]
    inputs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    del inputs["show_progress"]
    inputs.update(
        target_name=s.target.name,
        draft_gpu=s.models["draft_gpu"],
        target_gpu=s.models["target_gpu"],
        dtype=s.models["dtype"],
        space=s.space.to_dict(),
    )
    latency = {
        "draft_label": s.models["draft"].label,
        "draft": s.models["draft"].provenance(),
        "target_by_batch_size": {
            str(p.batch_size): {"tp": tp, "label": p.target_latency.label, **p.target_latency.provenance()}
            for p, tp in zip(s.problems, s.tps, strict=True)
        },
    }
    return SearchResult(config, s.target, inputs, latency, s.acceptance.to_dict(), batches, s.notes)


def _acceptance(config: SearchConfig) -> AcceptanceModel:
    from draftforge import acceptance

    return acceptance.calibrate(config.calibration) if config.calibration else acceptance.prior()


def _search_one(problem: Problem, tp: int, config: SearchConfig, progress: Any) -> BatchResult:
    name = config.study_name
    if name and len(config.batch_sizes) > 1:
        name = f"{name}-b{problem.batch_size}"
    if config.sampler == "exhaustive":
        seen, trials = exhaustive(problem), 0
        if not seen:
            raise _infeasible(problem)
    else:
        tick = (
            progress(f"batch {problem.batch_size}: {config.trials} trials", config.trials)
            if progress
            else None
        )
        seen = run_study(problem, config.trials, config.objective, config.seed, config.storage, name, tick)
        trials = config.trials
        if not seen:
            raise _infeasible(problem)
    ranked = rank(seen)
    front = pareto_front(ranked)
    candidates = [c for c in ranked if c in front] if config.objective == "pareto" else ranked
    # the top list shows distinct (layers, hidden) pairs, each with its best heads and FFN size
    distinct: dict[tuple[int, int], Candidate] = {}
    for c in candidates:
        distinct.setdefault((c.shape.num_layers, c.shape.hidden_size), c)
    top = [dataclasses.replace(c, rank=i + 1) for i, c in enumerate(list(distinct.values())[: config.top_k])]
    baselines = [
        problem.evaluate(t.shape, name=t.name, check_range=False)
        for t in same_tokenizer_targets(problem.target)
    ]
    return BatchResult(
        problem.batch_size,
        tp,
        top,
        baselines,
        front,
        ranked,
        problem.t_target,
        trials,
        name,
        why_winner(top[0], baselines, problem),
    )


def _infeasible(problem: Problem) -> DraftforgeError:
    s = problem.space
    return DraftforgeError(
        f"no draft shape of {problem.target.name}'s family fits the constraints (parameters in "
        f"[{s.min_params:,}, {s.max_params:,}], up to {s.max_layers} layers, draft GPU memory); "
        "widen --min-params/--max-params or --max-layers"
    )


def why_winner(best: Candidate, baselines: list[Candidate], problem: Problem) -> str:
    """One sentence: why the recommended shape beats the best baseline (or the plain target)."""
    s = best.shape
    head = (
        f"{s.num_layers} layers x {s.hidden_size} wide: a draft step takes {best.draft_latency_s * 1e3:.2f} ms "
        f"(target step {problem.t_target * 1e3:.1f} ms)"
    )
    usable = [b for b in baselines if b.feasible]
    if not usable:
        return f"{head}, so at gamma={best.gamma} with alpha {best.alpha:.2f} it decodes {best.speedup:.2f}x faster."
    ref = min(usable, key=lambda b: b.latency_per_token_s)
    gain = ref.latency_per_token_s / best.latency_per_token_s
    if best.alpha < ref.alpha:
        trade = f"and that outweighs its lower alpha ({best.alpha:.2f} vs {ref.alpha:.2f})"
    else:
        trade = f"and it accepts as well or better (alpha {best.alpha:.2f} vs {ref.alpha:.2f})"
    return (
        f"{head} vs {ref.draft_latency_s * 1e3:.2f} ms for {ref.name} ({ref.shape.num_layers} layers), {trade}: "
        f"at gamma={best.gamma} it gives {best.speedup:.2f}x vs {ref.speedup:.2f}x "
        f"({gain:.2f}x the best baseline's throughput)."
    )
