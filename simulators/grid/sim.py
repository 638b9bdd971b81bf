"""mosaik adapter for the grid models: buses collect prosumer P/Q, one Grid entity reports the feeder.

Per step: every Bus sums the 'P[MW]'/'Q[MVar]' of all sources connected to it (load
convention, > 0 consumption; a bus without inputs has no prosumer demand), the inputs are
checked (finite, |P|, |Q| <= p_max_mw: simulators/attrs.py), the configured GridModel solves
once, and get_data serves the stored result.  A Bus's 'P[MW]' / 'Q[MVar]' outputs are the total
demand at the bus (the inputs plus the feeder's own loads minus sgens), as pandapower's
res_bus.p_mw / q_mvar.  A power flow that does not converge yields 'converged' False, NaN
voltages and losses, and 'n_violations' equal to the number of buses (a failed flow counts as
a violation everywhere, as agents/env.py does).  The Grid entity's ``buses`` output holds every
bus's voltage as one table {"bus": [bus indices], "Vm[pu]": [...]} (NaN where the flow failed),
so a recorder takes a 5000-bus grid through one mosaik value.  Given ``dates`` (mosaik time 0 =
00:00 of the first), the feeder's own loads and generators at buses without a prosumer follow
their SimBench profiles (simulators/grid/background.py); without, they stay nominal.  Attribute
table: simulators/tables.py GRID_SIM; out of process: ``python -m simulators.grid.sim HOST:PORT``.
"""

import mosaik_api_v3
import numpy as np

from simulators.attrs import ON_INVALID, InputReader, check_unknown, meta
from simulators.grid.background import Background
from simulators.grid.models import make_grid
from simulators.grid.networks import make_network
from simulators.tables import BUS, GRID, GRID_SIM
from simulators.units import STEP_S, STEPS_PER_DAY, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError, check_choice, check_range

META = meta(GRID_SIM)


class GridSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.model = None
        self.result = None
        self.grid_eid = None
        self.bus_of = {}  # Bus eid -> position in model.bus_ids

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, network="ieee33", model="ac", prosumer_buses=None,
             p_max_mw=None, on_invalid="raise", dates=None, **unknown):
        """See simulators/tables.py GRID_SIM.init for every parameter."""
        check_unknown("Grid init", unknown, GRID_SIM.init)
        if not isinstance(step_size, (int, np.integer)) or step_size <= 0:
            raise ConfigError(f"step_size: {step_size!r} must be a positive integer")
        self.step_size = int(step_size)
        self.on_invalid = check_choice("on_invalid", on_invalid, ON_INVALID)
        if not isinstance(prosumer_buses or (), (list, tuple)) or \
                not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in prosumer_buses or ()):
            raise ConfigError(f"prosumer_buses: {prosumer_buses!r} must be a list of bus indices")
        net = make_network(network)
        self.model = make_grid(model, net, prosumer_buses or ())
        self._pos = {int(b): i for i, b in enumerate(self.model.bus_ids)}
        total = float(np.abs(self.model.p_background_mw).sum())
        self.p_max_mw = check_range("p_max_mw", 10.0 * (total + 1.0) if p_max_mw is None else p_max_mw, 0.0, 1e6,
                                    lo_open=True)
        self.dates, self.background = list(dates or []), None
        if self.dates:
            from simulators.profiles.data import ProfileBank

            self.background = Background(self.model.net, self.model.bus_ids, ProfileBank.simbench())
            for date in self.dates:
                self.background.bank.day_index(date)  # a date outside the data fails here, not mid-run
        # the first solve allocates (and compiles, with numba): pay it here, not inside world.run
        zeros = np.zeros(self.model.n_bus)
        self.model.solve(zeros, zeros)
        self.p_mw, self.q_mvar = zeros.copy(), zeros.copy()
        return self.meta

    def create(self, num, model, **params):
        if model == "Grid":
            check_unknown("Grid create", params, GRID.params)
            if num != 1 or self.grid_eid is not None:
                raise ConfigError(f"Grid: exactly one Grid entity per GridSim, asked for {num} more")
            self.grid_eid = "Grid"
            return [{"eid": "Grid", "type": model}]
        bus = params.pop("bus", None)
        check_unknown("Bus create", params, BUS.params)
        buses = list(bus) if isinstance(bus, (list, tuple, np.ndarray)) else [bus] * num
        if len(buses) != num:
            raise ConfigError(f"bus: {len(buses)} bus indices given for {num} Bus entities")
        entities = []
        for b in buses:
            if b is None or isinstance(b, bool) or not isinstance(b, (int, np.integer)) or int(b) not in self._pos:
                raise ConfigError(f"bus: {b!r} is not a bus of the network (allowed: one of its "
                                  f"{len(self._pos)} bus indices, {min(self._pos)}..{max(self._pos)})")
            eid = f"Bus_{int(b)}"
            if eid in self.bus_of:
                raise ConfigError(f"bus: {int(b)} already has the entity {eid!r}; connect every source to it")
            self.bus_of[eid] = self._pos[int(b)]
            entities.append({"eid": eid, "type": model})
        return entities

    def setup_done(self):
        self.eids = list(self.bus_of)
        self.reader = InputReader("Grid", BUS, self.eids, self.on_invalid)
        for attr in ("P[MW]", "Q[MVar]"):
            self.reader.set_range(attr, -self.p_max_mw, self.p_max_mw, "p_max_mw")

    def step(self, time, inputs, max_advance):
        x = self.reader.read(time, {eid: v for eid, v in inputs.items() if eid in self.bus_of})
        pos = np.array([self.bus_of[e] for e in self.eids], dtype=np.int64)
        p = np.bincount(pos, x["P[MW]"], minlength=self.model.n_bus)
        q = np.bincount(pos, x["Q[MVar]"], minlength=self.model.n_bus)
        if self.background is not None and self.background.active:
            k = time // self.step_size
            if k >= STEPS_PER_DAY * len(self.dates):
                raise ConfigError(f"dates: time {time} is step {k}, past the last step of {self.dates}")
            dp, dq = self.background.delta(self.dates[k // STEPS_PER_DAY], k % STEPS_PER_DAY)
            p, q = p + dp, q + dq
        self.p_mw, self.q_mvar = p, q
        self.result = self.model.solve(p, q)
        self.grid_values = grid_outputs(self.result)
        self.bus_values = None
        return time + self.step_size

    def get_data(self, outputs):
        if self.result is None:  # asked before the first step
            return {eid: {attr: None for attr in attrs} for eid, attrs in outputs.items()}
        if self.bus_values is None:  # per-bus outputs as lists, once per step (thousands of Bus entities)
            r, m = self.result, self.model
            self.bus_values = {"Vm[pu]": r.vm_pu.tolist(), "Va[deg]": r.va_deg.tolist(),
                               "P[MW]": (self.p_mw + m.p_background_mw).tolist(),
                               "Q[MVar]": (self.q_mvar + m.q_background_mvar).tolist()}
            self.clipped = dict(zip(self.eids, self.reader.clipped.tolist()))
        data = {}
        for eid, attrs in outputs.items():
            if eid == self.grid_eid:
                data[eid] = {attr: self._grid_value(attr) for attr in attrs}
                continue
            pos = self.bus_of[eid]
            data[eid] = {attr: self.bus_values[attr][pos] if attr != "inputs_clipped" else self.clipped[eid]
                         for attr in attrs}
        return data

    def _grid_value(self, attr):
        if attr == "buses":
            return {"bus": self.model.bus_ids.tolist(), "Vm[pu]": self.bus_values["Vm[pu]"]}
        return self.grid_values[attr]


def grid_outputs(result):
    """The Grid entity's outputs of one PowerFlowResult (NaN voltages count as violations)."""
    vm = result.vm_pu
    ok = result.converged
    n_violations = int(np.sum(~((vm >= V_MIN_PU) & (vm <= V_MAX_PU)) & ~np.isnan(vm))) if ok else len(vm)
    return {
        "converged": bool(ok),
        "losses[MW]": float(result.losses_mw),
        "Vm_min[pu]": float(np.nanmin(vm)) if ok else float("nan"),
        "Vm_max[pu]": float(np.nanmax(vm)) if ok else float("nan"),
        "P_slack[MW]": float(result.p_slack_mw),
        "loading_max[%]": float(result.loading_max_percent),
        "n_violations": n_violations,
    }


def main():
    return mosaik_api_v3.start_simulation(GridSim())


if __name__ == "__main__":
    main()
