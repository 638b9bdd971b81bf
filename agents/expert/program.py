"""Vectorized cvxpy blocks of the prosumer devices: the basic model of reference.py for N prosumers.

``DeviceProgram(specs, rows)`` builds, for every device type with units, its block of
agents/expert/blocks.py: matrix Variables shaped (rows, units) and the constraints and costs
of the basic model (see reference.py's module docstring for the model and its relaxations).
Every number that changes between solves (the
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

from agents.expert.blocks import BLOCKS
from agents.expert.preferences import PREFERENCE_PENALTY_EUR, parse_preferences
from simulators.prosumer.devices import DEVICES
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_finite


def state_lists():
    """Per-unit state entries of the contract -> the device list of ProsumerSpec they belong to."""
    return {d.state: key for key, d in DEVICES.items() if d.state}


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
        for key in DEVICES:
            self.units[key], self.owner[key] = _owner(self.specs, key)
        missing = sorted(k for k in DEVICES if self.units[k] and k not in BLOCKS)
        if missing:
            raise ConfigError(f"specs: device type(s) {missing} have units but no expert block (agents/expert/blocks.py)")
        n = self.n
        self.param = {"load_kw": cp.Parameter((R, n), name="load_kw"),
                      "load_kvar": cp.Parameter((R, n), name="load_kvar"),
                      "pv_avail_kw": cp.Parameter((R, n), nonneg=True, name="pv_avail_kw"),
                      "active": cp.Parameter(R, nonneg=True, name="active"),
                      "first": cp.Parameter(R, nonneg=True, name="first_active_row")}
        self.on = cp.reshape(self.param["active"], (R, 1), order="C")
        self.var, self.constraints, self.quantity = {}, [], {}
        self.dynamics = {}
        """state name -> (first-row constraint, later-rows constraint) of a stored quantity's balance, whose duals
        price one more unit of it at the start of each row (agents/expert/joint.py stored_energy_value)"""
        self.net = self.param["load_kw"]
        self.q_inj = cp.Constant(np.zeros((R, n)))
        self.cost, self.penalty = cp.Constant(0.0), cp.Constant(0.0)
        for key, block in BLOCKS.items():
            if self.units[key]:
                block.build(self, self.units[key], self.owner[key])
        self.quantity.update(net_kw=self.net, export_kw=-self.net)
        self.preferences = [parse_preferences(s) for s in self.specs]
        self._soft_preferences()

    def bound(self, units, attr="p_max_kw"):
        """(R, K) Parameter-affine bound: each unit's rating on active rows, 0 on inactive ones."""
        return self.on @ _col([getattr(u, attr) for u in units])[None, :]

    def weighted(self, x, hours):
        """x (R, K) with row r scaled by hours[r]: energies from powers."""
        return sp.diags(hours) @ x

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

    def set(self, time, load_kw, pv_avail_kw, state=None, load_kvar=None):
        """Write the state at step ``time`` and the profiles of steps time..95 ((96 - time, N) arrays).

        ``state``: per-unit device state {state name (state_lists()): values}; a device type
        without units needs no entry."""
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
        state = state or {}
        for name, attr in state_lists().items():
            if self.units[attr]:
                if name not in state:
                    raise ConfigError(f"state[{name!r}]: missing; {len(self.units[attr])} values of {attr} needed")
                p[name].value = self._state(name, state[name], attr)

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
    def setpoints(self, row, pv_avail_now):
        """Device set-points per prosumer (N,) at ``row`` of the current solution [kW / kVar]:
        every block's totals (battery_kw, gen_kw, cl_kw, pv_kw, curtail_kw, pv_q_kvar, ...);
        zeros for a device type without units."""
        out = {}
        for key, block in BLOCKS.items():
            if self.units[key]:
                out.update(block.setpoints(self, row, np.asarray(pv_avail_now, float)))
            else:
                out.update({name: np.zeros(self.n) for name in block.totals})
        return out

    def device_cost(self):
        """Realized device cost + unserved penalty per prosumer (N,) [EUR] of the current solution."""
        return sum((BLOCKS[k].cost(self) for k in BLOCKS if self.units[k]), np.zeros(self.n))
