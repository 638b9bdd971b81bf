"""Write the shipped prosumer spec file of a feeder: one seeded prosumer per load bus.

    python -m scenarios.make_specs --network ieee33 --seed 7 --out scenarios/data/ieee33_prosumers.json
    python -m scenarios.make_specs --network simbench:1-LV-semiurb4--0-sw --out my_lv.json
    python -m scenarios.make_specs --network simbench:1-MVLV-rural-all-0-sw --n-prosumers 1000 --out mvlv.json

The default scenario's file was made with exactly the first command; edit the JSON by hand to
study other device mixes (it is validated on load).
"""

import argparse

from simulators.grid.networks import make_network, nominal_load_kw
from simulators.prosumer.generate import choose_buses, generate_specs
from simulators.prosumer.spec import save_specs
from simulators.validation import ConfigError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="ieee33", help="a NETWORKS name or simbench:<code>")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-prosumers", type=int, default=0,
                        help="prosumers on this many load buses drawn with the seed (0 = every load bus)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        loads = choose_buses(nominal_load_kw(make_network(args.network)), args.n_prosumers, args.seed)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    specs = generate_specs(loads, args.seed)
    save_specs(specs, args.out)
    print(f"wrote {len(specs)} prosumers to {args.out}")


if __name__ == "__main__":
    main()
