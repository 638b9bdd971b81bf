"""mosaik adapter for the grid models: buses collect prosumer P/Q, one Grid entity reports the feeder.

Per step: every Bus sums the 'P[MW]'/'Q[MVar]' of all sources connected to it (load
convention, > 0 consumption; a missing input counts as 0), the configured GridModel solves
once, and get_data serves the stored result.  A power flow that does not converge yields
'converged' False, NaN voltages and losses, and 'n_violations' equal to the number of buses
(a failed flow counts as a violation everywhere, as agents/env.py does).
"""

import mosaik_api_v3
import numpy as np

from simulators.grid.models import make_grid
from simulators.grid.networks import make_network
from simulators.units import STEP_S, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError

MODELS = {
    "Grid": {
        "params": [],
        "inputs": [],
        "outputs": ["converged", "losses[MW]", "Vm_min[pu]", "Vm_max[pu]", "P_slack[MW]", "loading_max[%]",
                    "n_violations"],
    },
    "Bus": {
        "params": ["bus"],
        "inputs": ["P[MW]", "Q[MVar]"],
        "outputs": ["Vm[pu]", "Va[deg]", "P[MW]"],
    },
}
"""model -> params, inputs, outputs; META is generated from this table. A Bus's output 'P[MW]'
is the total demand at its bus: the prosumers' inputs plus the native background demand."""

META = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        name: {"public": True, "params": spec["params"], "attrs": sorted(set(spec["inputs"]) | set(spec["outputs"]))}
        for name, spec in MODELS.items()
    },
}


class GridSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.model = None
        self.result = None
        self.grid_eid = None
        self.bus_of = {}  # Bus eid -> position in model.bus_ids

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, network="ieee33", model="ac", prosumer_buses=None):
        self.step_size = int(step_size)
        self.model = make_grid(model, make_network(network), prosumer_buses or ())
        self._pos = {int(b): i for i, b in enumerate(self.model.bus_ids)}
        # the first solve allocates (and compiles, with numba): pay it here, not inside world.run
        zeros = np.zeros(self.model.n_bus)
        self.model.solve(zeros, zeros)
        self.p_mw, self.q_mvar = zeros.copy(), zeros.copy()
        return self.meta

    def create(self, num, model, bus=None):
        if model == "Grid":
            if num != 1 or self.grid_eid is not None:
                raise ConfigError(f"Grid: exactly one Grid entity per GridSim, asked for {num} more")
            self.grid_eid = "Grid"
            return [{"eid": "Grid", "type": model}]
        buses = list(bus) if isinstance(bus, (list, tuple, np.ndarray)) else [bus] * num
        if len(buses) != num:
            raise ConfigError(f"bus: {len(buses)} bus indices given for {num} Bus entities")
        entities = []
        for b in buses:
            if b is None or int(b) not in self._pos:
                raise ConfigError(f"bus: {b!r} is not a bus of the network (allowed: one of its "
                                  f"{len(self._pos)} bus indices, {min(self._pos)}..{max(self._pos)})")
            eid = f"Bus_{len(self.bus_of)}"
            self.bus_of[eid] = self._pos[int(b)]
            entities.append({"eid": eid, "type": model})
        return entities

    def step(self, time, inputs, max_advance):
        p = np.zeros(self.model.n_bus)
        q = np.zeros(self.model.n_bus)
        for eid, attrs in inputs.items():
            pos = self.bus_of[eid]
            p[pos] += sum(v for v in attrs.get("P[MW]", {}).values() if v is not None)
            q[pos] += sum(v for v in attrs.get("Q[MVar]", {}).values() if v is not None)
        self.p_mw, self.q_mvar = p, q
        self.result = self.model.solve(p, q)
        self.grid_values = grid_outputs(self.result)
        return time + self.step_size

    def get_data(self, outputs):
        return {eid: {attr: self._value(eid, attr) for attr in attrs} for eid, attrs in outputs.items()}

    def _value(self, eid, attr):
        r = self.result
        if r is None:  # asked before the first step
            return None
        if eid == self.grid_eid:
            return self.grid_values[attr]
        pos = self.bus_of[eid]
        if attr == "Vm[pu]":
            return float(r.vm_pu[pos])
        if attr == "Va[deg]":
            return float(r.va_deg[pos])
        return float(self.p_mw[pos] + self.model.p_background_mw[pos])


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
