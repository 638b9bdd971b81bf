"""Pool the training seeds of evaluation folders made on the very same days into one table.

    python -m agents.marl.pool results/<A> results/<B> --out results/<A>__pooled

Adds seeds to an evaluation without running it again: run ``agents.marl.evaluate`` with the first
folder's days (``--dates``) and other ``--seeds``, then pool.  Every folder must cover the very same days at
every profile seed it holds; the profile seeds may be the same, others (``--scenario-seeds``; each new (profile
seed, day) is one more unit of the paired comparisons) or some of the first folder's.  Each method must have
the same training seeds at every profile seed it was evaluated on (``--seeds`` keeps a common subset of the
trained methods' seeds).
A row (method, profile seed, training seed, day) in several folders is one run seen
twice and counted once if its figures agree (the deterministic baselines and the bound; a training seed
rerun with the same code); if they disagree it is an error, never an average.  The proposed method is the
first algorithm of the first folder.  Writes runs.csv, table.csv, comparisons.csv, energy_by_period.csv
and table.md (agents/marl/report.py) into ``--out``, which must not exist yet.

``--first-wins`` compares a rerun of some methods (a new recipe, in the first folders) with the other methods of
earlier evaluations on the very same units: each method is read from the first folder that holds it alone, and
each later folder adds only the methods no earlier one has (the table's caption names each folder's methods).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from agents.marl import report
from simulators.validation import ConfigError, check_seeds

KEY = ["method", "pseed", "seed", "day"]
FIGURES = ["cost_eur", "voltage_violation_rate", "controllable_rate"]


def read_same_days(folders):
    """The runs.csv of each of ``folders`` (a ConfigError names a folder without one), checked to cover the very
    same days at every profile seed they hold (the profile seeds may be the same, others, or some of them), so
    that per-day pairs across them are pairs."""
    frames = []
    for folder in folders:
        path = Path(folder) / "runs.csv"
        if not path.is_file():
            raise ConfigError(f"folders: {str(folder)!r} has no runs.csv (an agents.marl.evaluate folder expected)")
        frames.append(pd.read_csv(path))
    days = set(frames[0].day.astype(str))
    for folder, frame in zip(folders, frames):
        for pseed, g in frame.groupby("pseed"):
            if set(g.day.astype(str)) != days:
                raise ConfigError(f"folders: {str(folder)!r} covers different (profile seed, day) units than "
                                  f"{str(folders[0])!r} (profile seed {pseed}); use evaluations of the very same "
                                  "days (--days and --split, or --dates) with the same or other --scenario-seeds")
    return frames


def pool_runs(folders, seeds=None, first_wins=False):
    """runs.csv of ``folders`` as one frame, each run once (see the module's docstring); ``seeds`` (iterable of
    int, or None for all) keeps only these training seeds of the trained methods (not of the baselines);
    ``first_wins``: each method from the first folder that holds it alone (``--first-wins``; the frame's
    attrs["sources"] then maps each folder's name to the methods read from it)."""
    frames = [f.assign(folder=Path(d).name) for f, d in zip(read_same_days(folders), folders)]
    sources = {}
    if first_wins:
        seen, kept = set(), []
        for frame, folder in zip(frames, folders):
            kept.append(frame[~frame.method.isin(seen)])
            sources[Path(folder).name] = sorted(set(kept[-1].method) - {report.BOUND})
            seen |= set(frame.method)
        frames = kept
    runs = pd.concat(frames, ignore_index=True)
    if seeds is not None:
        trained = runs.method.str.split("@").str[0].isin(_trained_algos(folders))
        runs = runs[~trained | runs.seed.isin(list(seeds))]
    for key, same in runs[runs.duplicated(KEY, keep=False)].groupby(KEY):
        figures = same[[c for c in FIGURES if c in same]].to_numpy(dtype=float)
        if not np.allclose(figures, figures[0], rtol=1e-9, atol=1e-9, equal_nan=True):
            raise ConfigError(f"folders: {dict(zip(KEY, key))} differs between {sorted(same.folder)}: "
                              f"{same.cost_eur.tolist()} EUR; one run cannot have two results")
    runs = runs.drop_duplicates(KEY).drop(columns="folder").reset_index(drop=True)
    runs.attrs["sources"] = sources
    for method, g in runs[runs.method != report.BOUND].groupby("method"):
        per_pseed = {int(p): sorted(int(s) for s in gp.seed.unique()) for p, gp in g.groupby("pseed")}
        if len({tuple(s) for s in per_pseed.values()}) > 1:  # the paired bootstrap resamples one seed set per unit
            raise ConfigError(f"folders: {method!r} has training seeds {per_pseed} (per profile seed); pool a "
                              "common subset with --seeds")
    return runs


def _algos(config):
    """The trained algorithms of an evaluation's config.json, in its order (the first is the proposed method)."""
    return [a for a in config.get("algos", "").split(",") if a]


def _trained_algos(folders):
    """The trained algorithms named in the folders' config.json (the rest are deterministic baselines)."""
    paths = [Path(folder) / "config.json" for folder in folders]
    return {a for path in paths if path.is_file() for a in _algos(json.loads(path.read_text()))}


def write_pooled(folders, out, n_boot=10000, seeds=None, first_wins=False):
    """Pool ``folders`` into the new folder ``out`` (``seeds``, ``first_wins``: pool_runs); return its path."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"out: {str(out)!r} exists; pooling writes a new folder and overwrites nothing")
    runs = pool_runs(folders, seeds, first_wins)
    algos = _algos(json.loads((Path(folders[0]) / "config.json").read_text()))
    order = [m for a in algos for m in (a, f"{a}@last")]
    order += [m for m in runs.method.unique() if m not in order and m != report.BOUND]
    per_method = {m: sorted(g.seed.unique().tolist()) for m, g in runs.groupby("method") if m != report.BOUND}
    caption = (f"Pooled from {', '.join(Path(f).name for f in folders)} (agents.marl.pool): days "
               f"{', '.join(sorted(runs.day.astype(str).unique()))}; profile seeds "
               f"{', '.join(map(str, sorted(runs.pseed.unique())))}; training seeds per method "
               + "; ".join(f"{m}: {','.join(map(str, s))}" for m, s in per_method.items()) + ".")
    if first_wins:
        caption += " With --first-wins, each method from the first folder holding it: " + "; ".join(
            f"{folder}: {', '.join(methods)}" for folder, methods in runs.attrs["sources"].items() if methods) + "."
    out.mkdir(parents=True)
    runs.to_csv(out / "runs.csv", index=False)
    report.write_tables(runs, order, algos[0] if algos else None, caption, out, n_boot)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="agents.marl.evaluate folders made on the same days")
    parser.add_argument("--out", required=True, help="new folder for the pooled runs.csv, table.md, ...")
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    parser.add_argument("--seeds", default="", help="comma-separated training seeds of the trained methods to keep "
                        "(default: all), e.g. the seeds every profile seed has")
    parser.add_argument("--first-wins", action="store_true", help="read each method from the first folder that "
                        "holds it alone; later folders add only the methods no earlier one has (a rerun of some "
                        "methods)")
    args = parser.parse_args(argv)
    try:
        seeds = check_seeds("seeds", args.seeds) if args.seeds.strip() else None
        out = write_pooled(args.folders, args.out, args.bootstrap, seeds, args.first_wins)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    print((out / "table.md").read_text(), end="")
    return out


if __name__ == "__main__":
    main()
