"""Vectorized devices of many prosumers: observe, apply set-points, keep state.

The fleet holds every device unit of N prosumers in one bank per registered device type
(simulators/prosumer/devices.py; ``owner`` maps a unit to its prosumer), so one call steps all
of them without Python loops over prosumers.  A mosaik prosumer simulator holds a fleet of one
(per-prosumer mode) or of many (grouped mode); the training environment holds a fleet of all.
Same code, same numbers.

Powers in kW, energies in kWh, Δt = STEP_H.  Sign convention: see simulators/units.py.
"""

import numpy as np

from simulators.profiles.data import FORECAST_FIELDS
from simulators.prosumer.devices import DEVICES, StepInputs
from simulators.prosumer.interface import FORECAST_COLUMNS, layout
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError

FORECAST_SOURCE = {c: next(f for f in FORECAST_FIELDS if f.startswith(c + "_")) for c in FORECAST_COLUMNS}
"""observation column -> the forecast_features field it is made of (load_fc4h <- load_fc4h_kw, ...)"""
CORE_OUTPUTS = (
    ("load_kw", "household load served [kW]"),
    ("net_kw", "meter power, load convention: load + consumers - generators [kW]"),
    ("net_kvar", "meter reactive power, load convention: load_kvar - inverter injection [kVar]"),
    ("bid_kwh", "bid quantity = net energy over the step, > 0 buys [kWh]"),
    ("bid_price_eur_per_kwh", "limit price of the bid [EUR/kWh]"),
    ("device_cost_eur", "device costs of the step: fuel, battery throughput, penalties [EUR]"),
)
"""StepResult fields every fleet has; each device type adds its own (DeviceType.outputs)"""


class StepResult:
    """What the prosumers did in one step: one (N,) array over prosumers per field
    (CORE_OUTPUTS, then every device type's outputs)."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)
        self.fields = tuple(arrays)

    def row(self, i):
        """The values of prosumer ``i`` as a dict of floats (for recording)."""
        return {f: float(getattr(self, f)[i]) for f in self.fields}


def _units(specs, key):
    return [(i, u) for i, s in enumerate(specs) for u in getattr(s, key)]


class Fleet:
    """All devices of N prosumers, with their state, for every device type registered now."""

    def __init__(self, specs):
        if not specs:
            raise ConfigError("specs: at least one prosumer is required")
        self.specs = list(specs)
        self.n = n = len(self.specs)
        self.names = [s.name for s in self.specs]
        self.buses = np.array([s.bus for s in self.specs], dtype=np.int64)
        self.load_peak_kw = np.array([s.load_peak_kw for s in self.specs])
        self.devices = {key: cls(_units(specs, key), n) for key, cls in DEVICES.items()}
        obs, actions = layout(self.devices)
        self.obs_fields = tuple(name for name, _ in obs)
        self.action_fields = tuple(a.name for a in actions)
        self.action_low = np.array([a.low for a in actions])
        self.action_high = np.array([a.high for a in actions])
        col = {name: i for i, name in enumerate(self.action_fields)}
        self._cols = {key: [col[a.name] for a in d.actions] for key, d in self.devices.items()}
        self._obs_col = {name: i for i, name in enumerate(self.obs_fields)}
        self._bid_col = col["bid_price"]
        self.scale_kw = np.maximum.reduce([self.load_peak_kw, np.ones(n),
                                           *(d.rating_kw() for d in self.devices.values())])
        self.reset()

    # ---- state -------------------------------------------------------------------------
    def reset(self):
        """Start of a run: every device at its initial state (batteries at soc_init, ...)."""
        for d in self.devices.values():
            d.reset()
        self._prev_step = -1

    def _new_day(self, step):
        """A step number that does not increase means a new day began."""
        return step <= self._prev_step

    def state_dict(self):
        state = {d.state: getattr(d, d.state).copy() for d in self.devices.values() if d.state}
        return {**state, "prev_step": self._prev_step}

    def load_state_dict(self, state):
        for d in self.devices.values():
            if d.state:
                setattr(d, d.state, np.array(state[d.state], dtype=float))
        self._prev_step = int(state["prev_step"])

    def planning_state(self, step):
        """Per-unit state a planner starts from at step-of-day ``step``: {state name: (K,)}."""
        new_day = self._new_day(int(step) % STEPS_PER_DAY)
        return {d.state: d.planning_state(new_day) for d in self.devices.values() if d.state}

    # ---- observation -------------------------------------------------------------------
    def observe(self, step, load_kw, pv_avail_kw, vm_last_pu, price_buy_last, price_sell_last,
                tariff_buy, tariff_sell, forecast=None):
        """Local observations (N, len(obs_fields)) at step-of-day ``step`` (see interface.py).

        ``forecast``: this step's row of simulators.profiles.data.forecast_features ({FORECAST_FIELDS:
        (N,)} in kW and kWh); None: the forecast columns are NaN (nobody supplied a forecast).
        A NaN voltage (power flow did not converge) is observed as 1.0 p.u. so observations
        stay finite; the recorder keeps the NaN.
        """
        step = int(step) % STEPS_PER_DAY
        s = self.scale_kw
        phase = 2.0 * np.pi * step / STEPS_PER_DAY
        vm = np.nan_to_num(np.asarray(vm_last_pu, dtype=float), nan=1.0)
        values = {"time_sin": np.sin(phase), "time_cos": np.cos(phase), "step_frac": step / STEPS_PER_DAY,
                  "load": np.asarray(load_kw) / s, "pv_avail": np.asarray(pv_avail_kw) / s,
                  "vm_dev": (vm - 1.0) / 0.05, "price_buy_last": price_buy_last, "price_sell_last": price_sell_last,
                  "tariff_buy": tariff_buy, "tariff_sell": tariff_sell}
        fc = forecast or dict.fromkeys(FORECAST_FIELDS, np.nan)
        for column, field in FORECAST_SOURCE.items():  # powers / scale, energies / (24 h x scale)
            values[column] = np.asarray(fc[field]) / (s * (24.0 if field.endswith("_kwh") else 1.0))
        new_day = self._new_day(step)
        for d in self.devices.values():
            values.update(d.observe(step, s, new_day))
        obs = np.zeros((self.n, len(self.obs_fields)))
        for name, col in self._obs_col.items():
            obs[:, col] = values[name]
        return obs

    # ---- acting ------------------------------------------------------------------------
    def apply(self, step, actions, load_kw, load_kvar, pv_avail_kw, tariff_buy, tariff_sell):
        """Turn normalized actions (N, A) into feasible device set-points and advance the state."""
        step = int(step) % STEPS_PER_DAY
        actions = np.asarray(actions, dtype=float)
        if actions.shape != (self.n, len(self.action_fields)):
            raise ValueError(f"actions: expected shape {(self.n, len(self.action_fields))}, got {actions.shape}")
        a = np.clip(np.nan_to_num(actions), self.action_low, self.action_high)
        if self._new_day(step):
            for d in self.devices.values():
                d.new_day()
        self._prev_step = step
        load_kw = np.asarray(load_kw, dtype=float)
        ctx = StepInputs(step, load_kw, np.asarray(load_kvar, dtype=float), np.asarray(pv_avail_kw, dtype=float),
                         tariff_buy, tariff_sell)
        net_kw, net_kvar, cost, outputs = load_kw, ctx.load_kvar, 0.0, {}
        for key, d in self.devices.items():
            r = d.apply(a[:, self._cols[key]], ctx)
            net_kw = net_kw + r.p_kw
            net_kvar = net_kvar if r.q_kvar is None else net_kvar + r.q_kvar
            cost = cost + r.cost_eur
            outputs.update(r.outputs)
        bid_price = tariff_sell + a[:, self._bid_col] * (tariff_buy - tariff_sell)
        return StepResult(load_kw=load_kw, net_kw=net_kw, net_kvar=net_kvar, bid_kwh=net_kw * STEP_H,
                          bid_price_eur_per_kwh=np.broadcast_to(bid_price, (self.n,)).copy(),
                          device_cost_eur=np.broadcast_to(cost, (self.n,)).copy(), **outputs)

    # ---- helpers for experts -----------------------------------------------------------
    def actions_from_setpoints(self, setpoints, bid_price, pv_avail_kw):
        """Per-prosumer device totals (dict of (N,) [kW / kVar], e.g. battery_kw, gen_kw, cl_kw,
        curtail_kw, pv_q_kvar) -> normalized actions (N, A) (inverse of apply)."""
        a = np.zeros((self.n, len(self.action_fields)))
        ctx = StepInputs(-1, None, None, np.asarray(pv_avail_kw, float), None, None)
        for key, d in self.devices.items():
            a[:, self._cols[key]] = d.to_actions(setpoints, ctx)
        a[:, self._bid_col] = bid_price
        return np.clip(a, self.action_low, self.action_high)
