"""The reference model of a spec written as generated code: what a perfect LLM answer looks like.

``reference_code(spec)`` returns the source of a ``prosumer(state)`` that builds the same model
as agents/expert/reference.py (inverter cone, relaxed generator on/off, preferences as
penalized slacks) inside the allowlist of agents/llm/allowlist.py.  It is the honest candidate
of the sandbox tests and benchmarks: it must pass the static check, run in the jail and match
the in-process reference to solver tolerance, through the verification and through ``couple``.
"""

import json

import numpy as np

from agents.expert.preferences import parse_preferences
from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

TEMPLATE = '''import cvxpy as cp
import numpy as np

PV = {pv}
BESS = {bess}
CDG = {cdg}
CL = {cl}
PREFS = {prefs}


def prosumer(state):
    T = state["horizon"]
    dt = state["dt_h"]
    now = state["time"]
    load = state["load_kw"]
    avail = np.maximum(state["pv_avail_kw"], 0.0)
    steps = now + np.arange(T)
    constraints = []
    actions = {{}}
    cost = 0.0
    net = load
    pv_sum = 0.0
    q_ex = cp.Constant(np.zeros(T))
    for k in range(len(PV)):
        pv = cp.Variable(T, nonneg=True)
        q = cp.Variable(T)
        constraints += [pv <= PV[k][0] * avail, cp.SOC(PV[k][1] * np.ones(T), cp.vstack([pv, q]), axis=0)]
        actions["P_RDG" + str(k + 1)] = pv
        actions["Q_RDG" + str(k + 1)] = q
        net = net - pv
        pv_sum = pv_sum + pv
        q_ex = q_ex + q
    soc_sum = 0.0
    for k in range(len(BESS)):
        cap, p_max, eta_c, eta_d, soc_min, soc_max, c = BESS[k]
        ch = cp.Variable(T, nonneg=True)
        dis = cp.Variable(T, nonneg=True)
        soc = max(state["soc_kwh"][k], 0.0) + cp.cumsum(dt * (eta_c * ch - dis / eta_d))
        constraints += [ch <= p_max, dis <= p_max, soc >= soc_min * cap, soc <= soc_max * cap]
        cost = cost + dt * c * cp.sum(ch + dis)
        actions["P_BESS" + str(k + 1)] = ch - dis
        net = net + ch - dis
        soc_sum = soc_sum + soc
    gen_sum = 0.0
    for k in range(len(CDG)):
        p_max, p_min, ramp, a, b = CDG[k]
        gen = cp.Variable(T, nonneg=True)
        constraints.append(gen <= p_max)
        if ramp > 0:
            step = cp.diff(cp.hstack([np.array([max(state["gen_last_kw"][k], 0.0)]), gen]))
            constraints += [step <= ramp + p_min, step >= -(ramp + p_min)]
        cost = cost + dt * (a * cp.sum_squares(gen) + b * cp.sum(gen))
        actions["P_CDG" + str(k + 1)] = gen
        net = net - gen
        gen_sum = gen_sum + gen
    cl_sum = 0.0
    for k in range(len(CL)):
        p_max, earliest, deadline, penalty = CL[k]
        window = np.where((steps >= earliest) & (steps < deadline), 1.0, 0.0)
        remaining = max(state["cl_remaining_kwh"][k], 0.0)
        cl = cp.Variable(T, nonneg=True)
        unserved = cp.Variable(nonneg=True)
        served = dt * cp.sum(cl)
        constraints += [cl <= p_max * window, served <= remaining, unserved >= remaining - served]
        cost = cost + penalty * unserved
        actions["P_CL" + str(k + 1)] = cl
        net = net + cl
        cl_sum = cl_sum + cl
    quantity = {{"gen_kw": gen_sum, "soc_kwh": soc_sum, "net_kw": net, "export_kw": -net, "cl_kw": cl_sum,
                "curtail_kw": avail - pv_sum}}
    for name, sense, bound, mask in PREFS:
        rows = [t for t in range(T) if mask[now + t] > 0]
        if len(rows) > 0:
            eps = cp.Variable(len(rows), nonneg=True)
            x = cp.hstack([quantity[name][t] for t in rows])
            if sense == "max":
                constraints.append(x <= bound + eps)
            else:
                constraints.append(x >= bound - eps)
            cost = cost + 1000.0 * dt * cp.sum(eps)
    P_B = cp.Variable(T, nonneg=True)
    P_S = cp.Variable(T, nonneg=True)
    P_P2P = cp.Variable(T)
    constraints.append(net - P_B + P_S - P_P2P == 0)
    actions["P_B"] = P_B
    actions["P_S"] = P_S
    objective = dt * (state["tariff_buy"] @ P_B - state["tariff_sell"] @ P_S) + cost
    p_ex = P_S - P_B - P_P2P
    p_p2p = P_P2P
    return actions, objective, constraints, p_ex, q_ex, p_p2p
'''


BUILT_IN = ("pv", "batteries", "generators", "controllable_loads")
"""device types this writer knows; a spec with another registered type is refused"""


def reference_code(spec):
    """Source of ``prosumer(state)`` building the reference model of ``spec`` (see module docstring)."""
    other = [key for key, _ in spec.devices if key not in BUILT_IN]
    if other:
        raise ConfigError(f"spec {spec.name!r}: reference_code writes only {list(BUILT_IN)}, not {other}")
    total_kwp = sum(p.kwp for p in spec.pv)
    pv = [[p.kwp / total_kwp if total_kwp > 0 else 0.0, p.s_kva] for p in spec.pv]
    bess = [[b.capacity_kwh, b.p_max_kw, b.eta_charge, b.eta_discharge, b.soc_min, b.soc_max, b.cost_eur_per_kwh]
            for b in spec.batteries]
    cdg = [[g.p_max_kw, g.p_min_kw, g.ramp_kw_per_step, g.cost_a_eur_per_kw2h,
            g.cost_b_eur_per_kwh + g.cost_c_eur_per_h / g.p_max_kw] for g in spec.generators]
    cl = [[c.p_max_kw, c.earliest_step, c.deadline_step, c.unserved_penalty_eur_per_kwh]
          for c in spec.controllable_loads]
    prefs = [[p.quantity, p.sense, p.bound, np.asarray(p.mask[:STEPS_PER_DAY], dtype=int).tolist()]
             for p in parse_preferences(spec)]
    return TEMPLATE.format(**{k: json.dumps(v) for k, v in
                              {"pv": pv, "bess": bess, "cdg": cdg, "cl": cl, "prefs": prefs}.items()})
