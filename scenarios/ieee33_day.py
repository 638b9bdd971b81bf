"""Default scenario: one held-out test day of P2P trading on the IEEE 33-bus feeder.

32 heterogeneous prosumers (one per load bus, specs in scenarios/data/ieee33_prosumers.json),
96 steps of 15 minutes, supply-demand-ratio market, time-of-use tariff, rule-based policy,
one mosaik simulator per prosumer.

    python -m scenarios.ieee33_day                        # the default run
    python -m scenarios.ieee33_day --market mmr --policy idle --seed 3
    python -m scenarios.ieee33_day --help                 # every flag
"""

from scenarios.cli import main_for
from simulators.scenario import PRESETS

DEFAULTS = PRESETS["ieee33_day"]


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
