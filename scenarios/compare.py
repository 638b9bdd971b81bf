"""Compare run folders side by side: a table of the summary metrics and overlay plots.

    python -m scenarios.compare results/ieee33_day__rule__*                 # folders or glob patterns
    python -m scenarios.compare results/<marl-eval>/cosim/* --by method     # aggregate over seeds and days

Runs are grouped into configurations by the config fields that differ between them, seeds
(``seed``, and ``train_seed`` of trained actors) left out, or by the fields given with ``--by``;
the runs of one configuration are aggregated: median and [min, max] of every metric, with their
count.  One folder results/compare__<timestamp>/ holds:

- config.json: the arguments, the resolved run list, the differing fields and the grouping;
- runs.csv: one row per run (differing fields, ``incomplete``, every scalar of its summary.json);
- table.csv: per configuration ``runs``, ``seeds``, ``incomplete_runs`` and <metric>_median /
  _min / _max of every summary metric; table.md: the main metrics of it, readable;
- voltage_envelope.png (feeder min and max Vm), prices_volume.png (P2P prices and traded
  volume), battery_soc.png (the community's stored energy, % of its capacity),
  cost_per_prosumer.png: one line per configuration, median over its runs with a min-max band;
- voltage_by_bus.png (each bus's lowest and highest Vm of the run), only when every run is on
  the same feeder; otherwise it is left out with a note and only feeder-level series are compared.

Every user error (a path that is not a run, an unknown --by field) is one line on stderr, exit
status 2, and no folder is written.
"""

import argparse
import json
import shutil
import sys

import numpy as np
import pandas as pd

from simulators.recorder.recorder import new_run_dir
from simulators.recorder.report import save_figure
from simulators.recorder.runs import SEED_FIELDS, load_runs
from simulators.units import STEP_H, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError

TABLE_METRICS = {
    "cost_eur": ("cost [EUR]", "{:.2f}"),
    "prosumer_cost_min_eur": ("lowest prosumer cost [EUR]", "{:.2f}"),
    "prosumer_cost_max_eur": ("highest prosumer cost [EUR]", "{:.2f}"),
    "voltage_violation_rate": ("voltage violation rate", "{:.2%}"),
    "vm_min_pu": ("Vm min [p.u.]", "{:.4f}"),
    "vm_max_pu": ("Vm max [p.u.]", "{:.4f}"),
    "losses_kwh": ("losses [kWh]", "{:.1f}"),
    "p2p_volume_kwh": ("P2P volume [kWh]", "{:.1f}"),
    "self_sufficiency": ("self-sufficiency", "{:.3f}"),
    "nonconverged_steps": ("non-converged steps", "{:.0f}"),
}
"""summary metrics shown in table.md: header and format (table.csv has every metric)"""


def grouping(runs, by=None):
    """The fields that make a configuration: ``by`` (checked) or the differing non-seed fields."""
    if by is None:
        return [f for f in runs.fields if f not in SEED_FIELDS]
    known = [c for c in runs.configs.columns if c not in ("run", "path")]
    for name in by:
        if name not in known:
            raise ConfigError(f"by: {name!r} is not a config field of these runs (differing: {runs.fields}; "
                              f"all: {known})")
    return list(dict.fromkeys(by))


def configurations(runs, by):
    """Label -> run ids of each configuration, in the order of the runs; the label names the fields."""
    groups = {}
    for run in runs.runs:
        label = ", ".join(f"{f}={run.fields.get(f)}" for f in by) or "all runs"
        groups.setdefault(label, []).append(run.id)
    return groups


def aggregate(runs, by):
    """One row per configuration: its fields, run count, seeds, incomplete count, and median / min /
    max over its runs of every numeric summary metric."""
    summaries = runs.summaries.merge(runs.configs[["run", *[f for f in by if f not in runs.fields]]], on="run")
    metrics = [c for c in summaries.columns if c not in ("run", "incomplete", *runs.fields, *by)
               and pd.api.types.is_numeric_dtype(summaries[c])]
    rows = []
    for ids in configurations(runs, by).values():
        group = summaries.set_index("run").loc[ids]
        row = {f: group[f].iloc[0] for f in by}
        row.update(runs=len(ids), incomplete_runs=int(group["incomplete"].sum()), seeds=_seeds(runs, ids, by))
        for m in metrics:
            row.update({f"{m}_median": group[m].median(), f"{m}_min": group[m].min(), f"{m}_max": group[m].max()})
        rows.append(row)
    return pd.DataFrame(rows)


def _seeds(runs, ids, by):
    """The seeds of the runs ``ids`` aggregated over, e.g. 'seed=0,1,2' ('' when they have none)."""
    parts = []
    for f in (f for f in runs.seed_fields if f not in by):
        values = sorted({r.fields[f] for r in runs.runs if r.id in ids and r.fields.get(f) is not None})
        parts += [f"{f}=" + ",".join(map(str, values))] if values else []
    return "; ".join(parts)


def markdown(table, runs, by, notes):
    """table.md: the configuration fields, run counts and TABLE_METRICS as 'median [min, max]'."""
    metrics = [m for m in TABLE_METRICS if f"{m}_median" in table]
    marked, seeds = table["incomplete_runs"].any(), table["seeds"].astype(bool).any()
    head = [*by, "runs", *(["seeds"] if seeds else []), *(["incomplete"] if marked else []),
            *(TABLE_METRICS[m][0] for m in metrics)]
    lines = [f"# Comparison of {len(runs.runs)} runs", "",
             f"Differing config fields: {', '.join(runs.fields) or 'none'}; configurations by: "
             f"{', '.join(by) or '(all runs together)'}; each metric is the median [min, max] over the "
             "runs of a configuration.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [str(row[f]).replace("|", "\\|") for f in by] + [str(row["runs"])]
        cells += [row["seeds"]] if seeds else []
        cells += [f"{row['incomplete_runs']} of {row['runs']}" if row["incomplete_runs"] else ""] if marked else []
        cells += [_spread(row, m, TABLE_METRICS[m][1]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def _spread(row, metric, fmt):
    med, lo, hi = (row[f"{metric}_{k}"] for k in ("median", "min", "max"))
    show = lambda v: "—" if pd.isna(v) else fmt.format(v)
    return show(med) if row["runs"] == 1 or lo == hi else f"{show(med)} [{show(lo)}, {show(hi)}]"


def compare(paths, by=None, results_dir="results", run_name=""):
    """Compare the runs at ``paths`` (folders or globs) into a new folder; return (folder, table, notes).

    Everything the user gave is checked before the folder is made; a failure while writing
    removes the folder again, so no half-written comparison is left behind.
    """
    runs = load_runs(paths)
    by = grouping(runs, by)
    table = aggregate(runs, by)
    incomplete = [r.id for r in runs.runs if r.incomplete]
    out = new_run_dir(results_dir, run_name, "compare")
    try:
        (out / "config.json").write_text(json.dumps({
            "runs": [str(p) for p in ([paths] if isinstance(paths, str) else paths)],
            "resolved": [str(r.path) for r in runs.runs], "by": by, "differing_fields": runs.fields,
            "results_dir": str(results_dir), "run_name": run_name}, indent=1))
        runs.summaries.to_csv(out / "runs.csv", index=False)
        table.to_csv(out / "table.csv", index=False)
        notes = [f"incomplete runs (included, marked): {', '.join(incomplete)}"] if incomplete else []
        notes += plot_all(runs, configurations(runs, by), out)
        (out / "table.md").write_text(markdown(table, runs, by, notes))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out, table, notes


# ---- the overlay plots -------------------------------------------------------------------------
def plot_all(runs, groups, out):
    """Write the overlay plots into ``out``; return notes on what was left out and why."""
    import matplotlib

    matplotlib.use("Agg")
    notes = []
    for plot in (plot_voltage_envelope, plot_prices_volume, plot_battery_soc, plot_cost_per_prosumer,
                 plot_voltage_by_bus):
        note = plot(runs, groups, out)
        notes += [note] if note else []
    return notes


def _overlay(ax, wide, groups, color_of, steps=False, **style):
    """One line per configuration: the median over its runs (columns of ``wide``, index = x) and,
    with several runs, their min-max band; ``steps``: values hold until the next x (15-minute steps)."""
    for label, ids in groups.items():
        part = wide[[i for i in ids if i in wide.columns]]
        if part.shape[1] == 0:
            continue
        color = color_of[label]
        ax.plot(part.index, part.median(axis=1), color=color, drawstyle="steps-post" if steps else "default",
                **style)
        if part.shape[1] > 1:
            ax.fill_between(part.index, part.min(axis=1), part.max(axis=1), color=color, alpha=0.15, lw=0,
                            step="post" if steps else None)


def _figure(groups, rows=1):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 + 1.8 * rows), sharex=True, squeeze=False)
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    return fig, axes[:, 0], {label: colors[k % len(colors)] for k, label in enumerate(groups)}


def _legend(ax, groups, color_of):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color_of[label], label=f"{label} (n={len(ids)})" if len(ids) > 1 else label)
               for label, ids in groups.items()]
    ax.legend(handles=handles, fontsize=7, loc="best")


def _per_step(frame, column):
    wide = frame.pivot(index="step", columns="run", values=column)
    wide.index = wide.index * STEP_H
    return wide


def plot_voltage_envelope(runs, groups, out):
    fig, (ax,), color_of = _figure(groups)
    for column in ("vm_min_pu", "vm_max_pu"):
        _overlay(ax, _per_step(runs.series, column), groups, color_of, steps=True, lw=1)
    for v in (V_MIN_PU, V_MAX_PU):
        ax.axhline(v, color="red", ls="--", lw=1)
    ax.set(xlabel="hour of run", ylabel="feeder min and max Vm [p.u.]", title="Voltage envelope")
    _legend(ax, groups, color_of)
    save_figure(fig, out / "voltage_envelope.png")


def plot_prices_volume(runs, groups, out):
    fig, (top, bottom), color_of = _figure(groups, rows=2)
    _overlay(top, _per_step(runs.series, "price_buy_eur_per_kwh"), groups, color_of, steps=True, lw=1)
    _overlay(top, _per_step(runs.series, "price_sell_eur_per_kwh"), groups, color_of, steps=True, lw=1, ls="--")
    top.set(ylabel="P2P price [EUR/kWh]", title="P2P buy (solid) and sell (dashed) prices")
    _overlay(bottom, _per_step(runs.series, "traded_kwh"), groups, color_of, steps=True, lw=1)
    bottom.set(xlabel="hour of run", ylabel="P2P volume [kWh/step]")
    _legend(top, groups, color_of)
    save_figure(fig, out / "prices_volume.png")


def plot_battery_soc(runs, groups, out):
    pros = runs.prosumers[runs.prosumers["battery_capacity_kwh"] > 0]
    if pros.empty:
        return "battery_soc.png not written: no run has a battery"
    community = pros.groupby(["run", "step"])[["soc_kwh", "battery_capacity_kwh"]].sum().reset_index()
    community["soc_percent"] = 100 * community["soc_kwh"] / community["battery_capacity_kwh"]
    fig, (ax,), color_of = _figure(groups)
    _overlay(ax, _per_step(community, "soc_percent"), groups, color_of, steps=True, lw=1)
    ax.set(xlabel="hour of run", ylabel="stored energy [% of capacity]", ylim=(0, 100),
           title="Battery SoC of the community (all batteries together)")
    _legend(ax, groups, color_of)
    save_figure(fig, out / "battery_soc.png")


def plot_cost_per_prosumer(runs, groups, out):
    """Each prosumer's cost over the run; by name when every run has the same prosumers, else
    sorted (the distribution) with a note."""
    cost = runs.prosumers.groupby(["run", "prosumer"], sort=False)["cost_eur"].sum().reset_index()
    names = cost.groupby("run", sort=False)["prosumer"].apply(tuple)
    same = names.nunique() == 1
    if same:
        wide = cost.pivot(index="prosumer", columns="run", values="cost_eur").loc[list(names.iloc[0])]
        wide = wide.reset_index(drop=True)
    else:
        wide = pd.DataFrame({run: pd.Series(np.sort(c["cost_eur"].to_numpy()))
                             for run, c in cost.groupby("run", sort=False)})
    fig, (ax,), color_of = _figure(groups)
    _overlay(ax, wide, groups, color_of, lw=1, marker=".")
    ax.axhline(0, color="gray", lw=0.5)
    if same and len(wide) <= 40:
        ax.set_xticks(range(len(wide)), names.iloc[0], rotation=90, fontsize=7)
    ax.set(xlabel="prosumer" if same else "prosumers sorted by cost (the runs have different prosumers)",
           ylabel="cost over the run [EUR] (< 0: earned)", title="Cost per prosumer")
    _legend(ax, groups, color_of)
    save_figure(fig, out / "cost_per_prosumer.png")
    return None if same else "cost_per_prosumer.png: the runs have different prosumers, costs are shown sorted"


def plot_voltage_by_bus(runs, groups, out):
    feeders = runs.feeders()
    if len(feeders) > 1:
        on = "; ".join(f"{name}: {len(ids)} run{'s' * (len(ids) > 1)}" for name, ids in feeders.items())
        return (f"voltage_by_bus.png not written: the runs are on different feeders ({on}); "
                "only feeder-level series are compared")
    fig, (ax,), color_of = _figure(groups)
    extremes = runs.voltages.groupby(["run", "bus"])["vm_pu"].agg(["min", "max"]).reset_index()
    for column in ("min", "max"):
        _overlay(ax, extremes.pivot(index="bus", columns="run", values=column), groups, color_of, lw=1, marker=".")
    for v in (V_MIN_PU, V_MAX_PU):
        ax.axhline(v, color="red", ls="--", lw=1)
    ax.set(xlabel=f"bus of {next(iter(feeders))}",
           ylabel="lowest and highest Vm of the run [p.u.]", title="Voltage by bus")
    _legend(ax, groups, color_of)
    save_figure(fig, out / "voltage_by_bus.png")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None):
    parser = _OneLineParser(prog="python -m scenarios.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or glob patterns (quote them)")
    parser.add_argument("--by", help="comma-separated config fields that make a configuration "
                                     "(default: every differing field except seeds)")
    parser.add_argument("--results-dir", default="results", help="parent folder of the comparison folder")
    parser.add_argument("--run-name", default="", help="comparison folder name (default: compare__<timestamp>)")
    args = parser.parse_args(argv)
    by = [f.strip() for f in args.by.split(",") if f.strip()] if args.by is not None else None
    try:
        out, _, notes = compare(args.runs, by, args.results_dir, args.run_name)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"results: {out}")
    sys.stdout.write((out / "table.md").read_text())
    return out


if __name__ == "__main__":
    main()
