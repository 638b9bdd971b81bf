"""Tables and paired comparisons of an evaluation (agents.marl.evaluate): median and IQR over runs,
per-day paired differences with a two-level bootstrap, and the markdown the README quotes.

A *run* is one trained actor (method, profile seed, training seed); a *unit* is one evaluated
day of one profile seed.  Costs are EUR per day (the mean over a run's days); the gap to the
perfect-foresight bound is (cost - bound) / |bound| of the sums over the run's days, so that
"0 = optimal, larger = worse" also holds on days when the community earns money.  The
controllable rate is the share of steps with every bus inside 0.95..1.05 p.u.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.units import STEPS_PER_DAY

BOUND = "perfect_foresight"
RUN_KEYS = ["method", "pseed", "seed"]
COLUMNS = {  # per-run column: (how a run aggregates its days, markdown header, format)
    "gap": (None, "gap to bound", "{:+.1%}"),
    "cost_eur": ("mean", "cost [EUR/day]", "{:.1f}"),
    "voltage_violation_rate": ("mean", "bus-steps out of band", "{:.2%}"),
    "controllable_rate": ("mean", "controllable rate", "{:.1%}"),
    "losses_kwh": ("mean", "losses [kWh/day]", "{:.0f}"),
    "p2p_volume_kwh": ("mean", "P2P [kWh/day]", "{:.0f}"),
    "train_wall_s": ("max", "training wall [s]", "{:.0f}"),
}
PERIODS = (("00-07", 0, 28), ("07-17", 28, 68), ("17-24", 68, 96))
"""periods of the day of energy_by_period: (name, first step, end step) in 15-minute steps; night, PV hours, evening"""
ENERGY = {"grid_buy_kwh": "grid bought", "grid_sell_kwh": "grid sold", "p2p_buy_kwh": "P2P traded"}
"""prosumers.csv columns summed by energy_by_period (P2P counted once, on the buying side) and their headers"""
PAIRED = {"cost_eur": ("Δ cost [EUR/day]", 1.0, "{:+.1f}"), "voltage_violation_rate": ("Δ out of band [pp]", 100, "{:+.2f}"),
          "controllable_rate": ("Δ controllable [pp]", 100, "{:+.1f}")}


def per_run(runs):
    """One row per run: its days aggregated (COLUMNS) and its gap to the bound of the same days."""
    bound = runs[runs.method == BOUND].set_index(["pseed", "day"])["cost_eur"]
    learned = runs[runs.method != BOUND]
    rows = []
    for key, g in learned.groupby(RUN_KEYS, sort=False):
        row = dict(zip(RUN_KEYS, key), days=len(g))
        for col, (how, _, _) in COLUMNS.items():
            if how and col in g:
                row[col] = g[col].agg(how)
        b = bound.loc[[(key[1], d) for d in g.day]].sum()
        row["gap"] = (g.cost_eur.sum() - b) / abs(b)
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(runs, order=()):
    """Per method: runs, median and inter-quartile range over runs of every COLUMNS entry."""
    table = []
    ranked = {m: i for i, m in enumerate(order)}
    for method, g in sorted(per_run(runs).groupby("method"), key=lambda kv: (ranked.get(kv[0], 99), kv[0])):
        row = {"method": method, "runs": len(g), "days": int(g.days.iloc[0])}
        for col in COLUMNS:
            values = g[col].dropna() if col in g else pd.Series(dtype=float)
            row[f"{col}_median"] = values.median() if len(values) else np.nan
            row[f"{col}_q25"] = values.quantile(0.25) if len(values) else np.nan
            row[f"{col}_q75"] = values.quantile(0.75) if len(values) else np.nan
        table.append(row)
    return pd.DataFrame(table)


def paired(runs, method, other, metric="cost_eur", n_boot=10000, seed=0):
    """Mean per-unit difference ``method - other`` of ``metric`` with a 95 % two-level bootstrap CI.

    Units (profile seed, day) and, within each, each method's runs are resampled with
    replacement, so the interval holds both the day-to-day and the seed-to-seed spread.
    Returns dict: diff, lo, hi, rel (diff / the other's mean), units.
    """
    a, b = (_unit_matrix(runs, m, metric) for m in (method, other))
    units = a.index.intersection(b.index)
    if not len(units):
        raise ValueError(f"paired: {method!r} and {other!r} share no evaluated day")
    a, b = a.loc[units].to_numpy(), b.loc[units].to_numpy()
    rng = np.random.default_rng(seed)
    u = rng.integers(len(units), size=(n_boot, len(units)))
    mean_a = _resampled_seed_mean(a, u, rng)
    mean_b = _resampled_seed_mean(b, u, rng)
    diffs = (mean_a - mean_b).mean(1)
    point = float(np.nanmean(a, 1).mean() - np.nanmean(b, 1).mean())
    base = float(np.nanmean(b, 1).mean())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"diff": point, "lo": float(lo), "hi": float(hi), "rel": point / abs(base) if base else np.nan,
            "units": len(units)}


def _unit_matrix(runs, method, metric):
    """(units x runs) table of ``metric``: rows (pseed, day), columns the method's training seeds."""
    g = runs[runs.method == method]
    if g.empty:
        raise ValueError(f"paired: no rows of method {method!r}")
    return g.pivot_table(index=["pseed", "day"], columns="seed", values=metric, aggfunc="first")


def _resampled_seed_mean(m, units, rng):
    """For each bootstrap row: per resampled unit, the mean over runs drawn with replacement."""
    n_boot, n_units = units.shape
    cols = rng.integers(m.shape[1], size=(n_boot, n_units, m.shape[1]))
    return np.nanmean(m[units[..., None], cols], axis=2)


def comparisons(runs, method, others, n_boot=10000, seed=0):
    """``method`` against each of ``others``: PAIRED metrics' differences and CIs, one row per other."""
    rows = []
    for other in others:
        row = {"method": method, "other": other}
        for metric in PAIRED:
            if metric not in runs or runs.loc[runs.method == other, metric].isna().all():
                continue
            for k, v in paired(runs, method, other, metric, n_boot, seed).items():
                row[f"{metric}_{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def energy_by_period(runs, folder, periods=PERIODS):
    """Per method: the community's grid purchases, grid sales and P2P trades [kWh/day] in each period of the
    day, mean over its co-simulated days (the rows of runs.csv with a run_dir; each run's prosumers.csv, looked
    up under ``folder``/cosim first so that a moved evaluation folder still reads).  Where a learned method
    loses to the expert, this says when: the gap of a day's cost is made of these energies at the tariffs."""
    rows = []
    for r in (runs.dropna(subset=["run_dir"]) if "run_dir" in runs else runs.iloc[:0]).itertuples():
        path = Path(folder) / "cosim" / Path(r.run_dir).name / "prosumers.csv"
        path = path if path.is_file() else Path(r.run_dir) / "prosumers.csv"
        p = pd.read_csv(path, usecols=["step", *ENERGY])
        step, days = p.step % STEPS_PER_DAY, p.step.max() // STEPS_PER_DAY + 1
        row = {"method": r.method}
        for name, lo, hi in periods:
            inside = (step >= lo) & (step < hi)
            row.update({f"{col} {name}": p.loc[inside, col].sum() / days for col in ENERGY})
        rows.append(row)
    columns = ["method", *(f"{col} {name}" for col in ENERGY for name, _, _ in periods)]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows).groupby("method", sort=False).mean().reset_index()[columns]


def energy_markdown(energy, periods=PERIODS):
    """The energy_by_period table in markdown: one row per method, kWh/day."""
    names = [name for name, _, _ in periods]
    lines = ["Energy by period of the day [kWh/day], mean over each method's co-simulated days "
             "(energy_by_period.csv):", "",
             "| method | " + " | ".join(f"{ENERGY[col]} {n}" for col in ENERGY for n in names) + " |",
             "|---|" + "---|" * (len(ENERGY) * len(names))]
    for _, r in energy.iterrows():
        lines.append(f"| {r['method']} | " + " | ".join(f"{r[f'{col} {n}']:.0f}" for col in ENERGY for n in names)
                     + " |")
    return "\n".join(lines) + "\n"


def write_tables(runs, order, proposed, caption, out, n_boot=10000):
    """table.csv, comparisons.csv (``proposed`` against every other method of ``order``), energy_by_period.csv
    and table.md (caption, the summary, the paired comparisons, the energy table) of ``runs`` into ``out``."""
    out = Path(out)
    table = summarize(runs, order)
    table.to_csv(out / "table.csv", index=False)
    others = [m for m in order if m != proposed and m in set(runs.method)]
    comparison = comparisons(runs, proposed, others, n_boot) if proposed in set(runs.method) and others else None
    if comparison is not None:
        comparison.to_csv(out / "comparisons.csv", index=False)
    energy = energy_by_period(runs, out)
    energy.to_csv(out / "energy_by_period.csv", index=False)
    (out / "table.md").write_text(markdown(table, comparison, caption) + "\n" + energy_markdown(energy))


def markdown(table, comparison, caption):
    """table.md: the summary table, then the paired comparisons of the proposed method."""
    cols = [c for c in COLUMNS if f"{c}_median" in table and table[f"{c}_median"].notna().any()]
    lines = [caption, "", "| method | runs | " + " | ".join(COLUMNS[c][1] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [_median_iqr(r, c, COLUMNS[c][2]) for c in cols]
        lines.append(f"| {r['method']} | {r['runs']} | " + " | ".join(cells) + " |")
    if comparison is not None and len(comparison):
        metrics = [m for m in PAIRED if f"{m}_diff" in comparison]
        intro = (f"Paired per-day differences of {comparison.method.iloc[0]} against each other method (mean over "
                 "evaluated days, 95 % bootstrap CI over days and seeds; negative cost = cheaper):")
        lines += ["", intro, "",
                  "| against | " + " | ".join(PAIRED[m][0] for m in metrics) + " | Δ cost [%] |",
                  "|---|" + "---|" * (len(metrics) + 1)]
        for _, r in comparison.iterrows():
            cells = [_ci(r, m) for m in metrics]
            rel = r.get("cost_eur_rel")
            lines.append(f"| {r['other']} | " + " | ".join(cells) + f" | {'—' if pd.isna(rel) else f'{rel:+.2%}'} |")
    return "\n".join(lines) + "\n"


def _median_iqr(row, col, fmt):
    med = row.get(f"{col}_median")
    if med is None or pd.isna(med):
        return "—"
    q25, q75 = row[f"{col}_q25"], row[f"{col}_q75"]
    return fmt.format(med) if q25 == q75 else f"{fmt.format(med)} [{fmt.format(q25)}, {fmt.format(q75)}]"


def _ci(row, metric):
    _, scale, fmt = PAIRED[metric]
    if pd.isna(row.get(f"{metric}_diff")):
        return "—"
    d, lo, hi = (row[f"{metric}_{k}"] * scale for k in ("diff", "lo", "hi"))
    return f"{fmt.format(d)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def main(argv=None):
    """Write energy_by_period.csv of an evaluation folder (also one run before the table held it) and print it."""
    parser = argparse.ArgumentParser(description="energy by period of the day of an agents.marl.evaluate folder")
    parser.add_argument("folder", help="an evaluation folder (with runs.csv)")
    folder = Path(parser.parse_args(argv).folder)
    if not (folder / "runs.csv").is_file():
        raise SystemExit(f"error: folder: {str(folder)!r} has no runs.csv (not a finished evaluation)")
    energy = energy_by_period(pd.read_csv(folder / "runs.csv"), folder)
    energy.to_csv(folder / "energy_by_period.csv", index=False)
    print(energy_markdown(energy), end="")
    return energy


if __name__ == "__main__":
    main()
