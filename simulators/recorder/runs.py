"""Read run folders into tidy pandas tables, for comparing runs side by side.

    runs = load_runs(["results/ieee33_day__rule__*", "results/other_run"])
    runs.fields                      # config fields that differ between the runs, e.g. ['market', 'seed']
    runs.summaries.groupby("market")["cost_eur"].median()
    runs.series                      # per step: market.csv joined with feeder.csv
    runs.prosumers                   # per step and prosumer: prosumers.csv + battery capacity
    runs.voltages                    # per step and bus: grid.csv

Every table starts with the run id column ``run`` and the differing config fields, so that
``groupby`` does the rest.  A run folder holds config.json and the four CSVs the recorder writes
(simulators/recorder/recorder.py); summary.json is read when present.  A run is marked
``incomplete`` when its summary says so, when it has no summary (it was killed; the metrics are
then computed from its CSVs) or when it recorded fewer steps than its config asks for.

Config fields: the ScenarioConfig fields of config.json (and any other top-level key), nested
dicts flattened as ``policy_options.forecast``; bookkeeping (results folder, run name, progress
bar, plots, verbose) and what is derived from the others (tariff values, prosumer specs) are left out,
and a spec file counts by its file name (the shipped files sit in each checkout's own folder).
A trained actor (``policy_options.checkpoint``) is described by its training run instead of the
checkpoint's path: ``method`` (the algorithm; the policy name for every other run) and
``train_seed``, read from the training run's config.json or else from the folder name
(``<algo>__s<seed>`` of agents.marl.evaluate, ``<scenario>__<algo>__<seed>__<time>`` of
agents.marl.train).
"""

import glob
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from simulators.recorder.report import battery_capacity_kwh, summarize
from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

RUN_FILES = ("config.json", "prosumers.csv", "market.csv", "grid.csv", "feeder.csv")
NOT_COMPARED = ("results_dir", "run_name", "progress", "plots", "verbose", "tariff_values", "prosumer_specs")
"""config.json keys that are bookkeeping or derived from other fields"""
SEED_FIELDS = ("seed", "train_seed")
"""fields whose runs are repetitions of one configuration (aggregated over by scenarios.compare)"""
_TRAIN_RUN_NAMES = (re.compile(r"^(?P<algo>.+)__s(?P<seed>\d+)$"),
                    re.compile(r"^.+?__(?P<algo>[^_].*)__(?P<seed>\d+)__\d{8}-\d{6}"))


@dataclass
class Run:
    """One run folder read back: its config, summary and comparable config fields."""

    path: Path
    config: dict
    summary: dict
    incomplete: bool
    fields: dict
    id: str = ""


def is_run(path):
    """Whether ``path`` is a run folder (config.json and the four CSV tables)."""
    return Path(path).is_dir() and all((Path(path) / name).is_file() for name in RUN_FILES)


def resolve(paths):
    """Run folders named by ``paths`` (folders or glob patterns), in the given order, each once.

    Raises ConfigError naming a pattern that matches nothing or a path that is not a run folder.
    """
    found = []
    for given in [paths] if isinstance(paths, (str, Path)) else list(paths):
        pattern = str(Path(given).expanduser())
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise ConfigError(f"runs: pattern {str(given)!r} matches nothing")
        for match in matches:
            _check_run(Path(match))
            if Path(match).resolve() not in {p.resolve() for p in found}:
                found.append(Path(match))
    if not found:
        raise ConfigError("runs: no run folder given")
    return found


def _check_run(path):
    if not path.exists():
        raise ConfigError(f"runs: {str(path)!r} does not exist")
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if not missing:
        return
    inside = [p for p in (path, path / "cosim") if p.is_dir() and any(is_run(c) for c in p.iterdir())]
    hint = f"; it holds run folders: pass {str(inside[0] / '*')!r}" if inside else ""
    raise ConfigError(f"runs: {str(path)!r} is not a run folder (missing {', '.join(missing)}){hint}")


def read_run(path):
    """Read one run folder (checked with ``resolve`` first) into a Run."""
    path = Path(path)
    config = _read_json(path / "config.json")
    summary_file = path / "summary.json"
    summary = _read_json(summary_file) if summary_file.is_file() else summarize(path)
    days, steps = config.get("days"), summary.get("steps")
    short = isinstance(days, int) and isinstance(steps, int) and steps < days * STEPS_PER_DAY
    incomplete = not summary_file.is_file() or bool(summary.get("incomplete", False)) or short
    return Run(path, config, summary, incomplete, config_fields(config))


def _read_json(path):
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"runs: {str(path)!r} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"runs: {str(path)!r} holds {type(data).__name__}, not a JSON object")
    return data


def config_fields(config):
    """The comparable config fields of a run's config.json (see the module docstring)."""
    options = config.get("policy_options")
    checkpoint = options.get("checkpoint") if isinstance(options, dict) else None
    fields = {}
    for key, value in config.items():
        if key in NOT_COMPARED:
            continue
        if isinstance(value, dict):
            fields.update({f"{key}.{k}": _scalar(v) for k, v in value.items()
                           if not (key == "policy_options" and k == "checkpoint")})
        elif key == "specs" and value != "generate":
            fields[key] = Path(value).name
        else:
            fields[key] = _scalar(value)
        if key == "policy":
            fields["method"], fields["train_seed"] = (training_run(checkpoint) if checkpoint
                                                      else (value, None))
    return fields


def training_run(checkpoint):
    """(algorithm, training seed) of the training run a checkpoint path points into.

    From the run's config.json when it can be read (its ``algo`` and ``seed``), else from the
    folder name; a name in neither form gives ("actor:<name>", None).
    """
    folder = Path(checkpoint)
    folder = folder.parent if folder.suffix == ".pt" else folder
    try:
        saved = json.loads((folder / "config.json").read_text())
        return str(saved["algo"]), int(saved["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for pattern in _TRAIN_RUN_NAMES:
        match = pattern.match(folder.name)
        if match:
            return match["algo"], int(match["seed"])
    return f"actor:{folder.name}", None


def _scalar(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def differing_fields(runs):
    """Names of the config fields whose values are not the same in every run, in config order.

    ``method`` is the policy name or, for trained actors, the algorithm, so of the two only one
    is shown: ``policy`` when no run is a trained actor, else ``method``.
    """
    names = list(dict.fromkeys(k for r in runs for k in r.fields))
    differ = [k for k in names if len({json.dumps(r.fields.get(k), default=str) for r in runs}) > 1]
    redundant = "method" if all(r.fields.get("method") == r.fields.get("policy") for r in runs) else "policy"
    return [k for k in differ if k != redundant]


def _run_ids(paths):
    """Folder names, with as many parent folders as it takes to tell equal names apart."""
    ids = [p.name for p in paths]
    for depth in range(2, max(len(p.resolve().parts) for p in paths) + 1):
        if len(set(ids)) == len(ids):
            break
        ids = ["/".join(p.resolve().parts[-depth:]) if ids.count(i) > 1 else i for p, i in zip(paths, ids)]
    return ids


class Runs:
    """Runs read back for comparison; the tables are read from disk on first use."""

    def __init__(self, runs):
        self.runs = list(runs)
        for run, run_id in zip(self.runs, _run_ids([r.path for r in self.runs])):
            run.id = run_id
        self.fields = differing_fields(self.runs)
        """config fields that differ between the runs; every table has them as columns"""
        self.seed_fields = [f for f in self.fields if f in SEED_FIELDS]

    def _keys(self, run):
        return {"run": run.id, **{f: run.fields.get(f) for f in self.fields}}

    def _table(self, name, extra=None):
        frames = []
        for run in self.runs:
            frame = pd.read_csv(run.path / f"{name}.csv")
            if extra is not None:
                frame = extra(run, frame)
            frames.append(frame.assign(**self._keys(run)))
        table = self._typed(pd.concat(frames, ignore_index=True))
        front = ["run", *self.fields]
        return table[front + [c for c in table.columns if c not in front]]

    def _typed(self, table):
        """Integer fields with gaps (``train_seed`` of runs that have none) as nullable integers, not floats."""
        for f in self.fields:
            values = [r.fields.get(f) for r in self.runs]
            if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
                table[f] = table[f].astype("Int64")
        return table

    @cached_property
    def configs(self):
        """One row per run: every comparable config field (not only the differing ones) and the path."""
        return pd.DataFrame([{"run": r.id, **r.fields, "path": str(r.path)} for r in self.runs])

    @cached_property
    def summaries(self):
        """One row per run: the differing fields, ``incomplete``, every scalar of summary.json and
        the lowest / highest cost of one prosumer (``prosumer_cost_min_eur`` / ``_max_eur``, from its
        ``cost_per_prosumer_eur``: a market moves money between prosumers without changing the total)."""
        return self._typed(pd.DataFrame([{**self._keys(r), "incomplete": r.incomplete, **_scalars(r.summary)}
                                         for r in self.runs]))

    @cached_property
    def series(self):
        """Per run and step: market.csv and feeder.csv side by side (prices, volume, voltage range, losses)."""
        return self._table("market", lambda run, market: market.merge(
            pd.read_csv(run.path / "feeder.csv"), on=["step", "time"], how="outer"))

    @cached_property
    def prosumers(self):
        """Per run, step and prosumer: prosumers.csv plus ``battery_capacity_kwh`` from the saved specs."""
        return self._table("prosumers", lambda run, frame: frame.assign(
            battery_capacity_kwh=frame["prosumer"].map(battery_capacity_kwh(run.config)).fillna(0.0)))

    @cached_property
    def voltages(self):
        """Per run, step and bus: the bus voltage Vm [p.u.] (grid.csv)."""
        return self._table("grid")

    def feeders(self):
        """Feeder name -> run ids on it; runs count as one feeder when network name and bus ids agree
        (a run that recorded no step is on none)."""
        buses = self.voltages.groupby("run", sort=False)["bus"].unique()
        feeders = {}
        for run in (r for r in self.runs if r.id in buses.index):
            name = str(run.fields.get("network"))
            key = (name, tuple(sorted(buses.get(run.id, []))))
            feeders.setdefault(key, []).append(run.id)
        named = {}
        for (name, bus_ids), ids in feeders.items():
            named[name if name not in named else f"{name} ({len(bus_ids)} buses)"] = ids
        return named


def _scalars(summary):
    scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list)) and k != "incomplete"}
    per_prosumer = list(summary.get("cost_per_prosumer_eur", {}).values())
    if per_prosumer:
        scalars.update(prosumer_cost_min_eur=min(per_prosumer), prosumer_cost_max_eur=max(per_prosumer))
    return scalars


def load_runs(paths):
    """Read run folders (paths or glob patterns) into a Runs; raises ConfigError on anything not a run."""
    return Runs(read_run(path) for path in resolve(paths))
