"""Acceptance model: the per-token acceptance α a draft shape should reach on a target, with a band.

The prior (greedy checking, a draft distilled from or pre-trained like the target):

    α(draft, target) = clip( a + b · log10(N_draft / N_target) − d / L_draft, α_min, α_max )

* N are *non-embedding* parameter counts (Kaplan et al. 2020, arXiv 2001.08361 §3.1: loss follows
  non-embedding size across shapes), L the draft's number of layers.
* a, b: fitted to Leviathan et al. 2023 (arXiv 2211.17192) Table 3, LaMDA-137B target at T=0 with
  100M / 2B / 8B drafts: α = 0.61 / 0.71 / 0.75 (T=1: 0.57 / 0.71 / 0.74). Least squares on
  log10(size ratio) gives b = 0.074 per decade and a = 0.843 at equal size. The published counts are
  totals; using them for non-embedding sizes over-states the smallest draft, so b is if anything too
  steep. The other rows of the same table (T5-XXL EnDe with T5-small/base/large: 0.75/0.80/0.82; CNN/DM:
  0.65/0.73/0.74) show the same slow growth (0.04-0.09 per decade) but intercepts that differ by task by
  up to ±0.08 at the same size ratio: that spread is the honest `band`.
* Depth vs width: the seed paper (Yan et al., arXiv 2402.01528) finds acceptance depends only weakly on
  the draft's quality and their 5-layer drafts at LLaMA-7B width accept about as well as deep ones, and
  Kaplan et al. Fig. 6 finds loss independent of shape at fixed N except for very shallow nets (fewer
  than 2 layers deviate). So depth enters only as a small smooth penalty d / L concentrated on very
  shallow drafts (d = 0.06: −0.06 at 1 layer, −0.03 at 2, −0.015 at 4, −0.0075 at 8), which keeps a
  one-layer "bigram-like" draft from looking as good as its parameter count. It is the least certain
  term of the prior (it decides how many layers the search picks) and it sits inside the band;
  calibrating with drafts of different depths is how to pin it down.

Calibration (`calibrate`) refits a and b from measured points: eval reports (`draftforge.eval/1`) or a
JSONL of `{shape | params, target, alpha}` rows; the band becomes twice the residual RMS (at least
0.02). The model records whether it is the prior or calibrated; search writes that into its output.
Everything here is pure arithmetic plus file reading; nothing is measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape

#: Leviathan et al. 2023 Table 3, LaMDA 137B target, argmax (T=0): (draft params, target params, α).
LEVIATHAN_LAMDA_T0: tuple[tuple[float, float, float], ...] = (
    (100e6, 137e9, 0.61),
    (2e9, 137e9, 0.71),
    (8e9, 137e9, 0.75),
)


@dataclass(frozen=True)
class AlphaEstimate:
    """α with its band (low ≤ alpha ≤ high), all in [0, 1]."""

    alpha: float
    low: float
    high: float


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured acceptance: size ratio, draft depth (None when unknown) and α."""

    log_ratio: float  # log10(N_draft / N_target), non-embedding counts where shapes are known
    layers: int | None
    alpha: float
    source: str


@dataclass(frozen=True)
class AcceptanceModel:
    """The prior or a calibrated refit of it (see the module docstring for the formula and sources)."""

    intercept: float = 0.843
    slope: float = 0.074
    depth_coef: float = 0.06
    band: float = 0.08
    alpha_min: float = 0.05
    alpha_max: float = 0.98
    source: Literal["prior", "calibrated"] = "prior"
    rmse: float | None = None
    points: tuple[CalibrationPoint, ...] = field(default=(), repr=False)
    files: tuple[str, ...] = ()

    # ---- prediction -------------------------------------------------------------------------
    def depth_penalty(self, layers: int | None) -> float:
        return 0.0 if layers is None else self.depth_coef / layers

    def predict_ratio(self, log_ratio: float, layers: int | None) -> AlphaEstimate:
        """α for a draft `log_ratio` = log10(N_draft / N_target) decades smaller, `layers` deep."""
        raw = self.intercept + self.slope * log_ratio - self.depth_penalty(layers)
        alpha = _clip(raw, self.alpha_min, self.alpha_max)
        return AlphaEstimate(alpha, _clip(alpha - self.band, 0.0, 1.0), _clip(alpha + self.band, 0.0, 1.0))

    def predict(self, draft: ModelShape, target: ModelShape) -> AlphaEstimate:
        """α of `draft` verifying against `target` (sizes are non-embedding parameter counts)."""
        return self.predict_ratio(size_log_ratio(draft, target), draft.num_layers)

    # ---- description ------------------------------------------------------------------------
    @property
    def formula(self) -> str:
        return (
            f"alpha = clip({self.intercept:.3f} + {self.slope:.3f}*log10(N_draft/N_target) "
            f"- {self.depth_coef:.3f}/layers, "
            f"{self.alpha_min}, {self.alpha_max}) +/- {self.band:.3f}; N = non-embedding parameters"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "formula": self.formula,
            "intercept": self.intercept,
            "slope_per_decade": self.slope,
            "depth_coef": self.depth_coef,
            "band": self.band,
            "prior_references": [
                "Leviathan et al. 2023 (arXiv 2211.17192) Table 3: LaMDA-137B with 100M/2B/8B drafts, "
                "alpha 0.61/0.71/0.75 at T=0 (fit of intercept and slope)",
                "Yan et al. (arXiv 2402.01528): acceptance depends weakly on draft depth vs width",
                "Kaplan et al. 2020 (arXiv 2001.08361) Fig. 6: shape-independent loss except very shallow nets",
            ],
        }
        if self.source == "calibrated":
            out.update(
                n_points=len(self.points),
                rmse=self.rmse,
                files=list(self.files),
                points=[dataclasses.asdict(p) for p in self.points],
            )
        return out


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def size_log_ratio(draft: ModelShape, target: ModelShape) -> float:
    """log10 of the non-embedding parameter ratio draft/target."""
    return math.log10(draft.non_embedding_params() / target.non_embedding_params())


def prior() -> AcceptanceModel:
    """The documented prior (no measurements)."""
    return AcceptanceModel()


def fit_prior_to_leviathan() -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through LEVIATHAN_LAMDA_T0 (reproduces the prior)."""
    points = [CalibrationPoint(math.log10(d / t), None, a, "leviathan") for d, t, a in LEVIATHAN_LAMDA_T0]
    return _least_squares(points, AcceptanceModel(), ridge=0.0)


# ---- calibration -------------------------------------------------------------------------------
def fit(
    points: Sequence[CalibrationPoint], base: AcceptanceModel | None = None, files: Iterable[str] = ()
) -> AcceptanceModel:
    """Refit intercept and slope of `base` (default: the prior) to measured points.

    One point, or points all at nearly the same size ratio (< 0.1 decade apart), move only the
    intercept; otherwise intercept and slope are fitted by least squares with a ridge pull of the slope
    towards the prior's (weight 0.1 decade²: it only matters for points within a few tenths of a
    decade of each other). The depth penalty is kept and added back to each α before fitting. The band becomes max(0.02, 2·RMS residual)
    with three or more points, else half the prior's band.
    """
    base = base or prior()
    if not points:
        raise DraftforgeError("no calibration points: give eval reports or JSONL rows with an alpha")
    intercept, slope = _least_squares(points, base, ridge=0.1)
    model = dataclasses.replace(base, intercept=intercept, slope=slope)
    residuals = [p.alpha - model.predict_ratio(p.log_ratio, p.layers).alpha for p in points]
    rmse = math.sqrt(sum(r * r for r in residuals) / len(residuals))
    band = max(0.02, 2.0 * rmse) if len(points) >= 3 else base.band / 2
    return dataclasses.replace(
        model, band=band, source="calibrated", rmse=rmse, points=tuple(points), files=tuple(files)
    )


def _least_squares(
    points: Sequence[CalibrationPoint], base: AcceptanceModel, ridge: float
) -> tuple[float, float]:
    xs = [p.log_ratio for p in points]
    ys = [p.alpha + base.depth_penalty(p.layers) for p in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if max(xs) - min(xs) < 0.1:
        slope = base.slope
    else:
        sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
        # minimise Σ(y − a − b x)² + ridge·(b − b0)²  (a profiled out by centring)
        slope = (sxy + ridge * base.slope) / (sxx + ridge)
    return mean_y - slope * mean_x, slope


def calibrate(paths: Sequence[str | Path], base: AcceptanceModel | None = None) -> AcceptanceModel:
    """Read eval reports (*.json, `draftforge.eval/1`) and JSONL row files and refit the prior."""
    points: list[CalibrationPoint] = []
    for path in paths:
        points.extend(load_points(path))
    return fit(points, base, files=[str(p) for p in paths])


def load_points(path: str | Path) -> list[CalibrationPoint]:
    """Calibration points from one file: an eval report (.json) or JSONL rows (.jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise DraftforgeError(f"calibration file not found: {path}")
    if path.suffix == ".jsonl":
        return _points_from_jsonl(path)
    return [_point_from_eval_report(path)]


_ROW_KEYS = {"alpha", "shape", "params", "layers", "target", "target_shape", "target_params", "note"}


def _points_from_jsonl(path: Path) -> list[CalibrationPoint]:
    problems: list[str] = []
    points: list[CalibrationPoint] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object with alpha, shape or params, and target")
            continue
        try:
            points.append(_point_from_row(row, where))
        except DraftforgeError as exc:
            problems.append(str(exc))
    if problems:
        raise DraftforgeError(f"bad calibration rows in {path}: " + "; ".join(problems))
    if not points:
        raise DraftforgeError(f"{path} has no calibration rows")
    return points


def _point_from_row(row: dict[str, Any], where: str) -> CalibrationPoint:
    unknown = sorted(set(row) - _ROW_KEYS)
    if unknown:
        raise DraftforgeError(
            f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(_ROW_KEYS))}"
        )
    alpha = row.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise DraftforgeError(f"{where}: alpha must be a number in [0, 1], got {alpha!r}")
    draft_size, layers = _draft_size(row, where)
    target_size = _target_size(row, where)
    return CalibrationPoint(math.log10(draft_size / target_size), layers, float(alpha), where)


def _draft_size(row: dict[str, Any], where: str) -> tuple[float, int | None]:
    """Non-embedding size of the draft from `shape` (exact) or `params` (total count, used as is)."""
    if row.get("shape") is not None:
        shape = _shape(row["shape"], f"{where}: shape")
        return float(shape.non_embedding_params()), shape.num_layers
    params = row.get("params")
    if isinstance(params, bool) or not isinstance(params, (int, float)) or params <= 0:
        raise DraftforgeError(f"{where}: give the draft's shape (ModelShape dict) or a positive params count")
    layers = row.get("layers")
    if layers is not None and (not isinstance(layers, int) or layers < 1):
        raise DraftforgeError(f"{where}: layers must be a positive integer, got {layers!r}")
    return float(params), layers


def _target_size(row: dict[str, Any], where: str) -> float:
    if row.get("target_shape") is not None:
        return float(_shape(row["target_shape"], f"{where}: target_shape").non_embedding_params())
    if row.get("target_params") is not None:
        value = row["target_params"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise DraftforgeError(f"{where}: target_params must be a positive number, got {value!r}")
        return float(value)
    spec = row.get("target")
    if not isinstance(spec, str) or not spec:
        raise DraftforgeError(f"{where}: give the target (catalog name), target_shape or target_params")
    from draftforge.catalog import get_target

    try:
        return float(get_target(spec).shape.non_embedding_params())
    except DraftforgeError as exc:
        raise DraftforgeError(f"{where}: {exc}") from None


def _shape(value: Any, where: str) -> ModelShape:
    if not isinstance(value, dict):
        raise DraftforgeError(f"{where} must be a ModelShape dict, got {type(value).__name__}")
    try:
        return ModelShape.from_dict(value)
    except (DraftforgeError, TypeError) as exc:
        raise DraftforgeError(f"{where} is not a valid shape ({exc})") from None


def _point_from_eval_report(path: Path) -> CalibrationPoint:
    """α of one eval report: the mean α over its γ sweep, weighted by iterations (contract 2)."""
    from draftforge.files import read_versioned

    report = read_versioned(path, "draftforge.eval/1")
    where = str(path)
    results = report.get("results")
    if not isinstance(results, list) or not results:
        raise DraftforgeError(f"{where}: eval report has no results to calibrate from")
    total, weight = 0.0, 0.0
    for i, r in enumerate(results):
        alpha = r.get("alpha") if isinstance(r, dict) else None
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise DraftforgeError(f"{where}: results[{i}].alpha must be a number in [0, 1], got {alpha!r}")
        w = float(r.get("iterations") or 1)
        total += w * alpha
        weight += w
    draft, target = report.get("draft") or {}, report.get("target") or {}
    row: dict[str, Any] = {
        "alpha": total / weight,
        "shape": draft.get("shape"),
        "params": draft.get("params"),
    }
    if target.get("shape"):
        row["target_shape"] = target["shape"]
    elif target.get("params"):
        row["target_params"] = target["params"]
    else:
        row["target"] = target.get("spec")
    return _point_from_row(row, where)
