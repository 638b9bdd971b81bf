"""Feeder registry: pandapower networks by name, with the project's voltage band applied.

Every builder returns a fresh pandapower net whose buses carry the band V_MIN_PU..V_MAX_PU
(0.95..1.05 p.u.) in ``bus.min_vm_pu`` / ``bus.max_vm_pu``; pandapower's case33bw stores
0.9/1.1, which we override.  Building a SimBench net parses CSV files (~3 s), so each source
net is built once per process and deep-copied on every call.
"""

import copy
import functools

import numpy as np

from simulators.units import KW_PER_MW, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError, check_choice


def _ieee33():
    """Baran & Wu 33-bus 12.66 kV feeder (pandapower ``case33bw``): 33 buses, 32 loads, 3.7 MW."""
    import pandapower.networks as pn

    return pn.case33bw()


def _simbench_lv_rural3():
    """SimBench ``1-LV-rural3--0-sw``: 0.4 kV rural feeder behind one 0.4 MVA 20/0.4 kV Dyn5
    transformer; 129 buses (one on the 20 kV side), 118 household loads, 17 PV sgens."""
    import simbench

    return simbench.get_simbench_net("1-LV-rural3--0-sw")


def _ieee141():
    """Khodr et al. 141-bus 12.47 kV Caracas feeder (MATPOWER ``case141``, simulators/grid/case141.py):
    141 buses (index = MATPOWER bus number), 140 lines, 84 loads, 11.9 MW + 7.4 MVAr."""
    from simulators.grid.case141 import load_case141

    return load_case141()


NETWORKS = {
    "ieee33": _ieee33,
    "ieee141": _ieee141,
    "simbench_lv_rural3": _simbench_lv_rural3,
}
"""feeder name -> builder of the raw pandapower net (use make_network, which adds the band)"""


def _clean(net):
    """Apply the voltage band and cast object-typed ``min_*``/``max_*`` columns to float.

    SimBench ships those limit columns as ``object`` (mixed NaN/None), which breaks numeric
    code downstream (lightsim2grid's converter among others).
    """
    for table in ("bus", "load", "sgen", "gen", "ext_grid", "line", "trafo", "storage"):
        df = net[table]
        for col in df.columns:
            if col.startswith(("min_", "max_")) and df[col].dtype == object:
                df[col] = df[col].astype(float)
    net.bus["min_vm_pu"] = V_MIN_PU
    net.bus["max_vm_pu"] = V_MAX_PU
    return net


@functools.lru_cache(maxsize=None)
def _source(name):
    """The cleaned net of ``name``, built once per process; never handed out (deep-copy it)."""
    return _clean(NETWORKS[name]())


def make_network(name):
    """A fresh pandapower net of feeder ``name`` (a key of NETWORKS); ConfigError otherwise."""
    check_choice("network", name, NETWORKS)
    return copy.deepcopy(_source(name))


def load_buses(net):
    """Sorted pandapower bus indices carrying at least one in-service load (prosumer candidates)."""
    loads = net.load[net.load["in_service"].astype(bool)]
    return sorted(int(b) for b in np.unique(loads["bus"].to_numpy()))


def nominal_load_kw(net):
    """Bus index -> total nominal active load [kW] of its in-service loads (``p_mw * scaling``)."""
    loads = net.load[net.load["in_service"].astype(bool)]
    p_kw = loads["p_mw"].to_numpy(dtype=float) * loads["scaling"].to_numpy(dtype=float) * KW_PER_MW
    total = {}
    for bus, p in zip(loads["bus"].to_numpy(), p_kw):
        total[int(bus)] = total.get(int(bus), 0.0) + float(p)
    return dict(sorted(total.items()))


def largest_load_buses(net, n):
    """The ``n`` load buses of largest nominal load, sorted by bus index; ties at equal load
    go to the lower bus index.  ConfigError when the net has fewer than ``n`` load buses."""
    nominal = nominal_load_kw(net)
    if not 1 <= n <= len(nominal):
        raise ConfigError(f"n: {n!r} outside the allowed range [1, {len(nominal)}] (load buses of the net)")
    ranked = sorted(nominal, key=lambda bus: (-nominal[bus], bus))
    return sorted(ranked[:n])
