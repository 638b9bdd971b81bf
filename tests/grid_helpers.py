"""Random prosumer demand for grid-model tests."""

import numpy as np

from simulators.grid.networks import nominal_load_kw


def random_demand(grid, net, rng, lo, hi, buses=None):
    """(p_mw, q_mvar) per grid bus: lo..hi x the nominal load at ``buses`` (default: every load bus),
    reactive power -0.3..0.3 x nominal."""
    nominal = nominal_load_kw(net)
    buses = np.array(sorted(nominal) if buses is None else list(buses))
    nom_mw = np.array([nominal[b] for b in buses]) / 1000.0
    p, q = np.zeros(grid.n_bus), np.zeros(grid.n_bus)
    pos = np.searchsorted(grid.bus_ids, buses)
    p[pos] = rng.uniform(lo, hi, len(buses)) * nom_mw
    q[pos] = rng.uniform(-0.3, 0.3, len(buses)) * nom_mw
    return p, q
