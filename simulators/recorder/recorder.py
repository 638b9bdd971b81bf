"""Run folder writer: time series as CSV rows flushed every step, then summary and plots.

The files are appended to and flushed after every step, so a run that crashes half-way
leaves every row recorded so far readable.  Nothing here imports mosaik: the co-simulation's
RecorderSim and the training environment's evaluation write through the same class.

Tables (one row per step and prosumer / step / step and bus):
- prosumers.csv: PROSUMER_KEYS + prosumer_values() (one column per recorded output of the
                 prosumer and participant tables of simulators/tables.py, then the total cost)
- market.csv:    MARKET_COLUMNS
- grid.csv:      GRID_COLUMNS (per bus voltage)
- feeder.csv:    FEEDER_COLUMNS (per step power-flow outcome)
"""

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from simulators.tables import GRID, MARKET, PARTICIPANT, prosumer_sim

PROSUMER_KEYS = ("step", "time", "prosumer", "bus")


def prosumer_values():
    """Value columns of prosumers.csv: the recorded outputs of the prosumer simulator's table (every
    registered device type's included), of its market participant, and the total cost."""
    pros = prosumer_sim().models[0]
    return (*(a.recorder_column for a in pros.recorded()), *(a.recorder_column for a in PARTICIPANT.recorded()),
            "cost_eur")


PROSUMER_COLUMNS = PROSUMER_KEYS + prosumer_values()
"""prosumers.csv of the built-in device types"""
MARKET_VALUES = tuple(a.recorder_column for a in MARKET.recorded())
MARKET_COLUMNS = ("step", "time", *MARKET_VALUES)
GRID_COLUMNS = ("step", "time", "bus", "vm_pu")
FEEDER_VALUES = tuple(a.recorder_column for a in GRID.recorded())
FEEDER_COLUMNS = ("step", "time", *FEEDER_VALUES)


def new_run_dir(results_dir, run_name, *name_parts):
    """Create and return ``results_dir/<run_name>`` or, without a name,
    ``results_dir/<part1>__<part2>__...__<timestamp>``; an existing non-empty folder is refused
    so that nothing already written is overwritten."""
    from simulators.validation import ConfigError

    results = Path(results_dir)
    if results.exists() and not results.is_dir():
        raise ConfigError(f"results_dir: {str(results)!r} is a file, not a folder")
    if run_name and (Path(run_name).name != run_name or run_name in (".", "..")):
        raise ConfigError(f"run_name: {run_name!r} must be a plain folder name (no path separators)")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = results / (run_name or "__".join([*map(str, name_parts), stamp]))
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"run_name: {str(path)!r} exists and is not an empty folder; choose another name")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"results_dir: cannot create {str(path)!r} ({exc.strerror or exc})") from None
    return path


class RunRecorder:
    """Append-only writer of the four tables of one run folder."""

    def __init__(self, run_dir, prosumer_names, prosumer_buses, bus_ids):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.prosumer_names = list(prosumer_names)
        self.prosumer_values = prosumer_values()
        self.prosumer_buses = [int(b) for b in prosumer_buses]
        self.bus_ids = [int(b) for b in bus_ids]
        self._files, self._writers = {}, {}
        for table, columns in (("prosumers", PROSUMER_KEYS + self.prosumer_values), ("market", MARKET_COLUMNS),
                               ("grid", GRID_COLUMNS), ("feeder", FEEDER_COLUMNS)):
            fh = open(self.run_dir / f"{table}.csv", "w", newline="")
            writer = csv.writer(fh)
            writer.writerow(columns)
            self._files[table], self._writers[table] = fh, writer
        self.steps = 0

    def record(self, step, time, prosumers, market, vm_pu, feeder):
        """Write one step.

        prosumers: dict column -> array (N,) over prosumers, every column of prosumer_values()
        market:    dict column -> scalar (MARKET_COLUMNS without step/time)
        vm_pu:     array (n_bus,) ordered like bus_ids (NaN when the power flow failed)
        feeder:    dict column -> scalar (FEEDER_COLUMNS without step/time)
        """
        data = np.column_stack([np.asarray(prosumers[c], dtype=float) for c in self.prosumer_values])
        w = self._writers["prosumers"]
        for i, name in enumerate(self.prosumer_names):
            w.writerow([step, time, name, self.prosumer_buses[i], *(_fmt(v) for v in data[i])])
        self._writers["market"].writerow([step, time, *(_fmt(market[c]) for c in MARKET_VALUES)])
        g = self._writers["grid"]
        for bus, vm in zip(self.bus_ids, vm_pu):
            g.writerow([step, time, bus, _fmt(vm)])
        self._writers["feeder"].writerow([step, time, *(_fmt(feeder[c]) for c in FEEDER_VALUES)])
        for fh in self._files.values():
            fh.flush()
        self.steps += 1

    def close(self):
        for fh in self._files.values():
            fh.close()


def _fmt(v):
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return f"{float(v):.9g}"
