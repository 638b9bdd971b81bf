"""The trusted reference model of a prosumer, and the model contract generated code must match.

Contract (the paper's ``prosumer(state)``, this project's units)
-----------------------------------------------------------------
``prosumer(state) -> (actions, objective, constraints, p_ex, q_ex, p_p2p)``, no solve inside.

state (dict, read only), T = state["horizon"] = 96 - state["time"]:
  "time" int 0..95 (current step of the day), "horizon" int T, "dt_h" 0.25;
  "load_kw", "pv_avail_kw" arrays (T,) [kW] (household load; PV available of all units together);
  "tariff_buy", "tariff_sell" arrays (T,) [EUR/kWh] (λ_B retail, λ_S feed-in);
  "soc_kwh" list per battery [kWh] now, "gen_last_kw" list per generator [kW] at the last step,
  "cl_remaining_kwh" list per controllable load [kWh] still to serve today.
Row k of every array (and of every returned expression) is step ``time + k`` of the day.

returns:
  actions: dict name -> cvxpy expression of shape (T,), one per unit, units numbered from 1:
    "P_RDG{i}" PV power fed in after curtailment [kW], "P_BESS{i}" net battery power (> 0 charges),
    "P_CDG{i}" generator output, "P_CL{i}" controllable-load power (ACTION_KEYS); the reference
    also gives "Q_RDG{i}" inverter reactive power [kVar] (> 0 injects) and "P_B", "P_S".
  objective: EUR, a cvxpy expression (not wrapped in Minimize):
    Δt Σ_t (λ_B P_B − λ_S P_S) + device costs + unserved-CL penalty + preference penalties.
  constraints: list; includes the power balance
    load + Σ P_BESS + Σ P_CL − Σ P_RDG − Σ P_CDG − P_B + P_S − P_P2P = 0.
  p_ex = P_S − P_B − P_P2P (T,): net injection, export > 0 (the paper's sign; it equals
    −net_kw of simulators/units.py); q_ex = Σ Q_RDG (T,): inverter reactive injection [kVar]
    (the coordinator adds the household's own reactive load); p_p2p (T,) Variable: net power
    bought from peers [kW], free here, coupled by a coordinator (Σ_i p_p2p,i = 0) or fixed to 0
    stand-alone.  P2P payments are not in the objective: with one internal price they cancel
    in the community's sum.

Basic model per unit (the same as agents/llm/prompts.py describes to the LLM):
  PV: 0 <= P_RDG <= share x pv_avail (share = kWp / total kWp); P_RDG² + Q_RDG² <= S² (exact
    second-order cone per step, Clarabel solves it natively).
  Battery: separate P_ch, P_dis in [0, p_max]; E_t = E_{t-1} + Δt (η_c P_ch − P_dis/η_d),
    E_{-1} = soc_kwh; soc_min·cap <= E_t <= soc_max·cap; cost Δt·c·Σ(P_ch + P_dis).  LP
    relaxation: simultaneous charging and discharging is not excluded (no binary); with
    η < 1 and c >= 0 it only pays when energy must be burnt.  No terminal SoC condition (the
    horizon ends with the day, as in the paper).
  Generator: 0 <= P_CDG <= p_max, the on/off with p_min is relaxed to its convex hull [0, p_max];
    |P_t − P_{t−1}| <= ramp + p_min (ramp > 0; the fleet lets a unit start at or stop from
    p_min), P_{-1} = gen_last_kw; cost Δt Σ (a P² + b P + c·P/p_max) (c·P/p_max is the convex
    envelope of the no-load cost c·[P > 0]).  With p_min = 0 and c = 0 (every generated spec)
    this is exactly the prompt's |ΔP| <= ramp and a P² + b P.
  Controllable load: 0 <= P_CL <= p_max inside [earliest, deadline), 0 outside;
    Δt Σ P_CL <= remaining; U >= remaining − Δt Σ P_CL, U >= 0; penalty U x unserved_penalty.
  Preferences: soft constraints from agents/expert/preferences.py, penalty 1000·Δt·Σ ε
    (ε in kW, or kWh for SoC bounds, per concerned step).
A state with wrong array lengths or unit counts raises ConfigError naming the key.  Several
PV units of one prosumer get one cone each on their kWp share; the fleet (simulators/prosumer/
fleet.py) runs them as one inverter of the summed rating, which allows at least as much Q.

agents/expert/program.py's ``DeviceProgram`` builds these blocks vectorized over prosumers
(matrix variables (T, units) per device type) with cvxpy Parameters for all state- and
profile-dependent numbers, so a problem built once re-solves without recompiling (DPP).  The
reference builds one program per horizon length and caches it.  Measured (p006: PV, battery,
generator, CL; 2 cores): 36 ms to build, compile and solve a fresh horizon, 6 ms median to
re-solve a cached one; the alternative, one 96-row program with the past steps masked,
compiles once but re-solves in 9 ms at every step, since it always carries the whole day.
"""

import cvxpy as cp
import numpy as np

from agents.expert.blocks import BLOCKS
from agents.expert.preferences import parse_preferences
from agents.expert.program import DeviceProgram, state_lists
from simulators.prosumer.devices import DEVICES
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError, check_finite


def action_keys():
    """Contract action key per unit of each device list of ProsumerSpec: 'P_<tag>{i}' (units from 1)."""
    return {key: f"P_{DEVICES[key].tag}{{i}}" for key in BLOCKS}


ACTION_KEYS = action_keys()
"""the action keys of the built-in device types"""
STATE_ARRAYS = ("load_kw", "pv_avail_kw", "tariff_buy", "tariff_sell")
DEFAULT_SOLVER = "CLARABEL"


# ---- the per-prosumer reference (the contract) -----------------------------------------------
class ReferenceModel:
    """``prosumer(state)`` of one ProsumerSpec; one DeviceProgram per horizon length, built once.

    Calling it returns the contract's 6-tuple.  The returned cvxpy objects are the same for
    every state of one horizon (their Parameters are re-set), so a problem a caller keeps
    re-solves without recompiling; ``solve(state)`` does that stand-alone (p_p2p fixed to 0).
    """

    def __init__(self, spec):
        self.spec = spec
        parse_preferences(spec)  # fail on a bad preference now, not at the first call
        self._models = {}
        self._problems = {}

    def __call__(self, state):
        m = self._model(self._check_state(state))
        prog = m["program"]
        prog.set(state["time"], state["load_kw"], state["pv_avail_kw"], {k: state.get(k, ()) for k in state_lists()})
        m["buy"].value = check_finite("tariff_buy", state["tariff_buy"])
        m["sell"].value = check_finite("tariff_sell", state["tariff_sell"])
        return m["tuple"]

    def _check_state(self, state):
        horizon, time = int(state["horizon"]), int(state["time"])
        if horizon != STEPS_PER_DAY - time or not 1 <= horizon <= STEPS_PER_DAY:
            raise ConfigError(f"state['horizon']: {horizon} must equal 96 - state['time'] ({time}) and lie in 1..96")
        if abs(float(state.get("dt_h", STEP_H)) - STEP_H) > 1e-12:
            raise ConfigError(f"state['dt_h']: {state['dt_h']} must be {STEP_H}")
        for key in STATE_ARRAYS:
            if np.shape(state[key]) != (horizon,):
                raise ConfigError(f"state[{key!r}]: expected shape ({horizon},), got {np.shape(state[key])}")
        for key, attr in state_lists().items():
            if len(np.atleast_1d(state.get(key, ()))) != len(getattr(self.spec, attr)):
                raise ConfigError(f"state[{key!r}]: expected {len(getattr(self.spec, attr))} values (one per unit "
                                  f"of {attr}) for prosumer {self.spec.name!r}")
        return horizon

    def _model(self, horizon):
        if horizon not in self._models:
            self._models[horizon] = self._build(horizon)
        return self._models[horizon]

    def _build(self, horizon):
        prog = DeviceProgram([self.spec], horizon)
        T, dt = horizon, STEP_H
        buy, sell = cp.Parameter(T, nonneg=True, name="tariff_buy"), cp.Parameter(T, nonneg=True, name="tariff_sell")
        p_b = cp.Variable(T, nonneg=True, name="P_B")
        p_s = cp.Variable(T, nonneg=True, name="P_S")
        p2p = cp.Variable(T, name="P_P2P")
        net = prog.net[:, 0]
        constraints = prog.constraints + [net - p_b + p_s - p2p == 0]
        objective = dt * (buy @ p_b - sell @ p_s) + prog.cost + prog.penalty
        actions = {"P_B": p_b, "P_S": p_s}
        for key, block in BLOCKS.items():
            for k in range(len(getattr(self.spec, key))):
                actions.update(block.contract_actions(prog, k))
        p_ex = p_s - p_b - p2p
        q_ex = prog.q_inj[:, 0]
        return {"program": prog, "buy": buy, "sell": sell,
                "tuple": (actions, objective, constraints, p_ex, q_ex, p2p)}

    def solve(self, state, solver=DEFAULT_SOLVER):
        """Stand-alone optimum (p_p2p = 0): dict with 'objective' [EUR], 'status', 'actions' (arrays)."""
        actions, objective, constraints, p_ex, q_ex, p2p = self(state)
        horizon = int(state["horizon"])
        if horizon not in self._problems:
            self._problems[horizon] = cp.Problem(cp.Minimize(objective), constraints + [p2p == 0])
        problem = self._problems[horizon]
        problem.solve(solver=solver, warm_start=False)  # a result of the state alone, not of earlier solves
        if problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"reference model of {self.spec.name!r} at time {state['time']}: {problem.status}")
        return {"objective": float(problem.value), "status": problem.status, "problem": problem,
                "actions": {k: np.asarray(a.value, dtype=float) for k, a in actions.items()},
                "p_ex": np.asarray(p_ex.value, dtype=float), "q_ex": np.asarray(q_ex.value, dtype=float)}


def build_reference(spec):
    """The reference ``prosumer(state)`` callable of ``spec`` (a ReferenceModel)."""
    return ReferenceModel(spec)


def make_state(spec, time, load_kw, pv_avail_kw, tariff_buy, tariff_sell, **state):
    """A contract state at step ``time`` from whole-day (96,) arrays; device states (soc_kwh,
    gen_last_kw, cl_remaining_kwh, ...: state_lists()) default to the start of a run."""
    unknown = sorted(set(state) - set(state_lists()))
    if unknown:
        raise ConfigError(f"state: unknown entries {unknown}; allowed: {sorted(state_lists())}")
    sl = slice(int(time), STEPS_PER_DAY)
    out = {"time": int(time), "horizon": STEPS_PER_DAY - int(time), "dt_h": STEP_H,
           "load_kw": np.asarray(load_kw, float)[sl], "pv_avail_kw": np.asarray(pv_avail_kw, float)[sl],
           "tariff_buy": np.asarray(tariff_buy, float)[sl], "tariff_sell": np.asarray(tariff_sell, float)[sl]}
    for name, key in state_lists().items():
        given = state.get(name)
        units = [(0, u) for u in getattr(spec, key)]
        out[name] = list(given if given is not None else DEVICES[key](units, 1).initial_state())
    return out
