"""The paper's testbed: one day of P2P trading among 20 prosumers on the 141-bus Caracas feeder.

Feeder: MATPOWER ``case141`` (Khodr et al. 2008, 12.47 kV, 11.9 MW + 7.4 MVAr of load on 84
load buses; simulators/grid/case141.py).  The prosumers sit at the 20 load buses of largest
nominal load (ties at equal load go to the lower bus index: bus 66 is taken, bus 84 with the
same 191 kW is not).  Those 20 buses carry 6.9 MW, 57 % of the feeder's load, so what the
prosumers do moves the feeder's voltages, and 11 of them lie on the weak lateral (MATPOWER
buses 58..86) whose base-case voltage is 0.928..0.936 p.u.  Spreading 20 prosumers evenly
along the feeder would instead pick many loads of 10..60 kW that cannot affect the grid.
The other 64 loads stay as constant background demand at their nominal values (5.1 MW).
With the prosumers' profiles in place of their nominal loads the feeder stays inside the
0.95..1.05 p.u. band on the default test day (the unmodified base case, every load at its
nominal value, has 57 buses below 0.95 p.u.).

Devices are sized from the bus loads by simulators/prosumer/generate.py with seed 7 (the
default scenario's seed); the shipped file scenarios/data/ieee141_prosumers.json is exactly

    python -c "from scenarios.ieee141_20 import write_specs; write_specs()"

Grid model: ``ac`` (lightsim2grid, equal to pandapower ``runpp`` within 1e-9 p.u. on this
feeder, tests/test_case141.py); its 0.0009 ohm branches put the round-off floor of the power
mismatch near 1e-9, which is why AcGrid's tolerance is 1e-8 (pandapower's own default).

    python -m scenarios.ieee141_20
    python -m scenarios.ieee141_20 --market mmr --policy idle --seed 3
"""

from pathlib import Path

from scenarios.cli import main_for
from simulators.scenario import PRESETS

N_PROSUMERS = 20
SPEC_SEED = 7
DEFAULTS = PRESETS["ieee141_20"]
SPECS = Path(DEFAULTS.specs)


def make_specs(n=N_PROSUMERS, seed=SPEC_SEED):
    """Prosumer specs at the ``n`` largest load buses of ieee141, sized by generate_specs."""
    from simulators.grid.networks import largest_load_buses, make_network, nominal_load_kw
    from simulators.prosumer.generate import generate_specs

    net = make_network("ieee141")
    nominal = nominal_load_kw(net)
    return generate_specs({bus: nominal[bus] for bus in largest_load_buses(net, n)}, seed)


def write_specs(path=SPECS):
    """Write make_specs() to ``path`` (the shipped spec file by default)."""
    from simulators.prosumer.spec import save_specs

    save_specs(make_specs(), path)


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
