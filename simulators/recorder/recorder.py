"""Run folder writer: time series as CSV rows flushed every step, then summary and plots.

The files are appended to and flushed after every step, so a run that crashes half-way
leaves every row recorded so far readable.  Nothing here imports mosaik: the co-simulation's
RecorderSim and the training environment's evaluation write through the same class.

Tables (one row per step and prosumer / step / step and bus):
- prosumers.csv: PROSUMER_COLUMNS
- market.csv:    MARKET_COLUMNS
- grid.csv:      GRID_COLUMNS (per bus voltage)
- feeder.csv:    FEEDER_COLUMNS (per step power-flow outcome)
"""

import csv
import datetime as dt
from pathlib import Path

import numpy as np

PROSUMER_COLUMNS = (
    "step", "time", "prosumer", "bus", "load_kw", "pv_kw", "curtailed_kw", "pv_q_kvar", "battery_kw",
    "soc_kwh", "gen_kw", "cl_kw", "cl_unserved_kwh", "net_kw", "net_kvar", "bid_kwh",
    "bid_price_eur_per_kwh", "p2p_buy_kwh", "p2p_sell_kwh", "grid_buy_kwh", "grid_sell_kwh",
    "market_cost_eur", "device_cost_eur", "cost_eur",
)
MARKET_COLUMNS = (
    "step", "time", "mechanism", "price_buy_eur_per_kwh", "price_sell_eur_per_kwh",
    "tariff_buy_eur_per_kwh", "tariff_sell_eur_per_kwh", "supply_kwh", "demand_kwh", "traded_kwh",
)
GRID_COLUMNS = ("step", "time", "bus", "vm_pu")
FEEDER_COLUMNS = ("step", "time", "converged", "losses_mw", "p_slack_mw", "vm_min_pu", "vm_max_pu",
                  "loading_max_percent")


def new_run_dir(results_dir, run_name, *name_parts):
    """Create and return ``results_dir/<run_name>`` or, without a name,
    ``results_dir/<part1>__<part2>__...__<timestamp>``; an existing non-empty folder is refused
    so that nothing already written is overwritten."""
    from simulators.validation import ConfigError

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = Path(results_dir) / (run_name or "__".join([*map(str, name_parts), stamp]))
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run_name: folder {path} exists and is not empty; choose another name")
    path.mkdir(parents=True, exist_ok=True)
    return path


class RunRecorder:
    """Append-only writer of the four tables of one run folder."""

    def __init__(self, run_dir, prosumer_names, prosumer_buses, bus_ids):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.prosumer_names = list(prosumer_names)
        self.prosumer_buses = [int(b) for b in prosumer_buses]
        self.bus_ids = [int(b) for b in bus_ids]
        self._files, self._writers = {}, {}
        for table, columns in (("prosumers", PROSUMER_COLUMNS), ("market", MARKET_COLUMNS),
                               ("grid", GRID_COLUMNS), ("feeder", FEEDER_COLUMNS)):
            fh = open(self.run_dir / f"{table}.csv", "w", newline="")
            writer = csv.writer(fh)
            writer.writerow(columns)
            self._files[table], self._writers[table] = fh, writer
        self.steps = 0

    def record(self, step, time, prosumers, market, vm_pu, feeder):
        """Write one step.

        prosumers: dict column -> array (N,) in PROSUMER_COLUMNS order of prosumers
        market:    dict column -> scalar (MARKET_COLUMNS without step/time)
        vm_pu:     array (n_bus,) ordered like bus_ids (NaN when the power flow failed)
        feeder:    dict column -> scalar (FEEDER_COLUMNS without step/time)
        """
        cols = PROSUMER_COLUMNS[4:]
        data = np.column_stack([np.asarray(prosumers[c], dtype=float) for c in cols])
        w = self._writers["prosumers"]
        for i, name in enumerate(self.prosumer_names):
            w.writerow([step, time, name, self.prosumer_buses[i], *(_fmt(v) for v in data[i])])
        self._writers["market"].writerow([step, time, *(_fmt(market[c]) for c in MARKET_COLUMNS[2:])])
        g = self._writers["grid"]
        for bus, vm in zip(self.bus_ids, vm_pu):
            g.writerow([step, time, bus, _fmt(vm)])
        self._writers["feeder"].writerow([step, time, *(_fmt(feeder[c]) for c in FEEDER_COLUMNS[2:])])
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
