"""Verification of a generated prosumer model before it is accepted, and its test states.

A candidate passes when, on every test state: the static check passes; the jailed child builds
a DCP problem whose problem data the parent accepts and solves to optimality with its own
solver (agents/llm/sandbox.py: status, objective and every value below are the parent's, never
the child's); the action dict has every expected key; the solution
respects the device limits (checked by replaying the actions through the device physics of
simulators/prosumer/fleet.py: battery power and SoC, generator limits and ramps, controllable-
load window/rate/energy, PV availability; the generator's on/off with p_min is relaxed to
[0, p_max] as in the reference); the power balance holds for p_ex; and its optimal
objective is within ``rel_tol`` (plus ``abs_tol_eur``) of the trusted reference model
(agents/expert/reference.py, run in-process) on the same spec and state; and its feasible set
of grid exchanges matches the reference's in every probe direction (support.py), so a bound that
is slack at these optima but changes what the model can trade is caught too. Stand-alone, with
no P2P partner, both problems fix p_p2p = 0.
"""

import numpy as np

from agents.expert.blocks import BLOCKS, KW_TOL, CheckContext
from agents.expert.program import state_lists
from agents.expert.reference import action_keys
from agents.llm.sandbox import Limits, run_prosumer, static_check
from agents.llm.support import action_ranges, support_mismatches, support_values
from simulators.prosumer.devices import DEVICES


# ---- test states -------------------------------------------------------------------------------
def make_test_states(specs, n=3, seed=0, date=None):
    """{name: [state, ...]}: n states per prosumer at spread-out steps of one day.

    Profiles come from the SimBench profile bank (simulators/profiles/data.py) on a training day
    (DEFAULT_TRAIN_DAY: acceptance steers prompt and model choices, so never a test day) when it is available, else from a synthetic day; tariffs from the 'tou' preset
    of simulators/market/tariffs.py when available, else a synthetic time-of-use tariff.
    """
    load, pv = _profiles(specs, seed, date)
    buy, sell = _tariffs()
    times = [int(round(k * 80 / max(n - 1, 1))) for k in range(n)] if n > 1 else [0]
    out = {}
    for j, spec in enumerate(specs):
        out[spec.name] = [_state(spec, t, k, n, load[:, j], pv[:, j], buy, sell) for k, t in enumerate(times)]
    return out


def _state(spec, t, k, n, load, pv, buy, sell):
    devices = {name: [BLOCKS[key].test_state(u, k, n, t) for u in getattr(spec, key)]
               for name, key in state_lists().items()}  # device states varied per state k (blocks.py)
    return {"time": t, "horizon": 96 - t, "load_kw": load[t:].copy(), "pv_avail_kw": pv[t:].copy(),
            "tariff_buy": buy[t:].copy(), "tariff_sell": sell[t:].copy(), **devices, "dt_h": 0.25}


def _profiles(specs, seed, date):
    try:
        from simulators.profiles.data import DEFAULT_TRAIN_DAY, ProfileBank, assign_profiles, prosumer_days

        bank = ProfileBank.simbench()
        days = prosumer_days(bank, specs, assign_profiles(specs, seed, bank), date or DEFAULT_TRAIN_DAY)
        return days.load_kw[:96], days.pv_avail_kw[:96]
    except ImportError:
        hours = np.arange(96) * 0.25
        shape_load = 0.5 + 0.3 * np.exp(-((hours - 8) / 2) ** 2) + 0.5 * np.exp(-((hours - 20) / 2.5) ** 2)
        shape_pv = np.clip(np.sin(np.pi * (hours - 6) / 14), 0, None)
        load = np.outer(shape_load / shape_load.max(), [s.load_peak_kw for s in specs])
        pv = np.outer(shape_pv, [sum(p.kwp for p in s.pv) for s in specs])
        return load, pv


def _tariffs():
    try:
        from simulators.market.tariffs import make_tariff

        tariff = make_tariff("tou")
        return np.array(tariff.buy_eur_per_kwh), np.array(tariff.sell_eur_per_kwh)
    except ImportError:
        hours = np.arange(96) * 0.25
        buy = np.where((hours >= 6) & (hours < 22), 0.25, 0.17)
        return np.where((hours >= 17) & (hours < 21), 0.36, buy), np.full(96, 0.08)


# ---- checks --------------------------------------------------------------------------------------
def _keys(spec, kind):
    return [action_keys()[kind].format(i=i) for i in range(1, len(getattr(spec, kind)) + 1)]


def _series(rec, key, horizon):
    vals = rec["actions"].get(key)
    if vals is None:
        return None
    arr = np.asarray(vals, dtype=float)
    return np.full(horizon, arr[0]) if arr.size == 1 else arr


def check_limits(spec, state, rec):
    """Reasons why the solution ``rec`` (the parent's record of a state) breaks a device limit or the balance."""
    horizon, dt, t0 = int(state["horizon"]), float(state["dt_h"]), int(state["time"])
    missing = [k for kind in BLOCKS for k in _keys(spec, kind) if k not in rec["actions"]]
    if missing:
        return [f"actions lack the keys {missing}"]
    s = {kind: [_series(rec, k, horizon) for k in _keys(spec, kind)] for kind in BLOCKS}
    reasons = []
    total_kwp = sum(p.kwp for p in spec.pv) or 1.0
    pv_avail = np.asarray(state["pv_avail_kw"], dtype=float)
    for kind, block in BLOCKS.items():  # each device type's limits (agents/expert/blocks.py)
        values = state.get(DEVICES[kind].state, [None] * len(s[kind])) if DEVICES[kind].state else None
        for i, (unit, p) in enumerate(zip(getattr(spec, kind), s[kind]), 1):
            ctx = CheckContext(dt, t0 + np.arange(horizon), total_kwp, pv_avail)
            block.check(reasons, i, unit, p, None if values is None else values[i - 1], ctx)
    if not reasons:
        reasons += _balance(spec, state, rec, s)
    return reasons


def _balance(spec, state, rec, s):
    """The meter power implied by the devices must equal -p_ex (export positive) with no P2P."""
    net = np.asarray(state["load_kw"], dtype=float).copy()
    for kind in BLOCKS:
        for p in s[kind]:
            net += DEVICES[kind].sign * p
    p_ex = np.asarray(rec.get("p_ex") or [], dtype=float)
    if p_ex.shape != net.shape:
        return [f"p_ex has {p_ex.size} values, expected {net.size}"]
    err = np.abs(net + p_ex)
    scale = max(1.0, float(np.abs(net).max()))
    if err.max() > KW_TOL + 1e-4 * scale:
        return [f"power balance: load + batteries + controllable loads - PV - generators differs from "
                f"-p_ex by up to {err.max():.3f} kW (step {int(err.argmax())})"]
    return []


def reference_records(spec, states, solver="CLARABEL"):
    """Per state the trusted reference model's (in-process) stand-alone optimal objective and the
    support values of its feasible set (support.py): [{"objective": EUR, "support": {...}}]; the
    reference's action ranges are computed only where a candidate's support differs (assess)."""
    from agents.expert.reference import build_reference

    model = build_reference(spec)
    out = []
    for state in states:
        objective = model.solve(state, solver=solver)["objective"]
        out.append({"objective": objective, "support": support_values(model(state), int(state["horizon"]), solver)})
    return out


def _reference_ranges(spec, state, solver="CLARABEL"):
    """The trusted reference's action ranges at ``state`` (support.action_ranges)."""
    from agents.expert.reference import build_reference

    return action_ranges(build_reference(spec)(state), solver)


def verify(code, spec, states, *, rel_tol=0.01, abs_tol_eur=0.01, limits=None, references=None,
           allow_unjailed=False):
    """Accept or reject ``code`` for ``spec`` on ``states``; returns a plain dict.

    references: optional reference_records(spec, states), computed if None.
    Raises agents.llm.jail.JailUnavailable when the jail does not work here, unless ``allow_unjailed``.
    """
    out = {"accepted": False, "reasons": [], "states": [], "max_abs_gap": None, "rel_tol": rel_tol,
           "abs_tol_eur": abs_tol_eur}
    static = static_check(code)
    if static:
        out["reasons"] = ["static check: " + r for r in static]
        return out
    run = run_prosumer(code, states, limits=limits or Limits(), allow_unjailed=allow_unjailed)
    return assess(out, spec, states, run.states, run.reasons, references, rel_tol, abs_tol_eur)


def assess(out, spec, states, records, reasons, references=None, rel_tol=0.01, abs_tol_eur=0.01):
    """Fill ``out`` (verify's dict) from the parent's ``records`` of the states (sandbox.judge) and the
    run's ``reasons``: device limits, balance and the gap to the reference objectives."""
    out["reasons"] += reasons
    if references is None:
        references = reference_records(spec, states)
    gaps = []
    for st, rec, reference in zip(states, records, references):
        ref = reference["objective"]
        row = {"time": st["time"], "status": rec["status"], "objective": rec.get("objective"), "reference": ref,
               "build_s": rec.get("build_s")}
        if rec["status"] == "optimal":
            out["reasons"] += [f"state at time {st['time']}: {r}" for r in check_limits(spec, st, rec)]
            mismatches = support_mismatches(rec.get("support") or {}, reference["support"])
            if mismatches and rec.get("action_ranges"):  # name the action: the reference's ranges, only now
                mismatches = support_mismatches(rec["support"], reference["support"], rec["action_ranges"],
                                                reference.get("action_ranges") or _reference_ranges(spec, st))
            out["reasons"] += [f"state at time {st['time']}: {r}" for r in mismatches]
            gap = rec["objective"] - ref
            row["gap_eur"], row["rel_gap"] = gap, gap / max(abs(ref), 1e-9)
            gaps.append(row["rel_gap"])
            if abs(gap) > rel_tol * abs(ref) + abs_tol_eur:
                out["reasons"].append(f"state at time {st['time']}: objective {rec['objective']:.4f} EUR is "
                                      f"{100 * row['rel_gap']:+.2f} % off the reference {ref:.4f} EUR "
                                      f"(tolerance {100 * rel_tol:g} % + {abs_tol_eur} EUR)")
        out["states"].append(row)
    out["max_abs_gap"] = max((abs(g) for g in gaps), default=None)
    out["accepted"] = not out["reasons"] and len(gaps) == len(states)
    return out
