"""CVXPY blocks of the device types, with their prompt text and verification limits.

One ``ExpertBlock`` subclass per device type of simulators/prosumer/devices.py, registered
under the same key with ``@register_block``.  A block declares for its device type:

- ``build(prog, units, own)``: the variables, constraints, costs and net-power terms of the
  basic model (reference.py's docstring) on a DeviceProgram, vectorized over units;
- ``contract_actions(prog, k)``: the contract's action expressions of unit k (P_<tag>{k+1}, ...);
- ``setpoints(prog, row, pv_avail_now)``: per-prosumer totals of a solved row (Fleet set-points);
- ``cost(prog)``: its realized device cost per prosumer of a solved program;
- ``prompt``: the model text the LLM workflow shows (variables / constraints / objective
  lines, unit index ``{i}``, state index ``{i0}``);
- ``test_state(unit, k, n)``: a verification state value of one unit (k-th of n states) and
  ``check(reasons, i, unit, p, state_value, ctx)``: the limits a generated model must respect.

DeviceProgram, the reference model, the joint expert, the prompts and the verification iterate
over BLOCKS in registration order.
"""

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from simulators.prosumer.devices import DEVICES
from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

BLOCKS = {}
"""device key -> ExpertBlock instance, in registration order"""
KW_TOL = 1e-3
"""absolute tolerance on powers [kW] (on top of 1e-4 x the rating) for solver round-off"""


def register_block(cls):
    """Class decorator: the CVXPY block of the registered device type ``cls.key``."""
    if cls.key not in DEVICES:
        raise ConfigError(f"expert block {cls.__name__}: {cls.key!r} is not a registered device type "
                          f"({list(DEVICES)}); register the device type first")
    BLOCKS[cls.key] = cls()
    return cls


def block(key):
    """The block of device type ``key``; ConfigError if the type has none."""
    if key not in BLOCKS:
        raise ConfigError(f"device type {key!r} has no expert block; register one with @register_block")
    return BLOCKS[key]


def col(values):
    return np.asarray(values, dtype=float)


@dataclass
class CheckContext:
    """What a verification check may read: the step window and the state's profiles."""

    dt: float
    """hours per step"""
    steps_of_day: np.ndarray
    """(T,) step of the day of each row"""
    pv_kwp_total: float
    """the prosumer's total PV peak power [kW] (1 without PV)"""
    pv_avail_kw: np.ndarray
    """(T,) available PV power of all units together [kW]"""


def bound(reasons, name, p, lo, hi, rating):
    """Append a reason if ``p`` (T,) leaves [lo, hi] by more than the solver tolerance."""
    tol = KW_TOL + 1e-4 * rating
    lo_bad = p < np.asarray(lo) - tol
    hi_bad = p > np.asarray(hi) + tol
    if lo_bad.any() or hi_bad.any():
        t = int(np.argmax(lo_bad | hi_bad))
        limit = np.broadcast_to(lo if lo_bad[t] else hi, p.shape)[t]
        reasons.append(f"{name}: {p[t]:.3f} kW at step {t} beyond its limit {limit:.3f} kW "
                       f"({int((lo_bad | hi_bad).sum())} steps out of bounds)")


class ExpertBlock:
    key = ""
    prompt = {"variables": [], "constraints": [], "objective": []}
    totals = ()
    """set-point names this block returns from ``setpoints``"""

    @staticmethod
    def per_prosumer(prog, key, x, row):
        """Unit values of ``row`` summed per prosumer (N,)."""
        return np.asarray(x[row], dtype=float) @ prog.owner[key]

    def test_state(self, unit, k, n, t):
        """State value of ``unit`` in the k-th of n verification states (at step ``t``)."""
        return None

    def check(self, reasons, i, unit, p, state_value, ctx):
        """Append the reasons why unit i's contract power ``p`` (T,) breaks a device limit."""

    def build(self, prog, units, own):
        """Add the block to DeviceProgram ``prog``: units (K,) specs, own (K, N) unit-to-prosumer."""
        raise NotImplementedError


@register_block
class PVBlock(ExpertBlock):
    key = "pv"
    totals = ("pv_kw", "curtail_kw", "pv_q_kvar")
    prompt = {
        "variables": ["P_RDG{i}[t] >= 0: PV power fed in after curtailment [kW]",
                      "Q_RDG{i}[t]: PV inverter reactive power [kVar] (optional, no cost)"],
        "constraints": ["P_RDG{i}[t] <= share{i} * pv_avail[t], share{i} = kwp{i} / total kWp",
                        "P_RDG{i}[t]^2 + Q_RDG{i}[t]^2 <= S{i}^2 (inverter rating)"],
        "objective": [],
    }

    def build(self, prog, units, own):
        R, K = prog.R, len(units)
        kwp = col([u.kwp for u in units])
        owner = own.indices  # one entry per CSR row: the owning prosumer of each unit
        total = (own.T @ kwp)[owner]
        share = np.where(total > 0, kwp / np.maximum(total, 1e-12), 0.0)  # all-zero kWp: no PV at all
        prog.pv_share = sp.csr_matrix((share, (np.arange(K), owner)), shape=own.shape)
        pv = cp.Variable((R, K), nonneg=True, name="pv_kw")
        q = cp.Variable((R, K), name="pv_q_kvar")
        prog.constraints.append(pv <= prog.param["pv_avail_kw"] @ prog.pv_share.T)  # each unit's kWp share
        if prog.inverter == "cone":
            s_kva = np.tile(col([u.s_kva for u in units]), R)  # vec order 'C': row-major over (R, K)
            prog.constraints.append(cp.SOC(s_kva, cp.vstack([cp.vec(pv, order="C"), cp.vec(q, order="C")]), axis=0))
        else:
            q_cap = cp.Parameter((R, K), nonneg=True, name="pv_q_cap_kvar")
            prog.constraints += [q <= q_cap, q >= -q_cap]
            prog.param["pv_q_cap_kvar"] = q_cap
        prog.var.update(pv_kw=pv, pv_q_kvar=q)
        prog.net = prog.net - pv @ own
        prog.q_inj = prog.q_inj + q @ own
        prog.quantity["curtail_kw"] = prog.param["pv_avail_kw"] - pv @ own

    def contract_actions(self, prog, k):
        return {f"P_RDG{k + 1}": prog.var["pv_kw"][:, k], f"Q_RDG{k + 1}": prog.var["pv_q_kvar"][:, k]}

    def setpoints(self, prog, row, pv_avail_now):
        pv = np.maximum(self.per_prosumer(prog, self.key, prog.var["pv_kw"].value, row), 0.0)
        return {"pv_kw": pv, "curtail_kw": np.clip(pv_avail_now - pv, 0.0, None),
                "pv_q_kvar": self.per_prosumer(prog, self.key, prog.var["pv_q_kvar"].value, row)}

    def cost(self, prog):
        return np.zeros(prog.n)

    def check(self, reasons, i, unit, p, state_value, ctx):
        bound(reasons, f"P_RDG{i}", p, 0.0, ctx.pv_avail_kw * unit.kwp / ctx.pv_kwp_total, unit.kwp)


@register_block
class BatteryBlock(ExpertBlock):
    key = "batteries"
    totals = ("battery_kw",)
    prompt = {
        "variables": ["P_ch{i}[t], P_dis{i}[t] >= 0: charging and discharging power [kW]",
                      "E{i}[t]: stored energy at the end of step t [kWh]",
                      "P_BESS{i}[t] = P_ch{i}[t] - P_dis{i}[t] (> 0 charges)"],
        "constraints": ["P_ch{i}[t] <= p_max{i}, P_dis{i}[t] <= p_max{i}",
                        "E{i}[t] = E{i}[t-1] + dt * (eta_c{i} * P_ch{i}[t] - P_dis{i}[t] / eta_d{i}),"
                        " E{i}[-1] = state['soc_kwh'][{i0}]",
                        "soc_min{i} * capacity{i} <= E{i}[t] <= soc_max{i} * capacity{i}"],
        "objective": ["C_BESS{i} = dt * cost{i} * sum_t(P_ch{i}[t] + P_dis{i}[t])"],
    }

    def build(self, prog, units, own):
        R, K = prog.R, len(units)
        soc0 = cp.Parameter(K, nonneg=True, name="soc0_kwh")
        ch = cp.Variable((R, K), nonneg=True, name="charge_kw")
        dis = cp.Variable((R, K), nonneg=True, name="discharge_kw")
        soc = cp.Variable((R, K), name="soc_kwh")  # stored energy at the end of each row
        energy = prog.weighted(ch @ sp.diags(col([u.eta_charge for u in units]))
                               - dis @ sp.diags(1.0 / col([u.eta_discharge for u in units])), prog.dt)
        cap = col([u.capacity_kwh for u in units])
        ub = prog.bound(units)
        first = soc[0] == soc0 + energy[0]
        prog.constraints += [ch <= ub, dis <= ub, first,
                             soc >= np.tile(col([u.soc_min for u in units]) * cap, (R, 1)),
                             soc <= np.tile(col([u.soc_max for u in units]) * cap, (R, 1))]
        later = soc[1:] == soc[:-1] + energy[1:] if R > 1 else None
        if later is not None:
            prog.constraints.append(later)
        prog.dynamics["soc_kwh"] = (first, later)
        prog.cost = prog.cost + cp.sum(prog.weighted(ch + dis, prog.dt) @ col([u.cost_eur_per_kwh for u in units]))
        prog.param["soc_kwh"] = soc0
        prog.var.update(charge_kw=ch, discharge_kw=dis, soc_kwh=soc)
        prog.net = prog.net + (ch - dis) @ own
        prog.quantity["soc_kwh"] = soc @ own

    def contract_actions(self, prog, k):
        return {f"P_BESS{k + 1}": prog.var["charge_kw"][:, k] - prog.var["discharge_kw"][:, k]}

    def setpoints(self, prog, row, pv_avail_now):
        v = prog.var
        return {"battery_kw": self.per_prosumer(prog, self.key, v["charge_kw"].value - v["discharge_kw"].value, row)}

    def cost(self, prog):
        v, units = prog.var, prog.units[self.key]
        thr = prog.dt @ (v["charge_kw"].value + v["discharge_kw"].value)
        return (thr * [u.cost_eur_per_kwh for u in units]) @ prog.owner[self.key]

    def test_state(self, b, k, n, t):
        frac = 0.25 + 0.5 * k / n  # SoC position between the bounds, varied per state
        return b.capacity_kwh * (b.soc_init if k == 0 else b.soc_min + frac * (b.soc_max - b.soc_min))

    def check(self, reasons, i, b, p, soc0, ctx):
        bound(reasons, f"P_BESS{i}", p, -b.p_max_kw, b.p_max_kw, b.p_max_kw)
        soc = soc0 + np.cumsum(np.where(p > 0, b.eta_charge * p, p / b.eta_discharge) * ctx.dt)
        tol = KW_TOL * ctx.dt + 1e-4 * b.capacity_kwh
        if soc.min() < b.soc_min * b.capacity_kwh - tol or soc.max() > b.soc_max * b.capacity_kwh + tol:
            reasons.append(f"BESS{i}: stored energy replayed with the efficiencies leaves "
                           f"[{b.soc_min * b.capacity_kwh:.3f}, {b.soc_max * b.capacity_kwh:.3f}] kWh "
                           f"(range {soc.min():.3f}..{soc.max():.3f})")


@register_block
class GeneratorBlock(ExpertBlock):
    key = "generators"
    totals = ("gen_kw",)
    prompt = {
        "variables": ["P_CDG{i}[t] >= 0: generator output [kW]"],
        "constraints": ["P_CDG{i}[t] <= p_max{i} (on/off with p_min relaxed to 0..p_max)",
                        "|P_CDG{i}[t] - P_CDG{i}[t-1]| <= ramp{i} + p_min{i} if ramp{i} > 0,"
                        " P_CDG{i}[-1] = state['gen_last_kw'][{i0}]"],
        "objective": ["C_CDG{i} = dt * sum_t(a{i} * P_CDG{i}[t]^2 + (b{i} + c{i} / p_max{i}) * P_CDG{i}[t])"
                      " (c{i} / p_max{i} * P: convex envelope of the no-load cost)"],
    }

    def build(self, prog, units, own):
        R, K = prog.R, len(units)
        gen_last = cp.Parameter(K, nonneg=True, name="gen_last_kw")
        gen = cp.Variable((R, K), nonneg=True, name="gen_kw")
        prog.constraints.append(gen <= prog.bound(units))
        ramp = col([u.ramp_kw_per_step for u in units])
        limited = np.flatnonzero(ramp > 0)
        if limited.size:
            # the output before the first active row is gen_last (the inactive rows are held at 0)
            g0 = cp.Variable(K, name="gen_initial_kw")
            start = cp.reshape(prog.param["first"], (R, 1), order="C") @ cp.reshape(g0, (1, K), order="C")
            prev = start if R == 1 else cp.vstack([np.zeros((1, K)), gen[:-1]]) + start
            pick = sp.csr_matrix((np.ones(limited.size), (limited, np.arange(limited.size))), shape=(K, limited.size))
            step = (gen - prev) @ pick
            centres = (np.concatenate([[1], prog.dur[:-1]]) + prog.dur) / 2.0  # steps between row centres
            lim = np.outer(centres, ramp[limited] + col([units[k].p_min_kw for k in limited]))
            prog.constraints += [g0 == gen_last, step <= lim, step >= -lim]
        a = col([u.cost_a_eur_per_kw2h for u in units])
        quad = sp.diags(np.sqrt(prog.dt)) @ gen @ sp.diags(np.sqrt(a))
        prog.cost = prog.cost + cp.sum_squares(quad) + cp.sum(prog.weighted(gen, prog.dt) @ self._linear(units))
        prog.param["gen_last_kw"] = gen_last
        prog.var["gen_kw"] = gen
        prog.net = prog.net - gen @ own
        prog.quantity["gen_kw"] = gen @ own

    @staticmethod
    def _linear(units):
        return col([u.cost_b_eur_per_kwh + u.cost_c_eur_per_h / u.p_max_kw for u in units])

    def contract_actions(self, prog, k):
        return {f"P_CDG{k + 1}": prog.var["gen_kw"][:, k]}

    def setpoints(self, prog, row, pv_avail_now):
        return {"gen_kw": np.maximum(self.per_prosumer(prog, self.key, prog.var["gen_kw"].value, row), 0.0)}

    def cost(self, prog):
        units, g = prog.units[self.key], prog.var["gen_kw"].value
        a = col([u.cost_a_eur_per_kw2h for u in units])
        return (prog.dt @ (a * g ** 2 + self._linear(units) * g)) @ prog.owner[self.key]

    def test_state(self, g, k, n, t):
        return 0.0 if k == 0 else 0.5 * g.p_max_kw

    def check(self, reasons, i, g, p, gen_last, ctx):
        bound(reasons, f"P_CDG{i}", p, 0.0, g.p_max_kw, g.p_max_kw)
        if g.ramp_kw_per_step > 0:  # the fleet lets a unit start at / stop from p_min: ramp + p_min
            steps = np.abs(np.diff(np.concatenate([[gen_last], p])))
            lim = g.ramp_kw_per_step + g.p_min_kw
            if steps.max() > lim + KW_TOL + 1e-4 * g.p_max_kw:
                reasons.append(f"P_CDG{i}: ramp {steps.max():.3f} kW per step exceeds {lim:g} kW")


@register_block
class ControllableLoadBlock(ExpertBlock):
    key = "controllable_loads"
    totals = ("cl_kw",)
    prompt = {
        "variables": ["P_CL{i}[t] >= 0: controllable-load power [kW]",
                      "U{i} >= 0: energy still unserved at the deadline [kWh]"],
        "constraints": ["P_CL{i}[t] <= p_max{i} for earliest{i} <= time + t < deadline{i}, else P_CL{i}[t] == 0",
                        "U{i} >= state['cl_remaining_kwh'][{i0}] - dt * sum_t P_CL{i}[t]",
                        "dt * sum_t P_CL{i}[t] <= state['cl_remaining_kwh'][{i0}]"],
        "objective": ["C_CL{i} = penalty{i} * U{i}"],
    }

    def build(self, prog, units, own):
        R, K = prog.R, len(units)
        remaining = cp.Parameter(K, nonneg=True, name="cl_remaining_kwh")
        cl = cp.Variable((R, K), nonneg=True, name="cl_kw")
        served = cp.Variable((R, K), nonneg=True, name="cl_served_kwh")  # cumulative: a chain, not a dense row
        unserved = cp.Variable(K, nonneg=True, name="cl_unserved_kwh")
        steps = np.arange(STEPS_PER_DAY)[:, None]
        in_window = ((steps >= col([u.earliest_step for u in units]))
                     & (steps < col([u.deadline_step for u in units]))).astype(float)
        frac = prog.row_mean(in_window[prog.first_step:])  # share of each row's steps inside the window
        energy = prog.weighted(cl, prog.dt)
        prog.constraints += [cl <= cp.multiply(prog.bound(units), frac), served[0] == energy[0],
                             served[R - 1] <= remaining, unserved >= remaining - served[R - 1]]
        if R > 1:
            prog.constraints.append(served[1:] == served[:-1] + energy[1:])
        prog.penalty = prog.penalty + unserved @ col([u.unserved_penalty_eur_per_kwh for u in units])
        prog.param["cl_remaining_kwh"] = remaining
        prog.var.update(cl_kw=cl, cl_unserved_kwh=unserved)
        prog.net = prog.net + cl @ own
        prog.quantity["cl_kw"] = cl @ own

    def contract_actions(self, prog, k):
        return {f"P_CL{k + 1}": prog.var["cl_kw"][:, k]}

    def setpoints(self, prog, row, pv_avail_now):
        return {"cl_kw": np.maximum(self.per_prosumer(prog, self.key, prog.var["cl_kw"].value, row), 0.0)}

    def cost(self, prog):
        units = prog.units[self.key]
        return (prog.var["cl_unserved_kwh"].value * [u.unserved_penalty_eur_per_kwh for u in units]) @ prog.owner[
            self.key]

    def test_state(self, c, k, n, t):
        return 0.0 if t >= c.deadline_step else c.energy_kwh * (1.0 if k == 0 else 0.6)

    def check(self, reasons, i, c, p, remaining, ctx):
        window = (ctx.steps_of_day >= c.earliest_step) & (ctx.steps_of_day < c.deadline_step)
        bound(reasons, f"P_CL{i}", p, 0.0, np.where(window, c.p_max_kw, 0.0), c.p_max_kw)
        served = float(p.sum() * ctx.dt)
        if served > remaining + KW_TOL * ctx.dt * len(p):
            reasons.append(f"P_CL{i}: serves {served:.3f} kWh, more than the {remaining:.3f} kWh still needed")
