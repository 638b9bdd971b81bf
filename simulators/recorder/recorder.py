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

Numbers are written with 9 significant digits (shortest form: ``0.00001``, ``3``, ``nan``),
strings in double quotes, booleans as 0/1; ``pandas.read_csv`` reads every table as is.  A
step's rows are formatted by pyarrow's C++ CSV writer: at 5000 prosumers Python's csv module
took ~5x longer than the whole rest of a grouped co-simulation step.
"""

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

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
        self._names = pa.array(self.prosumer_names, pa.string())
        self._files = {}
        for table, columns in (("prosumers", PROSUMER_KEYS + self.prosumer_values), ("market", MARKET_COLUMNS),
                               ("grid", GRID_COLUMNS), ("feeder", FEEDER_COLUMNS)):
            fh = open(self.run_dir / f"{table}.csv", "wb")
            fh.write((",".join(columns) + "\n").encode())
            self._files[table] = fh
        self.steps = 0

    def record(self, step, time, prosumers, market, vm_pu, feeder):
        """Write one step.

        prosumers: dict column -> array (N,) over prosumers, every column of prosumer_values()
        market:    dict column -> scalar (MARKET_COLUMNS without step/time)
        vm_pu:     array (n_bus,) ordered like bus_ids (NaN when the power flow failed)
        feeder:    dict column -> scalar (FEEDER_COLUMNS without step/time)
        """
        n, n_bus = len(self.prosumer_names), len(self.bus_ids)
        self._write("prosumers", PROSUMER_KEYS + self.prosumer_values, n, step, time,
                    {"prosumer": self._names, "bus": self.prosumer_buses, **prosumers})
        self._write("market", MARKET_COLUMNS, 1, step, time, {c: [market[c]] for c in MARKET_VALUES})
        self._write("grid", GRID_COLUMNS, n_bus, step, time, {"bus": self.bus_ids, "vm_pu": vm_pu})
        self._write("feeder", FEEDER_COLUMNS, 1, step, time, {c: [feeder[c]] for c in FEEDER_VALUES})
        for fh in self._files.values():
            fh.flush()
        self.steps += 1

    def _write(self, table, columns, rows, step, time, values):
        arrays = [pa.array(np.full(rows, int(step), dtype=np.int64)), pa.array([str(time)] * rows, pa.string())]
        arrays += [_column(values[c], rows) for c in columns[2:]]
        pa_csv.write_csv(pa.Table.from_arrays(arrays, names=list(columns)), self._files[table],
                         write_options=_NO_HEADER)

    def close(self):
        for fh in self._files.values():
            fh.close()


_NO_HEADER = pa_csv.WriteOptions(include_header=False)


def _column(values, rows):
    """One column as a pyarrow array: strings as they are, booleans as 0/1, numbers rounded to 9
    significant digits (so the shortest decimal form pyarrow writes is what '%.9g' gave)."""
    if isinstance(values, pa.Array):
        return values
    a = np.asarray(values)
    if a.dtype.kind in "USO":
        return pa.array([str(v) for v in a.ravel()], pa.string())
    if a.dtype.kind == "b":
        return pa.array(a.astype(np.int64))
    if a.dtype.kind in "iu":
        return pa.array(a.astype(np.int64))
    return pa.array(significant(a.astype(float), 9))


def significant(x, digits):
    """``x`` (array) rounded to ``digits`` significant decimal digits; NaN, inf and 0 unchanged."""
    x = np.array(x, dtype=float)
    mag = np.abs(x)
    finite = np.isfinite(x) & (mag > 0)
    exp = digits - 1 - np.floor(np.log10(np.where(finite, mag, 1.0)))
    # scale by a power of ten that doubles hold exactly (10^0..10^22: multiply for small numbers,
    # divide for large), round to an integer, undo; values that need more scaling (|x| < 1e-14
    # or > 1e31 at 9 digits, rare here) go through Python's formatting
    fast = finite & (np.abs(exp) <= 22)
    up, down = 10.0 ** np.clip(exp, 0, 22), 10.0 ** np.clip(-exp, 0, 22)
    x[fast] = (np.round(x * up / down) * down / up)[fast]
    for i in np.flatnonzero(finite & ~fast):
        x[i] = float(f"{x[i]:.{digits}g}")
    return x
