"""Seeded generation of a heterogeneous prosumer population for a feeder.

Used to write the shipped spec file of the default scenario (scenarios/data/ieee33_prosumers.json,
see scenarios/make_specs.py) and to populate large feeders (SimBench) on the fly.  Device sizes
scale with each bus's nominal load, so the same rules fit a 33-bus MV feeder (loads of
hundreds of kW) and an LV feeder (households of a few kW).
"""

import numpy as np

from simulators.prosumer.spec import spec_from_dict
from simulators.validation import ConfigError

PREFERENCE_EXAMPLES = (
    "don't run the generator at night",
    "keep the battery above 50% before 18:00",
    "run the controllable load after 10:00",
    "limit grid import to {limit} kW",
)
"""preferences attached to some prosumers; the expert layer turns them into soft constraints"""


def choose_buses(bus_load_kw, n, seed):
    """The entries of ``bus_load_kw`` (bus -> nominal load [kW]) of ``n`` load buses drawn
    without replacement with numpy Generator([seed, 1]) (a stream apart from generate_specs'
    own); ``n`` = 0 keeps every bus.  ConfigError when the net has fewer than ``n`` load buses."""
    if not n:
        return dict(bus_load_kw)
    buses = sorted(bus_load_kw)
    if not 1 <= n <= len(buses):
        raise ConfigError(f"n_prosumers: {n!r} outside the allowed range [0, {len(buses)}] (load buses of the net)")
    drawn = np.random.default_rng([int(seed), 1]).choice(len(buses), size=n, replace=False)
    return {buses[i]: bus_load_kw[buses[i]] for i in sorted(drawn)}


def generate_specs(bus_load_kw, seed, pv_share=0.8, battery_share=0.5, generator_share=0.25,
                   cl_share=0.35, preference_share=0.2):
    """One prosumer per bus; ``bus_load_kw`` maps pandapower bus index -> nominal load [kW].

    Each share is the probability that a prosumer owns that device type; a few prosumers
    own two PV arrays or two batteries so multi-unit handling is exercised.
    """
    rng = np.random.default_rng(seed)
    raw = []
    for k, (bus, peak) in enumerate(sorted(bus_load_kw.items())):
        peak = float(peak)
        entry = {"name": f"p{k:03d}", "bus": int(bus), "load_peak_kw": round(peak, 3),
                 "load_pf": 0.95, "pv": [], "batteries": [], "generators": [],
                 "controllable_loads": [], "preferences": []}
        if rng.random() < pv_share:
            kwp = peak * rng.uniform(0.6, 1.6)
            units = 2 if rng.random() < 0.15 else 1
            entry["pv"] = [{"kwp": round(kwp / units, 3)} for _ in range(units)]
        if rng.random() < battery_share:
            cap = peak * rng.uniform(1.0, 3.0)
            units = 2 if rng.random() < 0.15 else 1
            entry["batteries"] = [{
                "capacity_kwh": round(cap / units, 3), "p_max_kw": round(cap / units / 2.0, 3),
                "eta_charge": 0.95, "eta_discharge": 0.95, "soc_min": 0.1, "soc_max": 0.9,
                "soc_init": 0.5, "cost_eur_per_kwh": 0.01} for _ in range(units)]
        if rng.random() < generator_share:
            pmax = peak * rng.uniform(0.3, 0.8)
            entry["generators"] = [{
                "p_max_kw": round(pmax, 3), "p_min_kw": 0.0,
                "ramp_kw_per_step": round(pmax * 0.5, 3),
                "cost_a_eur_per_kw2h": round(float(rng.uniform(0.05, 0.2)) / max(pmax, 1.0), 6),
                "cost_b_eur_per_kwh": round(float(rng.uniform(0.10, 0.18)), 4),
                "cost_c_eur_per_h": 0.0}]
        if rng.random() < cl_share:
            pmax = peak * rng.uniform(0.1, 0.3)
            earliest = int(rng.integers(0, 40))
            deadline = int(rng.integers(max(earliest + 24, 60), 97))
            hours = (deadline - earliest) * 0.25
            entry["controllable_loads"] = [{
                "energy_kwh": round(pmax * hours * rng.uniform(0.2, 0.5), 3), "p_max_kw": round(pmax, 3),
                "earliest_step": earliest, "deadline_step": deadline,
                "unserved_penalty_eur_per_kwh": 0.5}]
        if rng.random() < preference_share:
            entry["preferences"] = _preferences_for(entry, rng)
        raw.append(entry)
    return [spec_from_dict(r, i) for i, r in enumerate(raw)]


def _preferences_for(entry, rng):
    options = []
    if entry["generators"]:
        options.append(PREFERENCE_EXAMPLES[0])
    if entry["batteries"]:
        options.append(PREFERENCE_EXAMPLES[1])
    if entry["controllable_loads"] and entry["controllable_loads"][0]["earliest_step"] < 40:
        options.append(PREFERENCE_EXAMPLES[2])
    options.append(PREFERENCE_EXAMPLES[3].format(limit=round(entry["load_peak_kw"] * 0.8, 1)))
    k = int(rng.integers(1, min(2, len(options)) + 1))
    return [str(p) for p in rng.choice(options, size=k, replace=False)]
