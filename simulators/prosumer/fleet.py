"""Vectorized devices of many prosumers: observe, apply set-points, keep state.

The fleet holds every device unit of N prosumers in flat arrays (one bank per device type,
``owner`` maps a unit to its prosumer), so one call steps all of them without Python loops
over prosumers.  A mosaik prosumer simulator holds a fleet of one (per-prosumer mode) or of
many (grouped mode); the training environment holds a fleet of all.  Same code, same numbers.

Powers in kW, energies in kWh, Δt = STEP_H.  Sign convention: see simulators/units.py.
"""

from dataclasses import dataclass, fields

import numpy as np

from simulators.prosumer.interface import ACT, ACTION_FIELDS, ACTION_HIGH, ACTION_LOW, OBS, OBS_FIELDS
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError


@dataclass
class StepResult:
    """What the prosumers did in one step; every field is an array (N,) over prosumers."""

    net_kw: np.ndarray
    """meter power, load convention: load + cl + battery - pv - gen [kW]"""
    net_kvar: np.ndarray
    """meter reactive power, load convention: load_kvar - pv_q [kVar]"""
    load_kw: np.ndarray
    pv_kw: np.ndarray
    pv_q_kvar: np.ndarray
    curtailed_kw: np.ndarray
    battery_kw: np.ndarray
    soc_kwh: np.ndarray
    gen_kw: np.ndarray
    cl_kw: np.ndarray
    cl_unserved_kwh: np.ndarray
    device_cost_eur: np.ndarray
    """generator fuel + battery throughput + unserved controllable-load penalty [EUR]"""
    bid_kwh: np.ndarray
    """bid quantity = net energy over the step, > 0 buys [kWh]"""
    bid_price_eur_per_kwh: np.ndarray

    def row(self, i):
        """The values of prosumer ``i`` as a dict of floats (for recording)."""
        return {f.name: float(getattr(self, f.name)[i]) for f in fields(self)}


class _Bank:
    """Units of one device type: parameter arrays (K,) and the owning prosumer index."""

    def __init__(self, units, n, attrs):
        self.owner = np.array([i for i, _ in units], dtype=np.int64)
        self.n = n
        for attr in attrs:
            setattr(self, attr, np.array([getattr(u, attr) for _, u in units], dtype=float))

    def __len__(self):
        return len(self.owner)

    def total(self, values):
        """Sum unit values per prosumer -> (N,)."""
        return np.bincount(self.owner, weights=values, minlength=self.n)

    def spread(self, per_prosumer):
        """Give each unit its prosumer's value -> (K,)."""
        return per_prosumer[self.owner]


def _units(specs, attr):
    return [(i, u) for i, s in enumerate(specs) for u in getattr(s, attr)]


class Fleet:
    """All devices of N prosumers, with state (SoC, generator output, controllable-load energy)."""

    def __init__(self, specs):
        if not specs:
            raise ConfigError("specs: at least one prosumer is required")
        self.specs = list(specs)
        self.n = n = len(self.specs)
        self.names = [s.name for s in self.specs]
        self.buses = np.array([s.bus for s in self.specs], dtype=np.int64)
        self.load_peak_kw = np.array([s.load_peak_kw for s in self.specs])

        self.bat = _Bank(_units(specs, "batteries"), n, (
            "capacity_kwh", "p_max_kw", "eta_charge", "eta_discharge", "soc_min", "soc_max",
            "soc_init", "cost_eur_per_kwh"))
        self.gen = _Bank(_units(specs, "generators"), n, (
            "p_max_kw", "p_min_kw", "ramp_kw_per_step", "cost_a_eur_per_kw2h",
            "cost_b_eur_per_kwh", "cost_c_eur_per_h"))
        self.cl = _Bank(_units(specs, "controllable_loads"), n, (
            "energy_kwh", "p_max_kw", "earliest_step", "deadline_step", "unserved_penalty_eur_per_kwh"))
        pv = _Bank(_units(specs, "pv"), n, ("kwp",))
        pv.s_kva = np.array([u.s_kva for _, u in _units(specs, "pv")], dtype=float)
        self.pv_kwp = pv.total(pv.kwp)
        self.pv_s_kva = pv.total(pv.s_kva)

        b = self.bat
        b.soc_lo_kwh = b.soc_min * b.capacity_kwh
        b.soc_hi_kwh = b.soc_max * b.capacity_kwh
        self.bat_p_max = b.total(b.p_max_kw)
        self.bat_usable_kwh = b.total(b.soc_hi_kwh - b.soc_lo_kwh)
        self.gen_p_max = self.gen.total(self.gen.p_max_kw)
        # marginal cost at half load, weighted by rating: what a policy compares with tariffs
        g = self.gen
        self.gen_cost = _safe_div(g.total((g.cost_b_eur_per_kwh + g.cost_a_eur_per_kw2h * g.p_max_kw) * g.p_max_kw),
                                  self.gen_p_max)
        self.cl_p_max = self.cl.total(self.cl.p_max_kw)
        self.scale_kw = np.maximum.reduce([self.load_peak_kw, self.pv_kwp, self.bat_p_max,
                                           self.gen_p_max, self.cl_p_max, np.ones(n)])
        self.reset()

    # ---- state -------------------------------------------------------------------------
    def reset(self):
        """Start of a run: batteries at their initial SoC, generators off, loads unserved."""
        self.soc_kwh = self.bat.soc_init * self.bat.capacity_kwh
        self.gen_last_kw = np.zeros(len(self.gen))
        self.cl_remaining_kwh = self.cl.energy_kwh.copy()
        self._prev_step = -1

    def _roll_day(self, step):
        # a step number that does not increase means a new day began: controllable loads
        # get their daily energy again; batteries and generators carry over
        if step <= self._prev_step:
            self.cl_remaining_kwh = self.cl.energy_kwh.copy()
        self._prev_step = step

    def state_dict(self):
        return {"soc_kwh": self.soc_kwh.copy(), "gen_last_kw": self.gen_last_kw.copy(),
                "cl_remaining_kwh": self.cl_remaining_kwh.copy(), "prev_step": self._prev_step}

    def load_state_dict(self, state):
        self.soc_kwh = np.array(state["soc_kwh"], dtype=float)
        self.gen_last_kw = np.array(state["gen_last_kw"], dtype=float)
        self.cl_remaining_kwh = np.array(state["cl_remaining_kwh"], dtype=float)
        self._prev_step = int(state["prev_step"])

    # ---- observation -------------------------------------------------------------------
    def observe(self, step, load_kw, pv_avail_kw, vm_last_pu, price_buy_last, price_sell_last,
                tariff_buy, tariff_sell):
        """Local observations (N, len(OBS_FIELDS)) at step-of-day ``step`` (see interface.py).

        A NaN voltage (power flow did not converge) is observed as 1.0 p.u. so observations
        stay finite; the recorder keeps the NaN.
        """
        step = int(step) % STEPS_PER_DAY
        s = self.scale_kw
        obs = np.zeros((self.n, len(OBS_FIELDS)))
        phase = 2.0 * np.pi * step / STEPS_PER_DAY
        obs[:, OBS["time_sin"]] = np.sin(phase)
        obs[:, OBS["time_cos"]] = np.cos(phase)
        obs[:, OBS["step_frac"]] = step / STEPS_PER_DAY
        obs[:, OBS["load"]] = np.asarray(load_kw) / s
        obs[:, OBS["pv_avail"]] = np.asarray(pv_avail_kw) / s
        b = self.bat
        obs[:, OBS["soc"]] = _safe_div(b.total(self.soc_kwh - b.soc_lo_kwh), self.bat_usable_kwh)
        obs[:, OBS["battery_p_max"]] = self.bat_p_max / s
        obs[:, OBS["battery_energy"]] = self.bat_usable_kwh / s
        obs[:, OBS["gen_last"]] = self.gen.total(self.gen_last_kw) / s
        obs[:, OBS["gen_p_max"]] = self.gen_p_max / s
        obs[:, OBS["gen_cost"]] = self.gen_cost
        cl_remaining = self._cl_remaining_at(step)
        obs[:, OBS["cl_remaining"]] = self.cl.total(cl_remaining) / s
        obs[:, OBS["cl_p_max"]] = self.cl_p_max / s
        steps_left = np.clip(self.cl.deadline_step - step, 0, None)
        obs[:, OBS["cl_steps_left"]] = _unit_max(self.cl, steps_left, self.n) / STEPS_PER_DAY
        vm = np.nan_to_num(np.asarray(vm_last_pu, dtype=float), nan=1.0)
        obs[:, OBS["vm_dev"]] = (vm - 1.0) / 0.05
        obs[:, OBS["price_buy_last"]] = price_buy_last
        obs[:, OBS["price_sell_last"]] = price_sell_last
        obs[:, OBS["tariff_buy"]] = tariff_buy
        obs[:, OBS["tariff_sell"]] = tariff_sell
        return obs

    def _cl_remaining_at(self, step):
        # before apply() of a new day's first step the loads already count as unserved
        return self.cl.energy_kwh if step <= self._prev_step else self.cl_remaining_kwh

    # ---- acting ------------------------------------------------------------------------
    def apply(self, step, actions, load_kw, load_kvar, pv_avail_kw, tariff_buy, tariff_sell):
        """Turn normalized actions (N, A) into feasible device set-points and advance the state."""
        step = int(step) % STEPS_PER_DAY
        actions = np.asarray(actions, dtype=float)
        if actions.shape != (self.n, len(ACTION_FIELDS)):
            raise ValueError(f"actions: expected shape {(self.n, len(ACTION_FIELDS))}, got {actions.shape}")
        a = np.clip(np.nan_to_num(actions), ACTION_LOW, ACTION_HIGH)
        self._roll_day(step)
        load_kw = np.asarray(load_kw, dtype=float)
        pv_avail_kw = np.asarray(pv_avail_kw, dtype=float)

        battery_kw, bat_cost = self._step_batteries(a[:, ACT["battery"]])
        gen_kw, gen_cost = self._step_generators(a[:, ACT["generator"]])
        cl_kw, unserved_kwh, cl_cost = self._step_controllable_loads(step, a[:, ACT["controllable_load"]])
        pv_kw = pv_avail_kw * (1.0 - a[:, ACT["pv_curtail"]])
        q_cap = np.sqrt(np.clip(self.pv_s_kva ** 2 - pv_kw ** 2, 0.0, None))
        pv_q_kvar = a[:, ACT["pv_q"]] * np.where(self.pv_kwp > 0, q_cap, 0.0)

        net_kw = load_kw + cl_kw + battery_kw - pv_kw - gen_kw
        bid_price = tariff_sell + a[:, ACT["bid_price"]] * (tariff_buy - tariff_sell)
        return StepResult(
            net_kw=net_kw, net_kvar=np.asarray(load_kvar, dtype=float) - pv_q_kvar, load_kw=load_kw,
            pv_kw=pv_kw, pv_q_kvar=pv_q_kvar, curtailed_kw=pv_avail_kw - pv_kw,
            battery_kw=battery_kw, soc_kwh=self.bat.total(self.soc_kwh), gen_kw=gen_kw, cl_kw=cl_kw,
            cl_unserved_kwh=unserved_kwh, device_cost_eur=bat_cost + gen_cost + cl_cost,
            bid_kwh=net_kw * STEP_H, bid_price_eur_per_kwh=np.broadcast_to(bid_price, (self.n,)).copy())

    def _step_batteries(self, frac):
        b = self.bat
        cmd = b.spread(frac) * b.p_max_kw
        charge_max = (b.soc_hi_kwh - self.soc_kwh) / (b.eta_charge * STEP_H)
        discharge_max = (self.soc_kwh - b.soc_lo_kwh) * b.eta_discharge / STEP_H
        p = np.clip(cmd, -np.minimum(b.p_max_kw, np.maximum(discharge_max, 0.0)),
                    np.minimum(b.p_max_kw, np.maximum(charge_max, 0.0)))
        energy = np.where(p > 0, b.eta_charge * p, p / b.eta_discharge) * STEP_H
        self.soc_kwh = np.clip(self.soc_kwh + energy, b.soc_lo_kwh, b.soc_hi_kwh)
        cost = b.cost_eur_per_kwh * np.abs(p) * STEP_H
        return b.total(p), b.total(cost)

    def _step_generators(self, frac):
        g = self.gen
        cmd = g.spread(frac) * g.p_max_kw
        last = self.gen_last_kw
        ramp = np.where(g.ramp_kw_per_step > 0, g.ramp_kw_per_step, np.inf)
        want_on = (cmd >= g.p_min_kw) & (cmd > 0)
        # running: move towards the command within the ramp; start-up may jump to p_min;
        # shut-down is allowed once the ramp brings the output below p_min
        hi = np.minimum(np.maximum(last + ramp, g.p_min_kw), g.p_max_kw)
        lo = np.maximum(last - ramp, g.p_min_kw)
        p_on = np.clip(cmd, np.minimum(lo, hi), hi)
        p_off = np.maximum(last - ramp, 0.0)
        p_off = np.where(p_off < g.p_min_kw, 0.0, np.minimum(p_off, g.p_max_kw))
        p = np.where(want_on, p_on, p_off)
        self.gen_last_kw = p
        cost = (g.cost_a_eur_per_kw2h * p ** 2 + g.cost_b_eur_per_kwh * p
                + g.cost_c_eur_per_h * (p > 0)) * STEP_H
        return g.total(p), g.total(cost)

    def _step_controllable_loads(self, step, frac):
        c = self.cl
        active = (c.earliest_step <= step) & (step < c.deadline_step)
        p = np.where(active, c.spread(frac) * c.p_max_kw, 0.0)
        p = np.minimum(p, self.cl_remaining_kwh / STEP_H)
        self.cl_remaining_kwh = np.maximum(self.cl_remaining_kwh - p * STEP_H, 0.0)
        # the energy still missing when the window closes is charged once, then written off
        closing = step == c.deadline_step - 1
        unserved = np.where(closing, self.cl_remaining_kwh, 0.0)
        self.cl_remaining_kwh = np.where(closing, 0.0, self.cl_remaining_kwh)
        cost = unserved * c.unserved_penalty_eur_per_kwh
        return c.total(p), c.total(unserved), c.total(cost)

    # ---- helpers for experts -----------------------------------------------------------
    def actions_from_setpoints(self, battery_kw, gen_kw, cl_kw, curtail_kw, pv_q_kvar, bid_price,
                               pv_avail_kw):
        """Per-prosumer device totals [kW, kVar] -> normalized actions (N, A) (inverse of apply)."""
        a = np.zeros((self.n, len(ACTION_FIELDS)))
        a[:, ACT["battery"]] = _safe_div(np.asarray(battery_kw, float), self.bat_p_max)
        a[:, ACT["generator"]] = _safe_div(np.asarray(gen_kw, float), self.gen_p_max)
        a[:, ACT["controllable_load"]] = _safe_div(np.asarray(cl_kw, float), self.cl_p_max)
        pv_avail_kw = np.asarray(pv_avail_kw, float)
        a[:, ACT["pv_curtail"]] = _safe_div(np.asarray(curtail_kw, float), pv_avail_kw)
        pv_kw = pv_avail_kw - np.asarray(curtail_kw, float)
        q_cap = np.sqrt(np.clip(self.pv_s_kva ** 2 - pv_kw ** 2, 0.0, None))
        a[:, ACT["pv_q"]] = _safe_div(np.asarray(pv_q_kvar, float), q_cap)
        a[:, ACT["bid_price"]] = bid_price
        return np.clip(a, ACTION_LOW, ACTION_HIGH)


def _safe_div(num, den):
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 1e-12)


def _unit_max(bank, values, n):
    out = np.zeros(n)
    np.maximum.at(out, bank.owner, values)
    return out
