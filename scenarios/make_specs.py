"""Write the shipped prosumer spec file of a feeder: one seeded prosumer per load bus.

    python -m scenarios.make_specs --network ieee33 --seed 7 --out scenarios/data/ieee33_prosumers.json

The default scenario's file was made with exactly that command; edit the JSON by hand to
study other device mixes (it is validated on load).
"""

import argparse

from simulators.grid.networks import make_network, nominal_load_kw
from simulators.prosumer.generate import generate_specs
from simulators.prosumer.spec import save_specs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="ieee33")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    specs = generate_specs(nominal_load_kw(make_network(args.network)), args.seed)
    save_specs(specs, args.out)
    print(f"wrote {len(specs)} prosumers to {args.out}")


if __name__ == "__main__":
    main()
