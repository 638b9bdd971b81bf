"""Pluggable grid models: one interface, three power-flow methods, chosen by name from GRIDS.

Every model takes a pandapower net and the prosumer buses.  The native loads and static
generators at prosumer buses are replaced (set to 0): the prosumers connected there bring
their own demand and PV.  Loads and sgens at other buses stay as constant background.
``solve(p_mw, q_mvar)`` adds the prosumers' net demand per bus (arrays ordered like
``bus_ids``, load convention: > 0 consumption, < 0 injection) and returns a PowerFlowResult.

A power flow that does not converge is never an exception and never a stale value: the
result has ``converged=False`` and NaN everywhere, and the model counts it in
``n_nonconverged``.

- ``ac``: exact AC Newton-Raphson through lightsim2grid's C++ grid model (~20-60 µs per
  solve), warm-started from the last solution and verified against pandapower at build time.
- ``ac_runpp``: pandapower ``runpp`` on every solve, the reference (milliseconds per solve).
- ``lindistflow``: linearized DistFlow for radial feeders (simulators/grid/lindistflow.py).
"""

import copy
import importlib.util
import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from simulators.grid.lindistflow import VM_TOLERANCE_PU, RadialFeeder, no_load_demand
from simulators.validation import ConfigError, check_choice, check_finite

SQRT3 = math.sqrt(3.0)
HAS_NUMBA = importlib.util.find_spec("numba") is not None
"""runpp(numba=True) without numba installed logs a warning on every call: ask only for what exists"""


@dataclass
class PowerFlowResult:
    """Outcome of one solve; every array NaN when ``converged`` is False."""

    converged: bool
    vm_pu: np.ndarray
    """(n_bus,) voltage magnitude [p.u.], ordered like the model's ``bus_ids``"""
    va_deg: np.ndarray
    """(n_bus,) voltage angle [degree]"""
    line_loading_percent: np.ndarray
    """(n_line,) current over rated current [%], ordered like ``net.line``"""
    losses_mw: float
    """active losses of lines and transformers [MW]"""
    p_slack_mw: float
    """power drawn from the external grid [MW] (> 0: import into the feeder)"""
    trafo_loading_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(n_trafo,) transformer loading [%], ordered like ``net.trafo``"""

    @classmethod
    def failed(cls, n_bus, n_line, n_trafo):
        def nan(n):
            return np.full(n, np.nan)

        return cls(False, nan(n_bus), nan(n_bus), nan(n_line), math.nan, math.nan, nan(n_trafo))

    @property
    def loading_max_percent(self):
        """largest line or transformer loading [%]; NaN when not converged"""
        both = np.concatenate([self.line_loading_percent, self.trafo_loading_percent])
        return float(np.max(both)) if both.size else 0.0


def replace_prosumer_buses(net, prosumer_buses):
    """Deep copy of ``net`` with native loads and sgens at ``prosumer_buses`` set to 0 MW/MVar.

    Raises ConfigError naming the first bus that is not in the net and the allowed set size.
    """
    known = set(int(b) for b in net.bus.index)
    for bus in prosumer_buses:
        if int(bus) not in known:
            raise ConfigError(f"prosumer_buses: bus {bus!r} is not a bus of the network "
                              f"(allowed: one of its {len(known)} bus indices, {min(known)}..{max(known)})")
    net = copy.deepcopy(net)
    for table in ("load", "sgen"):
        at = net[table]["bus"].isin([int(b) for b in prosumer_buses])
        net[table].loc[at, ["p_mw", "q_mvar"]] = 0.0
    return net


def _in_service_sum(df, bus_ids, col):
    """Per-bus sum of ``col * scaling`` over in-service rows of an element table, ordered like bus_ids."""
    on = df["in_service"].to_numpy(dtype=bool)
    values = df[col].to_numpy(dtype=float) * df["scaling"].to_numpy(dtype=float) * on
    pos = np.searchsorted(bus_ids, df["bus"].to_numpy())
    return np.bincount(pos, values, minlength=len(bus_ids)) if len(df) else np.zeros(len(bus_ids))


class GridModel(ABC):
    """Power flow of one feeder with prosumers at given buses.

    Attributes: ``name``; ``bus_ids`` (n_bus,) sorted pandapower bus indices, the order of
    every per-bus array; ``net`` the model's own copy of the net (prosumer buses replaced, plus
    one zero 'prosumer_injection' load per bus); ``p_background_mw``/``q_background_mvar``
    (n_bus,) native demand left at each bus (loads minus sgens, load convention);
    ``n_solves`` and ``n_nonconverged`` counters.
    """

    name = ""

    def __init__(self, net, prosumer_buses=()):
        import pandapower as pp

        self.prosumer_buses = sorted(int(b) for b in (prosumer_buses or ()))
        self.net = replace_prosumer_buses(net, self.prosumer_buses)
        self.bus_ids = np.sort(self.net.bus.index.to_numpy().astype(int))
        self.n_bus, self.n_line, self.n_trafo = len(self.bus_ids), len(self.net.line), len(self.net.trafo)
        self.p_background_mw = (_in_service_sum(self.net.load, self.bus_ids, "p_mw")
                                - _in_service_sum(self.net.sgen, self.bus_ids, "p_mw"))
        self.q_background_mvar = (_in_service_sum(self.net.load, self.bus_ids, "q_mvar")
                                  - _in_service_sum(self.net.sgen, self.bus_ids, "q_mvar"))
        self.bus_in_service = self.net.bus.loc[self.bus_ids, "in_service"].to_numpy(dtype=bool)
        # one load per bus carries the prosumers' demand, so solve() writes a single column
        self.injection_loads = np.asarray(pp.create_loads(self.net, self.bus_ids, p_mw=0.0, q_mvar=0.0,
                                                          name="prosumer_injection"))
        self.n_solves = 0
        self.n_nonconverged = 0

    def solve(self, p_mw, q_mvar):
        """Power flow with prosumer demand ``p_mw``/``q_mvar`` (n_bus,) [MW]/[MVar] added per bus."""
        p = self._check_input("p_mw", p_mw)
        q = self._check_input("q_mvar", q_mvar)
        result = self._solve(p, q)
        self.n_solves += 1
        if not result.converged:
            self.n_nonconverged += 1
        return result

    def solve_aside(self, p_mw, q_mvar):
        """solve() of a counterfactual: the next solve() starts as if this one had not run (the warm start
        is kept) and the counters do not move.  Read the returned result: the model's ``net`` result
        tables hold the counterfactual afterwards.  A model that warm-starts keeps that working by
        overriding ``_warm_state``/``_restore_warm_state`` (RunppGrid and AcGrid do)."""
        p = self._check_input("p_mw", p_mw)
        q = self._check_input("q_mvar", q_mvar)
        state = self._warm_state()
        try:
            return self._solve(p, q)
        finally:
            self._restore_warm_state(state)

    def _warm_state(self):
        """What the next solve starts from (None: nothing, a stateless model)."""
        return None

    def _restore_warm_state(self, state):
        pass

    def reset(self):
        """Forget warm-start state, so the next solve starts as a freshly built model's would
        (episodes of the training environment then repeat bit for bit)."""

    def _check_input(self, field_name, values):
        a = np.asarray(values, dtype=float)
        if a.shape != (self.n_bus,):
            raise ConfigError(f"{field_name}: expected shape ({self.n_bus},) ordered like bus_ids, got {a.shape}")
        return check_finite(field_name, a)

    def _failed(self):
        return PowerFlowResult.failed(self.n_bus, self.n_line, self.n_trafo)

    @abstractmethod
    def _solve(self, p_mw, q_mvar):
        """Solve with validated (n_bus,) arrays; return a PowerFlowResult, never raise on divergence."""


class RunppGrid(GridModel):
    """pandapower ``runpp`` (Newton-Raphson) on every solve: the reference model.

    ``warm_start=True`` starts each solve from the last converged one (``init="results"``),
    which halves the time of a time series; the reference starts from pandapower's default.
    """

    name = "ac_runpp"

    def __init__(self, net, prosumer_buses=(), warm_start=False, tolerance_mva=1e-9):
        super().__init__(net, prosumer_buses)
        self.warm_start = warm_start
        self.tolerance_mva = tolerance_mva
        self._last_converged = False
        self._inj_rows = self.net.load.index.get_indexer(self.injection_loads)
        self._pq_cols = [self.net.load.columns.get_loc(c) for c in ("p_mw", "q_mvar")]
        self._bus_rows = self.net.bus.index.get_indexer(self.bus_ids)

    def reset(self):
        self._last_converged = False

    def _warm_state(self):
        return self._last_converged, self.net.res_bus.copy()  # runpp's init="results" starts from res_bus

    def _restore_warm_state(self, state):
        self._last_converged, self.net.res_bus = state

    def _solve(self, p_mw, q_mvar):
        import pandapower as pp

        self.net.load.iloc[self._inj_rows, self._pq_cols] = np.column_stack([p_mw, q_mvar])
        init = "results" if self.warm_start and self._last_converged else "auto"
        try:
            pp.runpp(self.net, init=init, numba=HAS_NUMBA, tolerance_mva=self.tolerance_mva)
        except pp.LoadflowNotConverged:
            self._last_converged = False
            return self._failed()
        net = self.net
        vm = net.res_bus["vm_pu"].to_numpy()[self._bus_rows]
        if not np.isfinite(vm[self.bus_in_service]).all():
            self._last_converged = False
            return self._failed()
        self._last_converged = True
        losses = float(net.res_line["pl_mw"].sum() + (net.res_trafo["pl_mw"].sum() if self.n_trafo else 0.0))
        return PowerFlowResult(
            True, vm, net.res_bus["va_degree"].to_numpy()[self._bus_rows],
            np.nan_to_num(net.res_line["loading_percent"].to_numpy(), nan=0.0), losses,
            float(net.res_ext_grid["p_mw"].sum()),
            np.nan_to_num(net.res_trafo["loading_percent"].to_numpy(), nan=0.0) if self.n_trafo else np.zeros(0))


def lightsim_supported(net):
    """Why lightsim2grid's converter cannot reproduce pandapower on ``net`` ('' when it can)."""
    for table in ("trafo3w", "impedance", "ward", "xward", "motor", "asymmetric_load", "dcline", "gen"):
        if table in net and len(net[table]):
            return f"net has {table} elements"
    if len(net.ext_grid) != 1 or float(net.ext_grid["va_degree"].iloc[0]) != 0.0:
        return "lightsim path needs exactly one external grid at angle 0"
    sw = net.switch
    if ((sw["et"] == "b") & sw["closed"].astype(bool) & (sw["z_ohm"].fillna(0.0) > 0)).any():
        return "closed bus-bus switch with impedance"
    for col in ("const_z_p_percent", "const_i_p_percent", "const_z_q_percent", "const_i_q_percent"):
        if col in net.load and (net.load[col].fillna(0.0) != 0).any():
            return "voltage-dependent loads"
    return ""


def lightsim_ready_copy(net):
    """Copy of ``net`` that lightsim2grid's converter reads like pandapower does.

    The converter ignores switches, so: an open line/trafo switch moves that end of the branch
    to a new auxiliary bus (as pandapower does: the branch stays energized from its other end,
    so a cable's charging current still counts; SimBench's MV rings are opened that way), closed
    bus-bus switches fuse their buses; then buses are renumbered 0..n-1.
    Returns (copy, {original bus index: lightsim bus index}, {auxiliary lightsim bus index:
    lightsim index of the bus it was split from}); a solve starts an auxiliary bus from that bus.
    """
    import pandapower as pp
    import pandapower.toolbox as tb

    ls = copy.deepcopy(net)
    sw = ls.switch
    closed = sw["closed"].astype(bool)
    aux = {}  # auxiliary bus -> the bus whose switch opened that branch end
    for et, table, ends in (("l", "line", ("from_bus", "to_bus")), ("t", "trafo", ("hv_bus", "lv_bus"))):
        opened = sw.loc[(sw["et"] == et) & ~closed].groupby("element")["bus"].apply(set)
        for element, buses in opened.items():
            open_ends = [end for end in ends if int(ls[table].at[element, end]) in buses]
            if len(open_ends) == len(ends):  # open at both ends: carries nothing at all
                ls[table].at[element, "in_service"] = False
            for end in open_ends[: len(ends) - 1]:
                bus = int(ls[table].at[element, end])
                new_bus = pp.create_bus(ls, vn_kv=ls.bus.at[bus, "vn_kv"])
                ls[table].at[element, end] = new_bus
                aux[int(new_bus)] = bus
    rep = {int(b): int(b) for b in net.bus.index}

    def root(b):
        while rep[b] != b:
            b = rep[b]
        return b

    for b1, b2 in sw.loc[(sw["et"] == "b") & closed, ["bus", "element"]].to_numpy().astype(int):
        r1, r2 = root(b1), root(b2)
        if r1 != r2:
            tb.fuse_buses(ls, r1, r2)
            rep[r2] = r1
    ls.switch = ls.switch.iloc[0:0]
    new = tb.create_continuous_bus_index(ls)
    return ls, {b: int(new[root(b)]) for b in rep}, {int(new[a]): int(new[root(b)]) for a, b in aux.items()}


class AcGrid(RunppGrid):
    """Exact AC power flow, fast: lightsim2grid's Newton-Raphson driven directly.

    Built once from the net (switches applied, buses renumbered, see lightsim_ready_copy);
    each solve writes the prosumer loads in one vectorized call and warm-starts from the
    last converged voltages, or from pandapower's base-case solution after a divergence
    (a flat start fails behind the Dyn5 transformer of SimBench feeders, whose 150° shift
    it does not know).  At build time the base case is solved by both lightsim2grid and
    pandapower; if voltages differ by more than 1e-8 p.u. (or the net holds elements the
    converter cannot map, see lightsim_supported), this model falls back to pandapower
    ``runpp`` with ``init="results"`` warm starts and says so in ``backend`` and a warning.
    """

    name = "ac"
    MATCH_TOL_PU = 1e-8

    def __init__(self, net, prosumer_buses=(), tol=1e-8, max_iter=30):
        super().__init__(net, prosumer_buses, warm_start=True)
        self.tol, self.max_iter = tol, max_iter
        self.backend = "runpp"
        reference = super()._solve(np.zeros(self.n_bus), np.zeros(self.n_bus))
        if not reference.converged:
            why = "pandapower base case did not converge"
        else:
            why = lightsim_supported(self.net) or self._build_lightsim(reference)
        if why:
            warnings.warn(f"AcGrid: lightsim2grid path not used ({why}); using pandapower runpp", stacklevel=2)
        else:
            self.backend = "lightsim2grid"

    def _build_lightsim(self, reference):
        """Build and verify the lightsim2grid model; return '' on success, else the reason."""
        from lightsim2grid.network import init_from_pandapower

        ls_net, pos, twin_of = lightsim_ready_copy(self.net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # converter chatter about ext_grid-as-generator, switches
            try:
                self._ls = init_from_pandapower(ls_net)
            except Exception as exc:  # converter refuses: fall back, visibly
                return f"converter failed: {exc}"
        self._ls_pos = np.array([pos[int(b)] for b in self.bus_ids])
        n_loads = len(ls_net.load)
        self._load_mask = np.zeros(n_loads, dtype=bool)
        self._inj_pos = ls_net.load.index.get_indexer(self.injection_loads)
        self._load_mask[self._inj_pos] = True
        self._load_p = np.zeros(n_loads, dtype=np.float32)
        self._load_q = np.zeros(n_loads, dtype=np.float32)
        self._slack_gen = len(ls_net.gen)  # the converter appends the ext_grid as the last generator
        line, trafo = ls_net.line, ls_net.trafo
        self._line_imax_ka = (line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(dtype=float)
        self._trafo_vn = trafo[["vn_hv_kv", "vn_lv_kv"]].to_numpy(dtype=float)
        self._trafo_rating = (trafo["sn_mva"] * trafo["df"] * trafo["parallel"]).to_numpy(dtype=float)
        v_start = np.ones(self._ls.total_bus(), dtype=complex)
        ok = self.bus_in_service & np.isfinite(reference.vm_pu)
        v_start[self._ls_pos[ok]] = reference.vm_pu[ok] * np.exp(1j * np.deg2rad(reference.va_deg[ok]))
        for aux, twin in twin_of.items():
            v_start[aux] = v_start[twin]
        self._v, self._v_base = v_start.copy(), v_start.copy()
        mine = self._solve_lightsim(np.zeros(self.n_bus), np.zeros(self.n_bus))
        if not mine.converged:
            return "lightsim2grid base case did not converge"
        dv = np.abs(mine.vm_pu - reference.vm_pu)[ok]
        if dv.max(initial=0.0) > self.MATCH_TOL_PU or abs(mine.p_slack_mw - reference.p_slack_mw) > 1e-6:
            return f"base case differs from pandapower by {dv.max():.2e} p.u."
        self._v_base = self._v.copy()  # restarts (reset, divergence) begin where a fresh model does
        return ""

    def reset(self):
        if self.backend == "lightsim2grid":
            # lightsim2grid's solver keeps factorization state that still moves results by
            # round-off (~1e-20 p.u.), so repeats agree to 1e-12, not bit for bit
            self._v = self._v_base.copy()
            self._ls.tell_solver_need_reset()
        else:  # a fresh model's runpp warm start begins from the base-case solution
            super()._solve(np.zeros(self.n_bus), np.zeros(self.n_bus))

    def _solve(self, p_mw, q_mvar):
        if self.backend == "runpp":
            return super()._solve(p_mw, q_mvar)
        return self._solve_lightsim(p_mw, q_mvar)

    def _warm_state(self):
        return super()._warm_state() if self.backend == "runpp" else self._v.copy()

    def _restore_warm_state(self, state):
        if self.backend == "runpp":
            super()._restore_warm_state(state)
        else:
            self._v = state

    def _solve_lightsim(self, p_mw, q_mvar):
        ls = self._ls
        self._load_p[self._inj_pos] = p_mw
        self._load_q[self._inj_pos] = q_mvar
        ls.update_loads_p(self._load_mask, self._load_p)
        ls.update_loads_q(self._load_mask, self._load_q)
        v = ls.ac_pf(self._v.copy(), self.max_iter, self.tol)
        if v.size == 0 or not np.isfinite(v).all():
            self._v = self._v_base.copy()  # restart from the base case, not from a diverged iterate
            return self._failed()
        self._v = v
        return self._ls_result(v)

    def _ls_result(self, v):
        ls = self._ls
        vm = np.where(self.bus_in_service, np.abs(v[self._ls_pos]), np.nan)
        va = np.where(self.bus_in_service, np.angle(v[self._ls_pos], deg=True), np.nan)
        p1, _, _, a1 = ls.get_line_res1()
        p2, _, _, a2 = ls.get_line_res2()
        losses = float(np.sum(p1 + p2))
        line_loading = np.maximum(a1, a2) / self._line_imax_ka * 100.0
        trafo_loading = np.zeros(self.n_trafo)
        if self.n_trafo:
            t1, _, _, i1 = ls.get_trafo_res1()
            t2, _, _, i2 = ls.get_trafo_res2()
            losses += float(np.sum(t1 + t2))
            ka_kv = np.maximum(i1 * self._trafo_vn[:, 0], i2 * self._trafo_vn[:, 1])
            trafo_loading = ka_kv * SQRT3 / self._trafo_rating * 100.0
        p_slack = float(ls.get_gen_res()[0][self._slack_gen])
        return PowerFlowResult(True, vm, va, line_loading, losses, p_slack, trafo_loading)


class LinDistFlowGrid(GridModel):
    """Linearized DistFlow (simulators/grid/lindistflow.py): microseconds per solve, radial nets only.

    Public sensitivities for linear voltage constraints (per unit on ``sn_mva``, ordered like
    ``bus_ids``): ``r_pu``, ``x_pu`` (n_bus, n_bus) path-impedance matrices, ``vm0_pu``
    (n_bus,) no-load voltage, and ``linear_vm_coefficients()``.  ``converged`` is False when
    the linear V^2 turns non-positive (an absurd load).  ``tolerance_pu`` states the accuracy.
    """

    name = "lindistflow"
    tolerance_pu = VM_TOLERANCE_PU

    def __init__(self, net, prosumer_buses=()):
        super().__init__(net, prosumer_buses)
        self.sn_mva = float(self.net.sn_mva)
        self.feeder = f = RadialFeeder(self.net, self.bus_ids)
        self.r_pu, self.x_pu, self.vm0_pu = f.r_pu, f.x_pu, f.vm0_pu
        # transformer no-load losses: constant demand at the HV bus (not part of any bus's load)
        self.p_no_load_mw, self.q_no_load_mvar = no_load_demand(self.net, self.bus_ids)

    def _demand_pu(self, p_mw, q_mvar):
        p = (p_mw + self.p_background_mw + self.p_no_load_mw) / self.sn_mva
        q = (q_mvar + self.q_background_mvar + self.q_no_load_mvar) / self.sn_mva
        return np.where(self.feeder.supplied, p, 0.0), np.where(self.feeder.supplied, q, 0.0)

    def linear_vm_coefficients(self):
        """(vm_const (n_bus,), dv_dp (n_bus, n_bus) [p.u./MW], dv_dq [p.u./MVar]) such that
        vm ≈ vm_const + dv_dp @ p_mw + dv_dq @ q_mvar for prosumer demand p_mw, q_mvar (load
        convention) around the background-loaded point (all prosumer demand 0)."""
        return self.feeder.linear_vm(*self._demand_pu(np.zeros(self.n_bus), np.zeros(self.n_bus)), self.sn_mva)

    def _solve(self, p_mw, q_mvar):
        f = self.feeder
        p, q = self._demand_pu(p_mw, q_mvar)
        vm, va, ok = f.voltages(p, q)
        if not ok:
            return self._failed()
        pb, qb = f.branch_flows(p, q)
        v_send = np.where(f.parent >= 0, vm[np.maximum(f.parent, 0)], 1.0)
        s_pu = np.hypot(pb, qb) / v_send  # current magnitude [p.u.] of each bus's feeding branch
        losses = float(np.sum(f.r_branch * s_pu ** 2) * self.sn_mva + self.p_no_load_mw.sum())
        line_loading, trafo_loading = f.loading_percent(s_pu)
        p_slack = float(np.sum(p) * self.sn_mva) - self.p_no_load_mw.sum() + losses
        return PowerFlowResult(True, vm, va, line_loading, losses, p_slack, trafo_loading)


GRIDS = {"ac": AcGrid, "ac_runpp": RunppGrid, "lindistflow": LinDistFlowGrid}
"""grid model name -> class"""


def grid_class(kind):
    """The GridModel subclass registered as ``kind``; ConfigError naming 'grid_model' otherwise."""
    check_choice("grid_model", kind, GRIDS)
    return GRIDS[kind]


def make_grid(kind, net, prosumer_buses=()):
    """Build grid model ``kind`` (a key of GRIDS) for ``net`` with prosumers at ``prosumer_buses``."""
    return grid_class(kind)(net, prosumer_buses)
