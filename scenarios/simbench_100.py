"""Scale-up scenario: 118 prosumers on the SimBench LV rural feeder 1-LV-rural3--0-sw.

One seeded prosumer per load (households of a few kW with PV, batteries, generators and
controllable loads drawn like the default scenario's), all in one grouped prosumer simulator.

    python -m scenarios.simbench_100
    python -m scenarios.simbench_100 --grouping per_prosumer     # one simulator per prosumer
"""

from scenarios.cli import main_for
from simulators.scenario import PRESETS

DEFAULTS = PRESETS["simbench_100"]


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
