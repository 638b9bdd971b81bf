"""Scale-up scenario: 118 prosumers on the SimBench LV rural feeder 1-LV-rural3--0-sw.

One seeded prosumer per load (households of a few kW with PV, batteries, generators and
controllable loads drawn like the default scenario's), all in one grouped prosumer simulator.

    python -m scenarios.simbench_100
    python -m scenarios.simbench_100 --grouping per_prosumer     # one simulator per prosumer
"""

from scenarios.config import ScenarioConfig
from scenarios.cosim import main_for

DEFAULTS = ScenarioConfig(scenario="simbench_100", network="simbench_lv_rural3", specs="generate",
                          grouping="grouped")


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
