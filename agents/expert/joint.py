"""The coupled optimization expert: all prosumers, community energy sharing, LinDistFlow voltages.

Model (cvxpy, built once per row layout, re-solved with new Parameters)
-----------------------------------------------------------------------
- Devices of every prosumer: agents/expert/program.py's DeviceProgram (the basic model of
  reference.py, matrix variables (rows, units) per device type, inverter 'box').
- Market approximation: community energy sharing.  The community buys its *aggregate* net
  import at λ_B and sells its aggregate export at λ_S: P_B − P_S = Σ_i net_i, P_B, P_S >= 0,
  cost Σ_rows Δt (λ_B P_B − λ_S P_S).  This is exactly the community's total market cost under
  the budget-balanced SDR and MMR clearings (every offered kWh meets a demanded one before the
  grid is used, and the P2P payments cancel in the sum); how it is split among prosumers is the
  market's business (``per_prosumer_cost`` clears the planned bids with a mechanism).  The
  expert bids at the middle of the tariff band (bid_price 0.5), so a double auction also
  matches every pair, at the mid-market rate.
- Network: LinDistFlow voltages of every supplied bus (voltage.py, linearized around zero
  prosumer demand), 0.95 + margin <= vm <= 1.05 − margin, soft with slack penalty
  VOLTAGE_PENALTY_EUR_PER_PU per p.u., bus and step.
- Objective: community grid cost + device costs + unserved-CL and preference penalties +
  voltage penalty.

Receding horizon: ``plan(time, ...)`` solves from step ``time`` to the end of the day.  Rows
are 15-minute steps for the next ``fine_hours`` (plus the rest of the current hour) and hourly
after (move blocking); one problem per hour of the day is compiled on first use and masks the
steps of that hour already past.  ``fine_hours=24`` plans every step at full resolution (a 96-row
problem, ~2 s per solve for 32 prosumers; the default layout ~0.2 s).  ``perfect_foresight``
solves the whole day once at full resolution with the true profiles: the lower bound of the
relaxed model.  ``couple`` builds the same coupling from any prosumers' contract 6-tuples.
"""

import time as wallclock
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from agents.expert.program import DeviceProgram
from agents.expert.reference import DEFAULT_SOLVER
from agents.expert.voltage import VoltageModel
from simulators.units import STEP_H, STEPS_PER_DAY, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError, check_choice, check_range

VOLTAGE_PENALTY_EUR_PER_PU = 1e5
"""penalty per p.u. outside the band, per bus and step (1000 EUR per 0.01 p.u.)"""
SOLVERS = ("CLARABEL", "HIGHS", "GUROBI")
"""solvers for the joint problem when installed; HiGHS only when it is an LP (every generator
cost_a = 0): it failed on the QP.  Measured on the 32-prosumer problem: Clarabel 0.24 s, HiGHS
0.17 s on its LP variant; OSQP needed > 10^4 iterations (tens of seconds)"""
SOLVER_OPTIONS = {"CLARABEL": {"direct_solve_method": "qdldl"}}
"""qdldl factorized this problem 4-5x faster than Clarabel's default faer on 2 cores"""
FALLBACK_SOLVES = (("CLARABEL", {}), ("SCS", {"eps": 1e-7, "max_iters": 200_000}))
"""tried in order when the configured solve fails (a SolverError or no optimal status): Clarabel with its default
factorization, then SCS; on the stressed feeder Clarabel with qdldl failed numerically on one step of a test day"""
STEPS_PER_HOUR = 4


@dataclass
class Plan:
    """Solution of one ``plan`` call, over the rows from step ``time`` to the end of the day."""

    time: int
    status: str
    objective_eur: float
    solve_s: float
    rows: np.ndarray
    """(R,) steps per planned row (1 = one 15-minute step)"""
    net_kw: np.ndarray
    """(R, N) planned meter power per row, load convention [kW]"""
    setpoints: dict
    """step-``time`` totals per prosumer (N,): battery_kw, gen_kw, cl_kw, pv_kw, curtail_kw, pv_q_kvar
    (every expert block's totals, agents/expert/blocks.py)"""
    terms: dict = field(default_factory=dict)
    """objective parts [EUR]: grid, devices, penalties (unserved CL + preferences), voltage"""
    vm_pu: np.ndarray = None
    """(R, n_watch) linearized voltages of the plan at the modelled buses"""
    v_slack_pu: float = 0.0
    """largest voltage-band slack of the plan [p.u.]"""


class _JointProblem:
    """One compiled joint problem for one row layout."""

    def __init__(self, expert, rows):
        self.prog = prog = DeviceProgram(expert.specs, rows, inverter="box")
        buy = prog.row_mean(expert.buy[prog.first_step:, None])[:, 0]
        sell = prog.row_mean(expert.sell[prog.first_step:, None])[:, 0]
        R = prog.R
        self.net, qnet = prog.net, prog.param["load_kvar"] - prog.q_inj
        p_b = cp.Variable(R, nonneg=True, name="community_buy_kw")
        p_s = cp.Variable(R, nonneg=True, name="community_sell_kw")
        self.vm, v_cons = expert.voltage.expression(self.net, qnet)
        self.s_hi = cp.Variable(self.vm.shape, nonneg=True, name="v_slack_hi")
        self.s_lo = cp.Variable(self.vm.shape, nonneg=True, name="v_slack_lo")
        constraints = prog.constraints + v_cons + [
            p_b - p_s == cp.sum(self.net, axis=1),
            self.vm <= expert.v_hi + self.s_hi, self.vm >= expert.v_lo - self.s_lo]
        steps_ahead = cp.multiply(prog.param["active"], prog.dur.astype(float))
        self.terms = {"grid": (prog.dt * buy) @ p_b - (prog.dt * sell) @ p_s, "devices": prog.cost,
                      "penalties": prog.penalty,
                      "voltage": expert.voltage_penalty * (steps_ahead @ cp.sum(self.s_hi + self.s_lo, axis=1))}
        self.problem = cp.Problem(cp.Minimize(sum(self.terms.values())), constraints)


class JointExpert:
    """Community optimum for ``specs`` on pandapower ``net`` under ``tariff`` (see module docstring).

    ``v_margin_pu`` tightens the band to absorb the LinDistFlow error (0.001-0.01 p.u. vs AC);
    ``fine_hours`` sets how far ahead the plan keeps 15-minute resolution;
    ``voltage_penalty_eur_per_pu`` prices the band's slack (0: the economic optimum, network
    limits ignored -- with perfect foresight the least cost any policy can reach).
    """

    def __init__(self, specs, tariff, net, solver=DEFAULT_SOLVER, v_margin_pu=0.0, fine_hours=3,
                 voltage_penalty_eur_per_pu=VOLTAGE_PENALTY_EUR_PER_PU):
        self.specs, self.n = list(specs), len(specs)
        self.solver = check_choice("solver", solver, [s for s in SOLVERS if s in cp.installed_solvers()])
        quadratic = [s.name for s in self.specs for g in s.generators if g.cost_a_eur_per_kw2h > 0]
        if self.solver == "HIGHS" and quadratic:
            raise ConfigError(f"solver: 'HIGHS' takes the joint problem only as an LP, but the generators of "
                              f"{quadratic[:3]} have a quadratic cost (cost_a_eur_per_kw2h > 0); use 'CLARABEL'")
        self.fine_hours = int(check_range("fine_hours", fine_hours, 0, 24))
        check_range("v_margin_pu", v_margin_pu, 0.0, 0.04)
        self.voltage_penalty = check_range("voltage_penalty_eur_per_pu", voltage_penalty_eur_per_pu, 0.0, 1e9)
        self.tariff = tariff
        self.buy = np.asarray(tariff.buy_eur_per_kwh, float)
        self.sell = np.asarray(tariff.sell_eur_per_kwh, float)
        self.voltage = VoltageModel(net, self.specs)
        self.v_lo, self.v_hi = V_MIN_PU + v_margin_pu, V_MAX_PU - v_margin_pu
        self._problems = {}
        self.compile_s = 0.0
        """seconds spent building and compiling problems (first solve of each layout)"""
        self.fallbacks = 0
        """solves that needed a FALLBACK_SOLVES entry"""
        installed = cp.installed_solvers()
        self._attempts = [(self.solver, SOLVER_OPTIONS.get(self.solver, {})),
                          *(a for a in FALLBACK_SOLVES if a[0] in installed)]

    def layout(self, time, full=False):
        """Rows (steps per row) of the problem that serves step ``time``."""
        if full or self.fine_hours >= 24:
            return (1,) * STEPS_PER_DAY
        first = time - time % STEPS_PER_HOUR
        fine = min(STEPS_PER_HOUR * (1 + self.fine_hours), STEPS_PER_DAY - first)
        coarse = STEPS_PER_DAY - first - fine
        return (1,) * fine + (STEPS_PER_HOUR,) * (coarse // STEPS_PER_HOUR)

    def _problem(self, rows):
        if rows not in self._problems:
            self._problems[rows] = _JointProblem(self, rows)
        return self._problems[rows]

    def plan(self, time, load_kw, load_kvar, pv_avail_kw, state, full=False):
        """Solve steps time..95; profiles are (96 - time, N) arrays (row 0 the truth of step ``time``);
        ``state``: per-unit device state {soc_kwh, gen_last_kw, cl_remaining_kwh, ...: values}."""
        rows = self.layout(time, full)
        t0 = wallclock.perf_counter()
        new = rows not in self._problems
        jp = self._problem(rows)
        jp.prog.set(time, load_kw, pv_avail_kw, state, load_kvar=load_kvar)
        self._solve(jp, time)
        solve_s = wallclock.perf_counter() - t0
        if new:
            self.compile_s += solve_s
        return self._extract(jp, time, solve_s, np.asarray(pv_avail_kw, float)[0])

    def _solve(self, jp, time):
        """The configured solver, then FALLBACK_SOLVES (each counted in ``fallbacks``) until one is optimal."""
        tried = []
        for k, (solver, options) in enumerate(self._attempts):
            try:
                # warm_start=False: CVXPY would otherwise keep the solver object of the layout's last solve and
                # update its data, which moves the result in the 8th digit with whatever this process solved
                # before (another run, day or state); a fresh solver costs no measurable time (0.45-0.50 s a label)
                jp.problem.solve(solver=solver, warm_start=False, **options)
                status = jp.problem.status
            except cp.error.SolverError as err:
                status = f"SolverError ({str(err)[:80]})"
            if status in ("optimal", "optimal_inaccurate"):
                self.fallbacks += k > 0
                return
            tried.append(f"{solver} {options or ''}: {status}")
        raise RuntimeError(f"joint expert at step {time}: no solver found an optimum ({'; '.join(tried)})")

    def _extract(self, jp, time, solve_s, pv_avail_now):
        prog = jp.prog
        r0 = int(np.flatnonzero(prog.start == time)[0])
        setpoints = prog.setpoints(r0, pv_avail_now)
        slack = (jp.s_hi.value + jp.s_lo.value)[r0:]
        return Plan(time=time, status=jp.problem.status, objective_eur=float(jp.problem.value), solve_s=solve_s,
                    rows=prog.dur[r0:].copy(), net_kw=np.asarray(jp.net.value)[r0:].copy(), setpoints=setpoints,
                    terms={k: float(e.value) for k, e in jp.terms.items()}, vm_pu=np.asarray(jp.vm.value)[r0:].copy(),
                    v_slack_pu=float(slack.max(initial=0.0)))

    def device_cost_per_prosumer(self, full=True, time=0):
        """Relaxed device cost + unserved penalty per prosumer (N,) [EUR] of the last solution of a layout."""
        return self._problem(self.layout(time, full)).prog.device_cost()


def day_start_state(specs):
    """Device state at the start of a run (what Fleet.reset() gives): dict of per-unit arrays."""
    from simulators.prosumer.fleet import Fleet

    return Fleet(specs).planning_state(0)


def perfect_foresight(expert, profiles, state=None, market="sdr"):
    """One full-resolution solve over a day with its true ``profiles`` ((96, N) load_kw, load_kvar, pv_avail_kw).

    ``state``: soc_kwh / gen_last_kw / cl_remaining_kwh per unit (default: the specs' day start).
    Returns dict: 'plan', 'total_eur' (grid + devices + penalties + voltage), 'cost_eur' (grid
    + devices + unserved CL), 'per_prosumer_cost_eur' (N,) (market clearing of the planned
    bids + relaxed device costs), 'v_slack_pu'.  It bounds from below the same objective of any
    trajectory the devices can realize that day from that state (relaxations only widen the set).
    """
    state = state or day_start_state(expert.specs)
    p = profiles
    plan = expert.plan(0, p.load_kw[:96], p.load_kvar[:96], p.pv_avail_kw[:96], state, full=True)
    device = expert.device_cost_per_prosumer(full=True)
    market_cost = per_prosumer_cost(plan.net_kw, expert.tariff, market)
    return {"plan": plan, "total_eur": plan.objective_eur, "cost_eur": float(market_cost.sum() + device.sum()),
            "per_prosumer_cost_eur": market_cost + device, "v_slack_pu": plan.v_slack_pu}


def stored_energy_value(expert, profiles, state=None):
    """The marginal value of stored energy per step and prosumer (96, N) [EUR/kWh]: how much one more kWh in
    its batteries at the start of each step of this day would lower the expert's perfect-foresight objective.

    Read off the duals of the batteries' energy balance in ``perfect_foresight``'s solve (each the derivative of
    the optimum with respect to the stored energy entering that row); a prosumer with several batteries gets
    their capacity-weighted mean, one without any NaN.
    """
    perfect_foresight(expert, profiles, state)
    prog = expert._problem(expert.layout(0, full=True)).prog
    out = np.full((STEPS_PER_DAY, expert.n), np.nan)
    if "soc_kwh" not in prog.dynamics:
        return out
    first, later = prog.dynamics["soc_kwh"]
    duals = np.atleast_2d(first.dual_value)
    if later is not None:
        duals = np.vstack([duals, later.dual_value])
    cap = np.array([u.capacity_kwh for u in prog.units["batteries"]])
    owner = prog.owner["batteries"]
    owner = np.asarray(owner.toarray() if sp.issparse(owner) else owner, dtype=float)
    weight = cap @ owner
    has = weight > 0
    out[:, has] = (duals * cap) @ owner[:, has] / weight[has]
    return out


def per_prosumer_cost(net_kw, tariff, market="sdr", first_step=0):
    """Market cost per prosumer (N,) [EUR] of meter powers (T, N) cleared step by step, bids at mid-band."""
    from simulators.market.clearing import clear

    net_kw = np.asarray(net_kw, float)
    out = np.zeros(net_kw.shape[1])
    for r, row in enumerate(net_kw):
        buy, sell = tariff.at(first_step + r)
        out += clear(row * STEP_H, np.full(len(row), 0.5 * (buy + sell)), buy, sell, mechanism=market).cost_eur
    return out


def couple(tuples, specs, net, load_kvar, v_margin_pu=0.0):
    """Coordinator over contract 6-tuples (one per prosumer, same horizon): Σ p_p2p = 0 and voltages.

    ``load_kvar`` (T, N): household reactive load, which the contract's q_ex leaves out.
    Returns (problem, info): info['vm'] the linearized voltage expression (T, modelled buses),
    info['v_slack'] the slack Variables.  The objective is Σ prosumer objectives + the voltage
    penalty, the same objective as JointExpert's full-resolution problem.
    """
    if not tuples:
        raise ConfigError("tuples: at least one prosumer model is required")
    voltage = VoltageModel(net, specs)
    p_net = cp.hstack([cp.reshape(-t[3], (t[3].shape[0], 1), order="C") for t in tuples])
    q_net = np.asarray(load_kvar, float) - cp.hstack([cp.reshape(t[4], (t[4].shape[0], 1), order="C")
                                                      for t in tuples])
    objective = sum(t[1] for t in tuples)
    constraints = [c for t in tuples for c in t[2]] + [sum(t[5] for t in tuples) == 0]
    vm, v_cons = voltage.expression(p_net, q_net)
    s_hi, s_lo = cp.Variable(vm.shape, nonneg=True), cp.Variable(vm.shape, nonneg=True)
    constraints += v_cons + [vm <= V_MAX_PU - v_margin_pu + s_hi, vm >= V_MIN_PU + v_margin_pu - s_lo]
    objective = objective + VOLTAGE_PENALTY_EUR_PER_PU * cp.sum(s_hi + s_lo)
    return cp.Problem(cp.Minimize(objective), constraints), {"vm": vm, "v_slack": (s_hi, s_lo)}


# ---- closed loop: the expert driving a Fleet step by step -------------------------------------
FORECASTS = ("perfect", "yesterday")
"""what the expert assumes for the steps after the current one: the true profiles, or the same
hours of the day before (persistence; the bank's first day uses the day after instead)"""


def forecast_profiles(kind, bank, specs, assignment, dates):
    """Profiles the expert plans with for the steps after the current one ((96 * days, N) arrays)."""
    from simulators.profiles.data import persistence_days, prosumer_days

    check_choice("forecast", kind, FORECASTS)
    if kind == "perfect":
        return prosumer_days(bank, specs, assignment, dates)
    return persistence_days(bank, specs, assignment, dates)


def plan_from_fleet(expert, fleet, g, truth, forecast):
    """(Plan, normalized actions (N, A)) of the expert at global step ``g`` from ``fleet``'s device state.

    The plan sees the true profiles of step g and ``forecast`` for the rest of that day; the
    actions are the plan's step-g set-points as the fleet takes them (bids at mid-band).
    """
    step = g % STEPS_PER_DAY
    end = g - step + STEPS_PER_DAY

    def ahead(field):
        out = np.array(getattr(forecast, field)[g:end], dtype=float)
        out[0] = getattr(truth, field)[g]
        return out

    plan = expert.plan(step, ahead("load_kw"), ahead("load_kvar"), ahead("pv_avail_kw"), fleet.planning_state(step))
    return plan, fleet.actions_from_setpoints(plan.setpoints, 0.5, truth.pv_avail_kw[g])


class RecedingHorizon:
    """The expert in closed loop with its own Fleet over consecutive days of ``truth`` profiles.

    At each step the expert plans with the true values of that step and ``forecast`` for the
    rest of the day, the Fleet applies the step's actions to the true profiles, and the next
    step starts from the Fleet's state.  Every policy instance of a run can share one object:
    ``act(g)`` returns the cached actions of global step g, computing the steps up to it in order.
    """

    def __init__(self, expert, truth, forecast=None):
        from simulators.prosumer.fleet import Fleet

        self.expert, self.truth, self.forecast = expert, truth, forecast or truth
        self.fleet = Fleet(expert.specs)
        self.steps = len(truth.load_kw)
        self.actions, self.results, self.plans = [], [], []

    def act(self, g):
        """Normalized actions (N, A) of global step ``g`` (0 = first step of the first day)."""
        if not 0 <= g < self.steps:
            raise ConfigError(f"step: {g} outside the {self.steps} steps of the planned days")
        while len(self.actions) <= g:
            self._advance(len(self.actions))
        return self.actions[g]

    def _advance(self, g):
        step, fleet, tr = g % STEPS_PER_DAY, self.fleet, self.truth
        plan, a = plan_from_fleet(self.expert, fleet, g, tr, self.forecast)
        buy, sell = self.expert.tariff.at(step)
        res = fleet.apply(step, a, tr.load_kw[g], tr.load_kvar[g], tr.pv_avail_kw[g], buy, sell)
        self.actions.append(a)
        self.results.append(res)
        self.plans.append(plan)

    def run(self):
        """Compute every step; returns self."""
        self.act(self.steps - 1)
        return self


def evaluate(expert, rh, market="sdr"):
    """The expert's objective terms on the realized trajectory of a RecedingHorizon run.

    Returns dict: 'total_eur' (grid + devices + preference and voltage penalties, the
    quantity perfect_foresight bounds from below), 'cost_eur' (market + device cost),
    'per_prosumer_cost_eur' (N,), 'v_slack_pu' (largest linearized band violation),
    'preference_violation' (sum over steps, kW or kWh), 'solve_s' (per step).
    """
    from agents.expert.preferences import PREFERENCE_PENALTY_EUR, parse_preferences, violations

    res = rh.results
    col = {f: np.array([getattr(r, f) for r in res]) for f in ("net_kw", "net_kvar", "gen_kw", "soc_kwh", "cl_kw",
                                                                "curtailed_kw", "device_cost_eur")}
    steps = np.arange(len(res)) % STEPS_PER_DAY
    total_net = col["net_kw"].sum(axis=1)
    grid = STEP_H * np.sum(expert.buy[steps] * np.maximum(total_net, 0)
                           - expert.sell[steps] * np.maximum(-total_net, 0))
    quantities = {"gen_kw": col["gen_kw"], "soc_kwh": col["soc_kwh"], "net_kw": col["net_kw"],
                  "export_kw": -col["net_kw"], "cl_kw": col["cl_kw"], "curtail_kw": col["curtailed_kw"]}
    pref = 0.0
    for i, prefs in enumerate(parse_preferences(s) for s in expert.specs):
        for d0 in range(0, len(res), STEPS_PER_DAY) if prefs else ():
            pref += violations(prefs, {k: v[d0:d0 + STEPS_PER_DAY, i] for k, v in quantities.items()}).sum()
    vm = expert.voltage.numeric(col["net_kw"], col["net_kvar"])[:, expert.voltage.watch]
    slack = np.maximum(vm - expert.v_hi, 0.0) + np.maximum(expert.v_lo - vm, 0.0)
    device = col["device_cost_eur"].sum()
    market_cost = per_prosumer_cost(col["net_kw"], expert.tariff, market)
    return {"total_eur": float(grid + device + PREFERENCE_PENALTY_EUR * STEP_H * pref
                               + VOLTAGE_PENALTY_EUR_PER_PU * slack.sum()),
            "cost_eur": float(market_cost.sum() + device),
            "per_prosumer_cost_eur": market_cost + col["device_cost_eur"].sum(axis=0),
            "v_slack_pu": float(slack.max(initial=0.0)), "preference_violation": float(pref),
            "solve_s": np.array([p.solve_s for p in rh.plans])}

