"""mosaik adapter for the recorder: gathers every simulator's data of a step into RunRecorder.

Feeder-level values come from the entities listed in ``layout["feeder"]`` (our Grid entity, or
e.g. mosaik-pandapower-2's ExternalGrid and Line entities); several sources of one attribute
are reduced (FEEDER_REDUCE).  What no source gives is derived from the buses when it can be:
``converged`` = every bus voltage finite, Vm_min / Vm_max over the buses, losses = minus the sum
of the buses' net demand 'P_bus[MW]' (slack bus included); otherwise it is recorded as NaN.
"""

import datetime as dt

import mosaik_api_v3
import numpy as np

from simulators.recorder.recorder import PROSUMER_COLUMNS, RunRecorder

KW_PER_MW = 1000.0

# source attribute -> (recorder column, factor); one table per kind of source entity
SOURCES = {
    "prosumer": {
        "P_load_served[MW]": ("load_kw", KW_PER_MW), "P_pv[MW]": ("pv_kw", KW_PER_MW),
        "P_curtailed[MW]": ("curtailed_kw", KW_PER_MW), "Q_pv[MVar]": ("pv_q_kvar", KW_PER_MW),
        "P_battery[MW]": ("battery_kw", KW_PER_MW), "SoC[kWh]": ("soc_kwh", 1.0),
        "P_gen[MW]": ("gen_kw", KW_PER_MW), "P_cl[MW]": ("cl_kw", KW_PER_MW),
        "E_cl_unserved[kWh]": ("cl_unserved_kwh", 1.0), "P[MW]": ("net_kw", KW_PER_MW),
        "Q[MVar]": ("net_kvar", KW_PER_MW), "bid_E[kWh]": ("bid_kwh", 1.0),
        "bid_price[EUR/kWh]": ("bid_price_eur_per_kwh", 1.0), "cost_device[EUR]": ("device_cost_eur", 1.0),
    },
    "participant": {
        "E_p2p_buy[kWh]": ("p2p_buy_kwh", 1.0), "E_p2p_sell[kWh]": ("p2p_sell_kwh", 1.0),
        "E_grid_buy[kWh]": ("grid_buy_kwh", 1.0), "E_grid_sell[kWh]": ("grid_sell_kwh", 1.0),
        "cost[EUR]": ("market_cost_eur", 1.0),
    },
    "market": {
        "price_buy[EUR/kWh]": ("price_buy_eur_per_kwh", 1.0), "price_sell[EUR/kWh]": ("price_sell_eur_per_kwh", 1.0),
        "tariff_buy[EUR/kWh]": ("tariff_buy_eur_per_kwh", 1.0),
        "tariff_sell[EUR/kWh]": ("tariff_sell_eur_per_kwh", 1.0),
        "supply[kWh]": ("supply_kwh", 1.0), "demand[kWh]": ("demand_kwh", 1.0), "traded[kWh]": ("traded_kwh", 1.0),
    },
    "bus": {"Vm[pu]": ("vm_pu", 1.0), "P_bus[MW]": ("p_bus_mw", 1.0)},
    "grid": {
        "converged": ("converged", 1.0), "losses[MW]": ("losses_mw", 1.0), "P_slack[MW]": ("p_slack_mw", 1.0),
        "Vm_min[pu]": ("vm_min_pu", 1.0), "Vm_max[pu]": ("vm_max_pu", 1.0),
        "loading_max[%]": ("loading_max_percent", 1.0),
    },
}
FEEDER_REDUCE = {"converged": all, "losses[MW]": sum, "P_slack[MW]": sum, "Vm_min[pu]": min, "Vm_max[pu]": max,
                 "loading_max[%]": max}
"""how the values of several feeder sources combine (one source: its value unchanged)"""

META = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Recorder": {
            "public": True,
            "params": ["run_dir", "layout", "start"],
            "attrs": sorted({a for table in SOURCES.values() for a in table} | {"mechanism"}),
        },
    },
}


class RecorderSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.recorder = None

    def init(self, sid, time_resolution=1.0, step_size=900):
        self.step_size = step_size
        return self.meta

    def create(self, num, model, run_dir, layout, start):
        """``layout`` maps each connected source's full id to its role:
        {"prosumer": {full_id: name}, "participant": {full_id: name}, "bus": {full_id: bus},
         "market": full_id, "feeder": [full_id, ...]}; ``start`` is the ISO time of mosaik time 0."""
        if num != 1 or self.recorder is not None:
            raise ValueError("RecorderSim holds exactly one Recorder")
        self.layout = layout
        self.start = dt.datetime.fromisoformat(start)
        names = list(layout["prosumer"].values())
        self.prosumer_index = {name: i for i, name in enumerate(names)}
        self.bus_index = {fid: i for i, fid in enumerate(layout["bus"])}
        self.feeder_sources = set(layout["feeder"])
        buses = list(layout["bus"].values())
        specs_bus = layout.get("prosumer_bus", {})
        self.recorder = RunRecorder(run_dir, names, [specs_bus.get(n, -1) for n in names], buses)
        return [{"eid": "Recorder", "type": model}]

    def step(self, time, inputs, max_advance):
        data = inputs.get("Recorder", {})
        n = len(self.prosumer_index)
        pros = {c: np.zeros(n) for c in PROSUMER_COLUMNS[4:]}
        for role in ("prosumer", "participant"):
            for attr, (col, factor) in SOURCES[role].items():
                for src, value in data.get(attr, {}).items():
                    name = self.layout[role].get(src)
                    if name is not None:
                        pros[col][self.prosumer_index[name]] = float(value) * factor
        pros["cost_eur"] = pros["market_cost_eur"] + pros["device_cost_eur"]
        market = self._scalars("market", data)
        market["mechanism"] = data.get("mechanism", {}).get(self.layout["market"], "")
        vm = self._per_bus("Vm[pu]", data)
        feeder = self._feeder(data, vm)
        stamp = (self.start + dt.timedelta(seconds=time)).strftime("%Y-%m-%d %H:%M")
        self.recorder.record(time // self.step_size, stamp, pros, market, vm, feeder)
        return time + self.step_size

    def _per_bus(self, attr, data):
        values = np.full(len(self.bus_index), np.nan)
        for src, value in data.get(attr, {}).items():
            if src in self.bus_index:
                values[self.bus_index[src]] = np.nan if value is None else float(value)
        return values

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
        for attr, (col, factor) in SOURCES["grid"].items():
            given = [v for src, v in data.get(attr, {}).items() if src in self.feeder_sources and v is not None]
            value = FEEDER_REDUCE[attr](given) if given else derived.get(attr, np.nan)
            feeder[col] = value if isinstance(value, bool) else float(value) * factor
        return feeder

    def _scalars(self, role, data):
        src = self.layout[role]
        out = {}
        for attr, (col, factor) in SOURCES[role].items():
            value = data.get(attr, {}).get(src)
            out[col] = np.nan if value is None else float(value) * factor
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
