"""Stressed feeder: the default IEEE 33-bus scenario with high PV and battery penetration.

Every one of the 32 prosumers of the default scenario gets rooftop PV of PV_KWP_PER_KW kWp per
kW of its peak load (9.3 MWp on a feeder of 3.7 MW peak load; the default file has 2.9 MWp on 23
of them) and, where it had none, a battery of BATTERY_HOURS hours at half-rating power; generators,
controllable loads, existing batteries and preferences stay as they are.  At midday the feeder
exports several MW and the voltages at its far ends rise above 1.05 p.u. unless the prosumers
absorb reactive power, store or curtail: measured on validation days (README, "Imitative expert
MARL"), the rule policy leaves the 0.95..1.05 band on 44 % of the steps (its one-step-delayed
droop and battery rules oscillate), the optimization expert that ignores the network on 5 % of
them, while the joint expert with the network limits stays inside at the same cost.

The shipped file scenarios/data/ieee33_high_pv_prosumers.json is exactly

    python -c "from scenarios.ieee33_high_pv import write_specs; write_specs()"

    python -m scenarios.ieee33_high_pv                    # the default test day, rule policy
    python -m scenarios.ieee33_high_pv --policy expert --policy-options '{"network_limits": false}'
"""

import dataclasses
from pathlib import Path

from scenarios.cli import main_for
from simulators.scenario import PRESETS

PV_KWP_PER_KW = 2.5
"""PV peak power per kW of the prosumer's peak load"""
BATTERY_HOURS = 2.0
"""capacity of an added battery in hours of the prosumer's peak load; its power rating is half that"""
BATTERY_COST_EUR_PER_KWH = 0.01
"""throughput cost of an added battery (the default file's batteries cost the same)"""
DEFAULTS = PRESETS["ieee33_high_pv"]
SPECS = Path(DEFAULTS.specs)


def make_specs():
    """The default scenario's prosumers with PV and batteries as the module docstring says."""
    from simulators.prosumer.spec import BatterySpec, PVSpec, load_specs

    out = []
    for s in load_specs(PRESETS["ieee33_day"].specs):
        capacity = round(BATTERY_HOURS * s.load_peak_kw, 3)
        batteries = s.batteries or (BatterySpec(capacity_kwh=capacity, p_max_kw=round(capacity / 2, 3),
                                                cost_eur_per_kwh=BATTERY_COST_EUR_PER_KWH),)
        pv = (PVSpec(kwp=round(PV_KWP_PER_KW * s.load_peak_kw, 3)),)
        out.append(dataclasses.replace(s, pv=type(s.pv)(pv), batteries=type(s.batteries)(batteries)))
    return out


def write_specs(path=SPECS):
    """Write make_specs() to ``path`` (the shipped spec file by default)."""
    from simulators.prosumer.spec import save_specs

    save_specs(make_specs(), path)


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
