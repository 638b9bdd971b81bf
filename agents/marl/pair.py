"""Paired comparison of the same methods across two evaluation folders (e.g. two demonstration sources).

    python -m agents.marl.pair results/<evaluation A> results/<evaluation B> --labels llm reference

Both folders must come from ``agents.marl.evaluate`` with the same days, seeds and profile seeds
(only what differs between them is compared, e.g. ``--demo-experts``).  For every learned method
present in both, the per-day differences A - B of cost, out-of-band rate and controllable rate
are averaged with the two-level bootstrap CI of agents/marl/report.py (days and seeds resampled).
"""

import argparse

import pandas as pd

from agents.marl.pool import read_same_days
from agents.marl.report import BOUND, PAIRED, paired
from simulators.validation import ConfigError


def compare(folder_a, folder_b, labels=("A", "B"), n_boot=10000):
    """DataFrame: one row per method in both folders, the paired differences A - B with CIs."""
    runs = dict(zip(labels, read_same_days([folder_a, folder_b])))
    methods = [m for m in runs[labels[0]]["method"].unique() if m != BOUND and m in set(runs[labels[1]]["method"])]
    rows = []
    for method in methods:
        both = pd.concat([r.query("method == @method").assign(method=f"{method} [{label}]")
                          for label, r in runs.items()])
        row = {"method": method, "runs": f"{(runs[labels[0]].method == method).sum()} / "
                                          f"{(runs[labels[1]].method == method).sum()}"}
        for metric, (name, scale, fmt) in PAIRED.items():
            if both[metric].isna().all():
                continue
            p = paired(both, f"{method} [{labels[0]}]", f"{method} [{labels[1]}]", metric, n_boot)
            row[name] = f"{fmt.format(scale * p['diff'])} [{fmt.format(scale * p['lo'])}, {fmt.format(scale * p['hi'])}]"
            if metric == "cost_eur":
                row["Δ cost [%]"] = f"{100 * p['rel']:+.2f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table):
    """The table as markdown (one row per method)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs=2, help="two agents.marl.evaluate folders (A, B)")
    parser.add_argument("--labels", nargs=2, default=["A", "B"], help="names of A and B in the table")
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    try:
        table = compare(*args.folders, labels=tuple(args.labels), n_boot=args.bootstrap)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"Paired per-day differences {args.labels[0]} - {args.labels[1]} (mean, 95 % bootstrap CI over days "
          "and seeds; negative cost = cheaper):\n")
    print(markdown(table))
    return table


if __name__ == "__main__":
    main()
