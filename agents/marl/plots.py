"""Figures of an evaluation: learning curves with the critic's fit, test-day cost over training,
and voltage envelopes (agents.marl.evaluate writes them; each reads only finished results)."""

from pathlib import Path

import pandas as pd

PANELS = {"episode_return": "training episodes: return per agent",
          "eval_return": "validation days: return per agent",
          "q_corr": "critic fit: corr(Q, Monte-Carlo return), validation days",
          "q_bias": "critic fit: mean(Q - return) / mean|return|, validation days"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, series_by_method):
    """Mean over runs and min-max band per method, one line each."""
    for method, series in series_by_method.items():
        frame = pd.concat(series, axis=1)
        ax.plot(frame.index, frame.mean(axis=1), label=method)
        ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), alpha=0.2)
    ax.legend(fontsize=7)


def plot_learning_curves(train_dir, path):
    """One panel per PANELS column of every run's progress.csv (runs named <method>__p<p>__s<s>)."""
    plt = _pyplot()
    curves = {key: {} for key in PANELS}
    for progress in sorted(Path(train_dir).glob("*__s*/progress.csv")):
        method = progress.parent.name.split("__")[0]
        df = pd.read_csv(progress)
        for key in PANELS:
            series = df.dropna(subset=[key]).set_index("step")[key] if key in df else pd.Series(dtype=float)
            if len(series):
                curves[key].setdefault(method, []).append(series[~series.index.duplicated(keep="last")])
    shown = [key for key in PANELS if curves[key]] or ["episode_return"]
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.5), squeeze=False)
    for key, ax in zip(shown, axes[0]):
        _band(ax, curves[key])
        ax.set(xlabel="environment steps", title=PANELS[key])
        if key == "q_bias":
            ax.axhline(0.0, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_test_curve(curve, path):
    """Cost on the test days [EUR/day] of each run's actor snapshots against training steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = {}
    for (method, _, _), g in curve.groupby(["method", "pseed", "seed"]):
        series.setdefault(method, []).append(g.set_index("step")["cost_eur"])
    _band(ax, series)
    ax.set(xlabel="environment steps", ylabel="cost on the test days [EUR/day]",
           title="Test-day cost of the actor during training (computed after training; used for no choice)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_envelopes(runs, days, path, bound="perfect_foresight"):
    """One panel per evaluated day (first profile seed): each method's lowest and highest bus voltage."""
    plt = _pyplot()
    from simulators.units import STEP_H, V_MAX_PU, V_MIN_PU

    fig, axes = plt.subplots(1, len(days), figsize=(4 + 4 * len(days), 4.5), sharey=True, squeeze=False)
    first_pseed = runs.pseed.min()
    for day, ax in zip(days, axes[0]):
        at = runs[(runs.day == day) & (runs.method != bound) & (runs.pseed == first_pseed) & runs.run_dir.notna()]
        for _, r in at.sort_values("seed").groupby("method").head(1).iterrows():
            feeder = pd.read_csv(Path(r.run_dir) / "feeder.csv")
            hours = feeder["step"] * STEP_H
            line, = ax.plot(hours, feeder["vm_min_pu"], lw=1, label=r.method)
            ax.plot(hours, feeder["vm_max_pu"], lw=1, color=line.get_color())
        for v in (V_MIN_PU, V_MAX_PU):
            ax.axhline(v, color="red", ls="--", lw=1)
        ax.set(xlabel="hour", title=f"{day} (first seed)")
    axes[0][0].set_ylabel("feeder min and max Vm [p.u.]")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
