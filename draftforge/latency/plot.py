"""Plot a profile: latency against depth for several widths (measured points, fitted lines), and
predicted against measured (held-out predictions when the profile has them)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from draftforge.latency.model import FittedLatencyModel, Measurement, Profile


def representative_workload(measurements: tuple[Measurement, ...]) -> tuple[int, int, int]:
    """(batch, context, tokens) of the draft step drawn in the depth panel: smallest batch, 1 token
    if measured, smallest context."""
    batch = min(m.batch_size for m in measurements)
    tokens = 1 if any(m.tokens == 1 for m in measurements) else min(m.tokens for m in measurements)
    context = min(m.context for m in measurements if m.batch_size == batch and m.tokens == tokens)
    return batch, context, tokens


def plot_profile(profile: Profile, out: str | Path, max_widths: int = 6) -> Path:
    """Write a two-panel PNG of `profile` to `out`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = FittedLatencyModel.from_profile(profile)
    batch, context, tokens = representative_workload(profile.measurements)
    points = [
        m for m in profile.measurements if (m.batch_size, m.context, m.tokens) == (batch, context, tokens)
    ]
    by_width: dict[int, list[Measurement]] = defaultdict(list)
    for m in points:
        by_width[m.shape.hidden_size].append(m)
    widths = sorted(by_width)
    if len(widths) > max_widths:  # spread the drawn widths over the measured range
        step = (len(widths) - 1) / (max_widths - 1)
        widths = sorted({widths[round(i * step)] for i in range(max_widths)})

    fig, (ax_depth, ax_pred) = plt.subplots(1, 2, figsize=(12, 5))
    colors = plt.get_cmap("viridis")
    max_layers = max(m.shape.num_layers for m in profile.measurements)
    for i, width in enumerate(widths):
        color = colors(i / max(1, len(widths) - 1))
        ms = by_width[width]
        ax_depth.scatter([m.shape.num_layers for m in ms], [m.median_s * 1e3 for m in ms], color=color, s=18)
        ref = ms[0].shape
        layers = list(range(1, max_layers + 1))
        fitted = [model.forward_time(ref.replace(num_layers=n), batch, context, tokens) * 1e3 for n in layers]
        ax_depth.plot(layers, fitted, color=color, label=f"hidden {width}")
    ax_depth.set_xlabel("layers")
    ax_depth.set_ylabel("forward latency (ms)")
    ax_depth.set_title(
        f"batch {batch}, context {context}, {tokens} token(s): measured (dots), fitted (lines)"
    )
    ax_depth.legend(fontsize=8)

    measured = [m.median_s * 1e3 for m in profile.measurements]
    report = profile.error_report or {}
    held_out = report.get("predicted_s")
    if isinstance(held_out, list) and len(held_out) == len(measured):
        predicted = [p * 1e3 for p in held_out]
        kind = "held-out predictions (grouped k-fold)"
    else:
        predicted = [
            model.forward_time(m.shape, m.batch_size, m.context, m.tokens) * 1e3 for m in profile.measurements
        ]
        kind = "in-sample predictions"
    ax_pred.scatter(measured, predicted, s=10, alpha=0.7)
    lo, hi = min(measured + predicted), max(measured + predicted)
    ax_pred.plot([lo, hi], [lo, hi], color="black", lw=1, label="exact")
    ax_pred.plot([lo, hi], [lo * 1.1, hi * 1.1], color="grey", lw=0.8, ls="--", label="±10%")
    ax_pred.plot([lo, hi], [lo * 0.9, hi * 0.9], color="grey", lw=0.8, ls="--")
    ax_pred.set_xscale("log")
    ax_pred.set_yscale("log")
    ax_pred.set_xlabel("measured (ms)")
    ax_pred.set_ylabel("predicted (ms)")
    within = report.get("within_10pct")
    subtitle = f"; {within:.0%} within ±10%" if isinstance(within, float) else ""
    ax_pred.set_title(f"{kind}{subtitle}")
    ax_pred.legend(fontsize=8)
    fig.suptitle(f"{profile.device_name} {profile.dtype} {profile.runtime} ({len(measured)} measurements)")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
