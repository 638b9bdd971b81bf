"""Vectorized cvxpy blocks of the prosumer devices: the basic model of reference.py for N prosumers.

``DeviceProgram(specs, rows)`` builds, for every device type, one matrix Variable shaped
(rows, units) and the constraints and costs of the basic model (see reference.py's module
docstring for the model and its relaxations).  Every number that changes between solves (the
profiles, the device state, which rows are still ahead) is a cvxpy Parameter, so a problem
built once re-solves without recompiling (DPP); parameters enter only right-hand sides and
linear cost weights.

Rows: row r covers ``rows[r]`` consecutive 15-minute steps starting at ``start[r]``; the rows
end with the day (step 95).  A row of one step is the contract's resolution; longer rows let
the joint expert plan the far part of the day coarsely (move blocking).  A coarse row holds
the average power of its steps, its energy is Δt·rows[r]·power, its ramp limit is scaled by
the distance between row centres, and a preference covers it when at least half its steps
are concerned.  ``set(time, ...)`` masks the rows before ``time`` (*inactive*): their device
bounds are 0 and their slacks cost nothing, so one compiled problem serves several steps.
"""

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from agents.expert.preferences import PREFERENCE_PENALTY_EUR, parse_preferences
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_finite

STATE_LISTS = {"soc_kwh": "batteries", "gen_last_kw": "generators", "cl_remaining_kwh": "controllable_loads"}
"""per-unit state entries and the device list of ProsumerSpec they belong to"""


def _owner(specs, attr):
    """(units, owner matrix (K, N) sparse): every unit of device list ``attr`` and its prosumer."""
    units = [(i, u) for i, s in enumerate(specs) for u in getattr(s, attr)]
    cols = np.array([i for i, _ in units], dtype=int)
    own = sp.csr_matrix((np.ones(len(units)), (np.arange(len(units)), cols)), shape=(len(units), len(specs)))
    return [u for _, u in units], own


def _col(values):
    return np.asarray(values, dtype=float)


class DeviceProgram:
    """Devices of N prosumers from step ``96 - sum(rows)`` to the end of the day, as cvxpy blocks.

    ``rows``: an int T (T one-step rows) or a sequence of steps per row.
    ``inverter``: 'cone' models P² + Q² <= S² exactly (a second-order cone per row and unit);
    'box' uses |Q| <= sqrt(S² − P_avail²): exact when nothing is curtailed, conservative
    otherwise (curtailing buys no reactive range).  The joint expert uses the box: cvxpy's DPP
    canonicalization of thousands of cones next to ~10^4 Parameters took ~25 s per compile.

    Attributes: ``net`` (R, N) meter power, load convention [kW]; ``q_inj`` (R, N) inverter
    reactive injection [kVar]; ``cost`` device costs and ``penalty`` unserved-CL + preference
    penalties [EUR]; ``constraints``; ``var`` / ``param`` dicts; ``units`` / ``owner`` per
    device list (unit specs, (K, N) sparse unit-to-prosumer); ``quantity`` dict of (R, N)
    expressions that preferences constrain; ``dur`` (R,) steps per row, ``start`` (R,) steps.
    """

    def __init__(self, specs, rows, inverter="cone"):
        self.specs, self.n = list(specs), len(specs)
        self.dur = np.ones(int(rows), dtype=int) if np.ndim(rows) == 0 else np.asarray(rows, dtype=int)
        if self.dur.size == 0 or (self.dur < 1).any() or self.dur.sum() > STEPS_PER_DAY:
            raise ConfigError(f"rows: {rows!r} must be positive step counts adding up to at most {STEPS_PER_DAY}")
        self.inverter = check_choice("inverter", inverter, ("cone", "box"))
        self.R = R = len(self.dur)
        self.horizon = int(self.dur.sum())
        self.first_step = STEPS_PER_DAY - self.horizon
        self.start = self.first_step + np.concatenate([[0], np.cumsum(self.dur)[:-1]])
        self.dt = self.dur * STEP_H  # hours per row
        self.units, self.owner = {}, {}
        for attr in ("pv", "batteries", "generators", "controllable_loads"):
            self.units[attr], self.owner[attr] = _owner(self.specs, attr)
        n = self.n
        self.param = {"load_kw": cp.Parameter((R, n), name="load_kw"),
                      "load_kvar": cp.Parameter((R, n), name="load_kvar"),
                      "pv_avail_kw": cp.Parameter((R, n), nonneg=True, name="pv_avail_kw"),
                      "active": cp.Parameter(R, nonneg=True, name="active"),
                      "first": cp.Parameter(R, nonneg=True, name="first_active_row")}
        self.on = cp.reshape(self.param["active"], (R, 1), order="C")
        self.var, self.constraints, self.quantity = {}, [], {}
        self.net = self.param["load_kw"]
        self.q_inj = cp.Constant(np.zeros((R, n)))
        self.cost, self.penalty = cp.Constant(0.0), cp.Constant(0.0)
        for attr, block in (("pv", self._pv), ("batteries", self._batteries), ("generators", self._generators),
                            ("controllable_loads", self._controllable_loads)):
            if self.units[attr]:
                block(self.units[attr], self.owner[attr])
        self.quantity.update(net_kw=self.net, export_kw=-self.net)
        self.preferences = [parse_preferences(s) for s in self.specs]
        self._soft_preferences()

    def _bound(self, units, attr="p_max_kw"):
        """(R, K) Parameter-affine bound: each unit's rating on active rows, 0 on inactive ones."""
        return self.on @ _col([getattr(u, attr) for u in units])[None, :]

    def _weighted(self, x, hours):
        """x (R, K) with row r scaled by hours[r]: energies from powers."""
        return sp.diags(hours) @ x

    # ---- device blocks -------------------------------------------------------------------
    def _pv(self, units, own):
        R, K = self.R, len(units)
        kwp = _col([u.kwp for u in units])
        owner = own.indices  # one entry per CSR row: the owning prosumer of each unit
        total = (own.T @ kwp)[owner]
        share = np.where(total > 0, kwp / np.maximum(total, 1e-12), 0.0)  # all-zero kWp: no PV at all
        self.pv_share = sp.csr_matrix((share, (np.arange(K), owner)), shape=own.shape)
        pv = cp.Variable((R, K), nonneg=True, name="pv_kw")
        q = cp.Variable((R, K), name="pv_q_kvar")
        self.constraints.append(pv <= self.param["pv_avail_kw"] @ self.pv_share.T)  # each unit's kWp share
        if self.inverter == "cone":
            s_kva = np.tile(_col([u.s_kva for u in units]), R)  # vec order 'C': row-major over (R, K)
            self.constraints.append(cp.SOC(s_kva, cp.vstack([cp.vec(pv, order="C"), cp.vec(q, order="C")]), axis=0))
        else:
            q_cap = cp.Parameter((R, K), nonneg=True, name="pv_q_cap_kvar")
            self.constraints += [q <= q_cap, q >= -q_cap]
            self.param["pv_q_cap_kvar"] = q_cap
        self.var.update(pv_kw=pv, pv_q_kvar=q)
        self.net = self.net - pv @ own
        self.q_inj = q @ own
        self.quantity["curtail_kw"] = self.param["pv_avail_kw"] - pv @ own

    def _batteries(self, units, own):
        R, K = self.R, len(units)
        soc0 = cp.Parameter(K, nonneg=True, name="soc0_kwh")
        ch = cp.Variable((R, K), nonneg=True, name="charge_kw")
        dis = cp.Variable((R, K), nonneg=True, name="discharge_kw")
        soc = cp.Variable((R, K), name="soc_kwh")  # stored energy at the end of each row
        energy = self._weighted(ch @ sp.diags(_col([u.eta_charge for u in units]))
                                - dis @ sp.diags(1.0 / _col([u.eta_discharge for u in units])), self.dt)
        cap = _col([u.capacity_kwh for u in units])
        ub = self._bound(units)
        self.constraints += [ch <= ub, dis <= ub, soc[0] == soc0 + energy[0],
                             soc >= np.tile(_col([u.soc_min for u in units]) * cap, (R, 1)),
                             soc <= np.tile(_col([u.soc_max for u in units]) * cap, (R, 1))]
        if R > 1:
            self.constraints.append(soc[1:] == soc[:-1] + energy[1:])
        self.cost = self.cost + cp.sum(self._weighted(ch + dis, self.dt) @ _col([u.cost_eur_per_kwh for u in units]))
        self.param["soc0_kwh"] = soc0
        self.var.update(charge_kw=ch, discharge_kw=dis, soc_kwh=soc)
        self.net = self.net + (ch - dis) @ own
        self.quantity["soc_kwh"] = soc @ own

    def _generators(self, units, own):
        R, K = self.R, len(units)
        gen_last = cp.Parameter(K, nonneg=True, name="gen_last_kw")
        gen = cp.Variable((R, K), nonneg=True, name="gen_kw")
        self.constraints.append(gen <= self._bound(units))
        ramp = _col([u.ramp_kw_per_step for u in units])
        limited = np.flatnonzero(ramp > 0)
        if limited.size:
            # the output before the first active row is gen_last (the inactive rows are held at 0)
            g0 = cp.Variable(K, name="gen_initial_kw")
            start = cp.reshape(self.param["first"], (R, 1), order="C") @ cp.reshape(g0, (1, K), order="C")
            prev = start if R == 1 else cp.vstack([np.zeros((1, K)), gen[:-1]]) + start
            pick = sp.csr_matrix((np.ones(limited.size), (limited, np.arange(limited.size))), shape=(K, limited.size))
            step = (gen - prev) @ pick
            centres = (np.concatenate([[1], self.dur[:-1]]) + self.dur) / 2.0  # steps between row centres
            lim = np.outer(centres, ramp[limited] + _col([units[k].p_min_kw for k in limited]))
            self.constraints += [g0 == gen_last, step <= lim, step >= -lim]
        a = _col([u.cost_a_eur_per_kw2h for u in units])
        lin = _col([u.cost_b_eur_per_kwh + u.cost_c_eur_per_h / u.p_max_kw for u in units])
        quad = sp.diags(np.sqrt(self.dt)) @ gen @ sp.diags(np.sqrt(a))
        self.cost = self.cost + cp.sum_squares(quad) + cp.sum(self._weighted(gen, self.dt) @ lin)
        self.param["gen_last_kw"] = gen_last
        self.var["gen_kw"] = gen
        self.net = self.net - gen @ own
        self.quantity["gen_kw"] = gen @ own

    def _controllable_loads(self, units, own):
        R, K = self.R, len(units)
        remaining = cp.Parameter(K, nonneg=True, name="cl_remaining_kwh")
        cl = cp.Variable((R, K), nonneg=True, name="cl_kw")
        served = cp.Variable((R, K), nonneg=True, name="cl_served_kwh")  # cumulative: a chain, not a dense row
        unserved = cp.Variable(K, nonneg=True, name="cl_unserved_kwh")
        steps = np.arange(STEPS_PER_DAY)[:, None]
        in_window = ((steps >= _col([u.earliest_step for u in units]))
                     & (steps < _col([u.deadline_step for u in units]))).astype(float)
        frac = self.row_mean(in_window[self.first_step:])  # share of each row's steps inside the window
        energy = self._weighted(cl, self.dt)
        self.constraints += [cl <= cp.multiply(self._bound(units), frac), served[0] == energy[0],
                             served[R - 1] <= remaining, unserved >= remaining - served[R - 1]]
        if R > 1:
            self.constraints.append(served[1:] == served[:-1] + energy[1:])
        self.penalty = self.penalty + unserved @ _col([u.unserved_penalty_eur_per_kwh for u in units])
        self.param["cl_remaining_kwh"] = remaining
        self.var.update(cl_kw=cl, cl_unserved_kwh=unserved)
        self.net = self.net + cl @ own
        self.quantity["cl_kw"] = cl @ own

    def _soft_preferences(self):
        """One slack per (preference, concerned row); slacks of inactive rows cost nothing."""
        groups = {}
        for i, prefs in enumerate(self.preferences):
            for p in prefs:
                share = self.row_mean(p.mask[self.first_step:, None].astype(float))[:, 0]
                rows = np.flatnonzero(share >= 0.5)
                groups.setdefault((p.quantity, p.sense), []).extend((r, i, p.bound) for r in rows)
        self.pref_slacks = {}
        for (quantity, sense), entries in groups.items():
            if not entries:  # the preference concerns only steps before this program's rows
                continue
            r, i, bound = (np.array(x) for x in zip(*entries))
            m = len(r)
            pick = sp.csr_matrix((np.ones(m), (np.arange(m), r * self.n + i)), shape=(m, self.R * self.n))
            at_row = sp.csr_matrix((self.dt[r], (np.arange(m), r)), shape=(m, self.R))
            eps = cp.Variable(m, nonneg=True, name=f"eps_{quantity}_{sense}")
            x = pick @ cp.vec(self.quantity[quantity], order="C")
            self.constraints.append(x <= bound + eps if sense == "max" else x >= bound - eps)
            weight = at_row @ self.param["active"]  # Δt of the row while it is ahead, else 0
            self.penalty = self.penalty + PREFERENCE_PENALTY_EUR * cp.sum(cp.multiply(weight, eps))
            self.pref_slacks[(quantity, sense)] = (r, i, eps)

    # ---- parameters ----------------------------------------------------------------------
    def row_mean(self, per_step):
        """(horizon, K) values per step -> (R, K) mean over each row's steps."""
        edges = np.concatenate([[0], np.cumsum(self.dur)])
        return np.add.reduceat(np.asarray(per_step, dtype=float), edges[:-1], axis=0) / self.dur[:, None]

    def set(self, time, load_kw, pv_avail_kw, soc_kwh=(), gen_last_kw=(), cl_remaining_kwh=(), load_kvar=None):
        """Write the state at step ``time`` and the profiles of steps time..95 ((96 - time, N) arrays)."""
        time = int(time)
        if time not in set(self.start.tolist()):
            raise ConfigError(f"time: step {time} is not the first step of a row of this program "
                              f"(rows start at {self.start.tolist()})")
        r0 = int(np.flatnonzero(self.start == time)[0])
        p = self.param
        p["load_kw"].value = self._rows("load_kw", load_kw, time)
        kvar = np.zeros_like(np.asarray(load_kw, dtype=float)) if load_kvar is None else load_kvar
        p["load_kvar"].value = self._rows("load_kvar", kvar, time)
        avail = np.maximum(self._rows("pv_avail_kw", pv_avail_kw, time), 0.0)
        p["pv_avail_kw"].value = avail
        p["active"].value = (np.arange(self.R) >= r0).astype(float)
        p["first"].value = (np.arange(self.R) == r0).astype(float)
        if "pv_q_cap_kvar" in p:
            s_kva = _col([u.s_kva for u in self.units["pv"]])
            p["pv_q_cap_kvar"].value = np.sqrt(np.clip(s_kva ** 2 - (avail @ self.pv_share.T) ** 2, 0.0, None))
        state = {"soc_kwh": soc_kwh, "gen_last_kw": gen_last_kw, "cl_remaining_kwh": cl_remaining_kwh}
        for name, attr in STATE_LISTS.items():
            if self.units[attr]:
                p["soc0_kwh" if name == "soc_kwh" else name].value = self._state(name, state[name], attr)

    def _rows(self, name, x, time):
        x = check_finite(name, x)
        x = x.reshape(-1, 1) if x.ndim == 1 and self.n == 1 else x
        if x.shape != (STEPS_PER_DAY - time, self.n):
            raise ConfigError(f"{name}: expected shape {(STEPS_PER_DAY - time, self.n)} (steps {time}..95 x "
                              f"prosumers), got {x.shape}")
        full = np.zeros((self.horizon, self.n))
        full[time - self.first_step:] = x
        return self.row_mean(full)

    def _state(self, name, values, attr):
        x = check_finite(name, np.atleast_1d(np.asarray(values, dtype=float)))
        if x.shape != (len(self.units[attr]),):
            raise ConfigError(f"{name}: expected one value per unit of {attr} ({len(self.units[attr])}), got {x.shape}")
        return np.maximum(x, 0.0)

    # ---- reading the solution ------------------------------------------------------------
    def totals(self, row):
        """Device totals per prosumer (N,) at ``row`` of the current solution [kW / kVar]."""
        v, own, z = self.var, self.owner, np.zeros(self.n)

        def per(attr, x):
            return np.asarray(x[row], dtype=float) @ own[attr] if self.units[attr] else z

        battery = v["charge_kw"].value - v["discharge_kw"].value if "charge_kw" in v else None
        return {"battery_kw": per("batteries", battery) if battery is not None else z,
                "gen_kw": np.maximum(per("generators", v["gen_kw"].value), 0.0) if "gen_kw" in v else z,
                "cl_kw": np.maximum(per("controllable_loads", v["cl_kw"].value), 0.0) if "cl_kw" in v else z,
                "pv_kw": np.maximum(per("pv", v["pv_kw"].value), 0.0) if "pv_kw" in v else z,
                "pv_q_kvar": per("pv", v["pv_q_kvar"].value) if "pv_q_kvar" in v else z}
