"""Time each grid model: milliseconds per solve on every feeder, prosumers at all load buses.

    python -m scenarios.bench_grid                  # 1000 solves per model (runpp: 1/20 of that)
    python -m scenarios.bench_grid --solves 200

Each solve gets a fresh random demand (-2x..+1.5x nominal per bus), as in a time series.
Prints the median of five repeats, the build time, and the largest voltage deviation of the
model from pandapower's runpp over the timed draws.
"""

import argparse
import time
import warnings

import numpy as np

from simulators.grid.models import GRIDS, make_grid
from simulators.grid.networks import NETWORKS, load_buses, make_network, nominal_load_kw

SLOW = {"ac_runpp": 20}
"""solve-count divisor for models that take milliseconds per solve"""


def demands(grid, net, n, seed):
    """(n, n_bus) random prosumer P [MW] and Q [MVar] at the load buses."""
    nominal = nominal_load_kw(net)
    buses = np.array(sorted(nominal))
    nom_mw = np.array([nominal[b] for b in buses]) / 1000.0
    rng = np.random.default_rng(seed)
    p, q = np.zeros((n, grid.n_bus)), np.zeros((n, grid.n_bus))
    pos = np.searchsorted(grid.bus_ids, buses)
    p[:, pos] = rng.uniform(-2.0, 1.5, (n, len(buses))) * nom_mw
    q[:, pos] = 0.3 * p[:, pos]
    return p, q


def bench(network, kind, solves, seed=0):
    net = make_network(network)
    t0 = time.perf_counter()
    grid = make_grid(kind, net, load_buses(net))
    build_s = time.perf_counter() - t0
    n = max(solves // SLOW.get(kind, 1), 5)
    p, q = demands(grid, net, n, seed)
    grid.solve(p[0], q[0])
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        results = [grid.solve(p[k], q[k]) for k in range(n)]
        runs.append((time.perf_counter() - t0) / n * 1e3)
    reference = make_grid("ac_runpp", net, load_buses(net))
    check = range(0, n, max(n // 10, 1))
    dev = max(float(np.max(np.abs(results[k].vm_pu - reference.solve(p[k], q[k]).vm_pu))) for k in check)
    return float(np.median(runs)), build_s, dev, getattr(grid, "backend", kind)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solves", type=int, default=1000, help="solves per timing run")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    print(f"{'network':20s} {'model':12s} {'backend':14s} {'ms/solve':>9s} {'build s':>8s} {'max |dV| vs runpp':>18s}")
    for network in NETWORKS:
        for kind in GRIDS:
            ms, build_s, dev, backend = bench(network, kind, args.solves)
            print(f"{network:20s} {kind:12s} {backend:14s} {ms:9.4f} {build_s:8.3f} {dev:18.2e}")


if __name__ == "__main__":
    main()
