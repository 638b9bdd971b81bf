"""Feasible-set probes: does a generated model allow exactly what the reference allows?

Comparing optimal objectives on a few states cannot see a constraint that is slack at those
optima: a generator bound raised from 5 to 6 kW, a battery limit loosened, a preference window
moved, all pass when the generator or battery is idle in the test states.  But the P2P market
and the coupled expert use a model's whole feasible set, not one optimum.  So the parent also
compares the *support function* of the set of grid exchanges the two models allow, with p_p2p
fixed to 0 as in the stand-alone solve:

    h(d) = max { d_p · p_ex + d_q · q_ex : (p_ex, q_ex) feasible }

for a few fixed directions d (most export, most import, most and least reactive injection, and
two seeded step-by-step mixes that exercise the coupling over time: battery energy, ramps,
controllable-load energy).  Two convex sets with equal support values in a direction touch the
same supporting hyperplane there, so a changed bound of an active device shifts h.  The probes
run on the parent's own model (agents/llm/problem_data.py) and on the trusted reference, with the
parent's solver; nothing the generated code reports enters them.
"""

import cvxpy as cp
import numpy as np

PROBE_SEED = 7
"""seed of the step-by-step probe directions (fixed: the same probes for every candidate)"""
SUPPORT_REL_TOL = 1e-3
SUPPORT_ABS_TOL_KW = 1e-2
"""a support value may differ by this much relative to max(1, |reference|) plus this absolute
[kW summed over the steps]: solver tolerances, far below any changed device bound"""


def directions(horizon):
    """[(name, d_p, d_q)]: the probe directions for a horizon of ``horizon`` steps (values are sums
    over the steps: kW for the active-power probes, kvar for the reactive ones)."""
    rng = np.random.default_rng(PROBE_SEED)
    ones, zeros = np.ones(horizon), np.zeros(horizon)
    mixes = [rng.choice([-1.0, 1.0], size=horizon) for _ in range(2)]
    return [("most export", ones, zeros), ("most import", -ones, zeros),
            ("most reactive injection", zeros, ones), ("least reactive injection", zeros, -ones),
            ("mixed export/import 1", mixes[0], zeros), ("mixed export/import 2", mixes[1], zeros)]


def support_values(contract, horizon, solver="CLARABEL"):
    """{probe name: h(d) or None where the solve did not reach optimal (e.g. unbounded)} for a
    contract 6-tuple (actions, objective, constraints, p_ex, q_ex, p_p2p)."""
    _, _, constraints, p_ex, q_ex, p_p2p = contract
    d_p, d_q = cp.Parameter(horizon), cp.Parameter(horizon)
    problem = cp.Problem(cp.Maximize(d_p @ p_ex + d_q @ q_ex), list(constraints) + [p_p2p == 0])
    out = {}
    for name, dp, dq in directions(horizon):
        d_p.value, d_q.value = dp, dq
        try:
            problem.solve(solver=solver)
        except cp.error.SolverError:
            out[name] = None
            continue
        out[name] = float(problem.value) if problem.status in ("optimal", "optimal_inaccurate") else None
    return out


def action_ranges(contract, solver="CLARABEL"):
    """{action: [least, most sum over the steps, least, most first-step value]} of a contract 6-tuple
    under its constraints with p_p2p = 0 (None where a solve is not optimal): unique values, unlike
    the actions at a probe's optimum, so a mismatch can name the action, and so the device, whose
    bound or energy limit differs from the reference's (``support_mismatches``). One problem,
    compiled once, whose linear objective is a parameter (4 directions per action)."""
    actions, _, constraints, _, _, p_p2p = contract
    names = list(actions)
    flat = [cp.reshape(actions[a], (int(actions[a].size),), order="C") for a in names]
    sizes = [int(f.size) for f in flat]
    stacked = cp.hstack(flat)
    weight = cp.Parameter(sum(sizes))
    problem = cp.Problem(cp.Maximize(weight @ stacked), list(constraints) + [p_p2p == 0])
    out, offset = {}, 0
    for name, size in zip(names, sizes):
        row = []
        for sign, width in ((-1.0, size), (1.0, size), (-1.0, 1), (1.0, 1)):
            w = np.zeros(weight.size)
            w[offset:offset + width] = sign
            weight.value = w
            try:
                problem.solve(solver=solver)
            except cp.error.SolverError:
                row.append(None)
                continue
            ok = problem.status in ("optimal", "optimal_inaccurate")
            row.append(float(sign * problem.value) if ok else None)
        out[name] = row
        offset += size
    return out


def support_mismatches(candidate, reference, candidate_ranges=None, reference_ranges=None):
    """Sentences naming each probe where the candidate's support value differs from the reference's;
    given the action ranges of both (``support_values``), the first sentence also names the actions
    whose range differs: the device whose bound or energy limit is off."""
    out = []
    for name, ref in reference.items():
        got = candidate.get(name)
        if ref is None and got is None:
            continue
        if _differs(got, ref):
            unit = "kvar" if "reactive" in name else "kW"
            show = lambda v, unit=unit: "unbounded or infeasible" if v is None else f"{v:.3f} {unit} (summed over the steps)"  # noqa: E731
            out.append(f"feasible set differs from the reference's: {name} is {show(got)}, the reference "
                       f"allows {show(ref)} (a device bound, energy limit or preference that is slack at "
                       f"the optimum but changes what the model can trade)")
    if out:
        out[0] += _range_clause(candidate_ranges or {}, reference_ranges or {})
    return out


def _differs(got, ref):
    """Two support or range values differ beyond the solver tolerances (None: unbounded or infeasible)."""
    if got is None or ref is None:
        return (got is None) != (ref is None)
    return abs(got - ref) > SUPPORT_REL_TOL * max(1.0, abs(ref)) + SUPPORT_ABS_TOL_KW


RANGE_NAMES = ("least sum over the steps", "most sum over the steps", "least first-step value",
               "most first-step value")


def _range_clause(candidate_ranges, reference_ranges):
    """'; actions that differ: X: most sum over the steps a (reference b), ...' or ''."""
    parts = []
    for action in sorted(set(candidate_ranges) & set(reference_ranges)):
        for what, got, ref in zip(RANGE_NAMES, candidate_ranges[action], reference_ranges[action]):
            if _differs(got, ref):
                show = lambda v: "unbounded" if v is None else f"{v:.3f}"  # noqa: E731
                parts.append(f"{action}: {what} {show(got)} (the reference's {show(ref)})")
    return "; actions whose range differs: " + ", ".join(parts) if parts else ""
