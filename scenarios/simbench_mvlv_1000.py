"""District scale: 1000 prosumers on SimBench's rural MV grid with its 90 LV grids (1-MVLV-rural-all-0-sw).

1000 of the grid's 5131 load buses are drawn with the seed, each holding one prosumer generated
like simbench_100's (PV, batteries, generators, controllable loads sized to the bus's load); the
other loads and PV units stay in the grid as constant background.  Grouped prosumer simulators,
exact AC power flow (lightsim2grid), the default SDR market.

    python -m scenarios.simbench_mvlv_1000
    python -m scenarios.simbench_mvlv_1000 --prosumer-workers 4 --prosumer-start cmd   # 4 worker processes
"""

from scenarios.cli import main_for
from simulators.scenario import PRESETS

DEFAULTS = PRESETS["simbench_mvlv_1000"]


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
