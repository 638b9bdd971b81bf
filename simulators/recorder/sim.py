"""mosaik adapter for the recorder: gathers every simulator's data of a step into RunRecorder.

Feeder-level values come from the entities listed in ``layout["feeder"]`` (our Grid entity, or
e.g. mosaik-pandapower-2's ExternalGrid and Line entities); several sources of one attribute
are reduced (FEEDER_REDUCE).  What no source gives is derived from the buses when it can be:
``converged`` = every bus voltage finite, Vm_min / Vm_max over the buses, losses = minus the sum
of the buses' net demand 'P_bus[MW]' (slack bus included); otherwise it is recorded as NaN.

Many entities can also arrive as one table per source (TABLES: a prosumer simulator's
``prosumers``, the market's ``participants``, the grid's ``buses``): a dict of columns keyed by
the same attribute names as the per-entity outputs, plus the rows' entity ids ("eid", made full
ids with the source's simulator id) or bus indices ("bus").  Both ways give the same rows;
tables keep mosaik's per-value cost off large scenarios.
"""

import datetime as dt

import mosaik_api_v3
import numpy as np

from simulators.attrs import check_unknown, meta
from simulators.recorder.recorder import RunRecorder
from simulators.tables import GRID, MARKET, PARTICIPANT, RECORDER_SIM, prosumer_sim
from simulators.validation import ConfigError

FEEDER_REDUCE = {"converged": all, "losses[MW]": sum, "P_slack[MW]": sum, "Vm_min[pu]": min, "Vm_max[pu]": max,
                 "loading_max[%]": max}
"""how the values of several feeder sources combine (one source: its value unchanged)"""
TABLES = {"prosumers": "prosumer", "participants": "participant", "buses": "bus"}
"""table input attr -> the role of its rows"""
META = meta(RECORDER_SIM, any_inputs=("Recorder",))


def sources():
    """role -> {source attribute: (recorder column, factor to the column's unit)} from the adapters' tables."""
    tables = {"prosumer": prosumer_sim().models[0], "participant": PARTICIPANT, "market": MARKET, "grid": GRID}
    return {role: {a.name: (a.recorder_column, 1.0 / a.factor) for a in t.recorded()} for role, t in tables.items()}


class RecorderSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.recorder = None

    def init(self, sid, time_resolution=1.0, step_size=900):
        self.step_size = step_size
        self.sources = sources()
        return self.meta

    def create(self, num, model, run_dir=None, layout=None, start=None, **unknown):
        """``layout`` maps each connected source's full id to its role:
        {"prosumer": {full_id: name}, "participant": {full_id: name}, "bus": {full_id: bus},
         "market": full_id, "feeder": [full_id, ...]}, optionally "buses": [bus index, ...], the
        buses of grid.csv when they come as a 'buses' table (default: the values of "bus");
        ``start`` is the ISO time of mosaik time 0."""
        check_unknown("Recorder create", unknown, RECORDER_SIM.models[0].params)
        if num != 1 or self.recorder is not None:
            raise ConfigError("Recorder: a RecorderSim holds exactly one Recorder")
        if not run_dir or not isinstance(start, str):
            raise ConfigError("Recorder create: run_dir and start (ISO time of mosaik time 0) are required")
        missing = sorted({"prosumer", "participant", "bus", "market", "feeder"} - set(layout or {}))
        if missing:
            raise ConfigError(f"layout: missing key(s) {missing} (see RecorderSim.create)")
        self.layout = layout
        try:
            self.start = dt.datetime.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"start: {start!r} is not an ISO time") from None
        names = list(layout["prosumer"].values())
        for role in ("prosumer", "participant"):
            given = list(layout[role].values())
            twice = sorted({n for n in given if given.count(n) > 1})
            if twice:
                raise ConfigError(f"layout[{role!r}]: prosumer(s) {twice} come from more than one entity: duplicate "
                                  "entity ids (give every prosumer simulator instance its own agent_ids)")
        self.prosumer_index = {name: i for i, name in enumerate(names)}
        self.bus_index = {fid: i for i, fid in enumerate(layout["bus"])}
        self.feeder_sources = set(layout["feeder"])
        buses = list(layout.get("buses") or layout["bus"].values())
        self.bus_position = {int(b): i for i, b in enumerate(buses)}
        self.rows = {}  # (role, table source full id) -> (its row ids, positions), see _positions / _bus_rows
        specs_bus = layout.get("prosumer_bus", {})
        self.recorder = RunRecorder(run_dir, names, [specs_bus.get(n, -1) for n in names], buses)
        return [{"eid": "Recorder", "type": model}]

    def step(self, time, inputs, max_advance):
        data = inputs.get("Recorder", {})
        n = len(self.prosumer_index)
        pros = {c: np.zeros(n) for c in self.recorder.prosumer_values}
        for role in ("prosumer", "participant"):
            for attr, (col, factor) in self.sources[role].items():
                for src, value in data.get(attr, {}).items():
                    name = self.layout[role].get(src)
                    if name is not None:
                        pros[col][self.prosumer_index[name]] = np.nan if value is None else float(value) * factor
        for attr in ("prosumers", "participants"):
            for src, table in data.get(attr, {}).items():
                self._take_table(TABLES[attr], src, table, pros)
        pros["cost_eur"] = pros["market_cost_eur"] + pros["device_cost_eur"]
        market = self._scalars("market", data)
        vm = self._per_bus("Vm[pu]", data)
        feeder = self._feeder(data, vm)
        stamp = (self.start + dt.timedelta(seconds=time)).strftime("%Y-%m-%d %H:%M")
        self.recorder.record(time // self.step_size, stamp, pros, market, vm, feeder)
        return time + self.step_size

    def _take_table(self, role, src, table, columns):
        """Write a table's columns into ``columns`` (recorder column -> (N,) array) at its rows."""
        if table is None:  # the source has not stepped yet
            return
        pos = self._positions(role, src, table["eid"])
        for attr, (col, factor) in self.sources[role].items():
            if attr in table:
                columns[col][pos] = np.asarray(table[attr], dtype=float) * factor

    def _positions(self, role, src, eids):
        """Positions (in our prosumer order) of a table's rows, cached per source."""
        cached = self.rows.get((role, src))
        if cached is None or cached[0] != eids:
            sid = src.rsplit(".", 1)[0]
            names = [self.layout[role][f"{sid}.{eid}"] for eid in eids]
            cached = self.rows[(role, src)] = (list(eids), np.array([self.prosumer_index[n] for n in names], dtype=int))
        return cached[1]

    def _per_bus(self, attr, data):
        values = np.full(len(self.bus_position), np.nan)
        for src, value in data.get(attr, {}).items():
            if src in self.bus_index:
                values[self.bus_index[src]] = np.nan if value is None else float(value)
        for src, table in data.get("buses", {}).items():
            if table is not None and attr in table:
                mine, theirs = self._bus_rows(src, table["bus"])
                values[mine] = np.asarray(table[attr], dtype=float)[theirs]
        return values

    def _bus_rows(self, src, buses):
        """(our positions, the table's rows) of the recorded buses in a 'buses' table, cached per source."""
        cached = self.rows.get(("buses", src))
        if cached is None or cached[0] != buses:
            theirs = [j for j, b in enumerate(buses) if int(b) in self.bus_position]
            mine = [self.bus_position[int(buses[j])] for j in theirs]
            cached = self.rows[("buses", src)] = (list(buses), np.array(mine, dtype=int), np.array(theirs, dtype=int))
        return cached[1], cached[2]

    def _feeder(self, data, vm):
        """FEEDER_COLUMNS of one step: reduced over the feeder sources, else derived from the buses."""
        converged = bool(vm.size) and bool(np.isfinite(vm).all())
        p_bus = self._per_bus("P_bus[MW]", data)
        derived = {
            "converged": converged,
            "losses[MW]": -float(p_bus.sum()) if converged else np.nan,  # NaN unless every bus gave P_bus
            "Vm_min[pu]": float(vm.min()) if converged else np.nan,
            "Vm_max[pu]": float(vm.max()) if converged else np.nan,
        }
        feeder = {}
        for attr, (col, factor) in self.sources["grid"].items():
            given = [v for src, v in data.get(attr, {}).items() if src in self.feeder_sources and v is not None]
            value = FEEDER_REDUCE[attr](given) if given else derived.get(attr, np.nan)
            feeder[col] = value if isinstance(value, bool) else float(value) * factor
        return feeder

    def _scalars(self, role, data):
        src = self.layout[role]
        out = {}
        for attr, (col, factor) in self.sources[role].items():
            value = data.get(attr, {}).get(src)
            out[col] = value if isinstance(value, str) else np.nan if value is None else float(value) * factor
        return out

    def get_data(self, outputs):
        return {}

    def finalize(self):
        if self.recorder is not None:
            self.recorder.close()


def main():
    return mosaik_api_v3.start_simulation(RecorderSim())


if __name__ == "__main__":
    main()
