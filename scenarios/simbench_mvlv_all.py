"""City-district scale: every load bus of SimBench's 1-MVLV-rural-all-0-sw as a prosumer (5131 prosumers).

One generated prosumer per load bus of the rural MV grid and its 90 LV grids (5373 loads on 5131
buses; the grid's own loads and PV units at those buses are replaced by the prosumers), grouped
prosumer simulators, exact AC power flow (lightsim2grid), the default SDR market.

    python -m scenarios.simbench_mvlv_all
    python -m scenarios.simbench_mvlv_all --prosumer-workers 2 --prosumer-start connect \\
        --prosumer-hosts hostA:5678,hostB:5678          # blocks on two other machines (README)
"""

from scenarios.cli import main_for
from simulators.scenario import PRESETS

DEFAULTS = PRESETS["simbench_mvlv_all"]


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
