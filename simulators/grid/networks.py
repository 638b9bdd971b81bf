"""Feeder registry: pandapower networks by name, with the project's voltage band applied.

A network is named either by a key of NETWORKS (``ieee33``, ``ieee141``, and aliases of SimBench
grids such as ``simbench_lv_rural3``) or by any SimBench code with the prefix ``simbench:``, e.g.
``simbench:1-LV-semiurb4--0-sw`` or ``simbench:1-MVLV-rural-all-0-sw`` (all 246 codes of
``simbench.collect_all_simbench_codes()``), without editing the registry.

Every builder returns a fresh pandapower net whose buses carry the band V_MIN_PU..V_MAX_PU
(0.95..1.05 p.u.) in ``bus.min_vm_pu`` / ``bus.max_vm_pu``; pandapower's case33bw stores
0.9/1.1, which we override.  Building a SimBench net parses CSV files (3 s for an LV feeder,
7-13 s for a combined MV/LV grid), so each source net is built once per process and
deep-copied on every call.
"""

import copy
import functools

import numpy as np

from simulators.units import KW_PER_MW, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError


def _ieee33():
    """Baran & Wu 33-bus 12.66 kV feeder (pandapower ``case33bw``): 33 buses, 32 loads, 3.7 MW."""
    import pandapower.networks as pn

    return pn.case33bw()


def _simbench(code):
    """The SimBench grid of ``code`` (e.g. '1-LV-rural3--0-sw': 0.4 kV rural feeder behind one
    0.4 MVA 20/0.4 kV Dyn5 transformer; 129 buses, 118 household loads, 17 PV sgens)."""
    import simbench

    return simbench.get_simbench_net(code)


def _ieee141():
    """Khodr et al. 141-bus 12.47 kV Caracas feeder (MATPOWER ``case141``, simulators/grid/case141.py):
    141 buses (index = MATPOWER bus number), 140 lines, 84 loads, 11.9 MW + 7.4 MVAr."""
    from simulators.grid.case141 import load_case141

    return load_case141()


SIMBENCH_PREFIX = "simbench:"
"""network names starting with this are SimBench codes"""

SIMBENCH_ALIASES = {"simbench_lv_rural3": "1-LV-rural3--0-sw"}
"""short names of SimBench grids; ``simbench_lv_rural3`` and ``simbench:1-LV-rural3--0-sw`` are one net"""

NETWORKS = {
    "ieee33": _ieee33,
    "ieee141": _ieee141,
    **{alias: functools.partial(_simbench, code) for alias, code in SIMBENCH_ALIASES.items()},
}
"""feeder name -> builder of the raw pandapower net (use make_network, which adds the band);
any other SimBench grid is reached by its code, ``simbench:<code>``"""


def simbench_codes():
    """Every SimBench code the installed ``simbench`` package knows (246 in simbench 1.6)."""
    import simbench

    return list(simbench.collect_all_simbench_codes())


def check_network(name):
    """Return ``name`` if it names a network (a NETWORKS key or 'simbench:<code>' of a known
    SimBench code); else ConfigError naming the field, the value and what is allowed."""
    if isinstance(name, str) and name in NETWORKS:
        return name
    if isinstance(name, str) and name.startswith(SIMBENCH_PREFIX):
        code = name[len(SIMBENCH_PREFIX):]
        codes = simbench_codes()
        if code in codes:
            return name
        near = [c for c in codes if c.split("-")[:2] == code.split("-")[:2]][:4] or codes[-4:]
        raise ConfigError(f"network: {name!r} is not a SimBench code; allowed: 'simbench:' + one of the "
                          f"{len(codes)} codes of simbench.collect_all_simbench_codes(), e.g. "
                          f"{', '.join(SIMBENCH_PREFIX + c for c in near)}")
    raise ConfigError(f"network: {name!r} is not one of {sorted(NETWORKS)} nor "
                      f"'{SIMBENCH_PREFIX}<code>' with a SimBench code (e.g. {SIMBENCH_PREFIX}1-LV-semiurb4--0-sw)")


def _canonical(name):
    """One key per net: an alias becomes its 'simbench:<code>' name."""
    return SIMBENCH_PREFIX + SIMBENCH_ALIASES[name] if name in SIMBENCH_ALIASES else name


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
    """The cleaned net of canonical ``name``, built once per process; never handed out (deep-copy it)."""
    if name.startswith(SIMBENCH_PREFIX):
        return _clean(_simbench(name[len(SIMBENCH_PREFIX):]))
    return _clean(NETWORKS[name]())


def make_network(name):
    """A fresh pandapower net of network ``name`` (see check_network); ConfigError otherwise."""
    return copy.deepcopy(_source(_canonical(check_network(name))))


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


def feeder_groups(net, buses):
    """Feeder label (0, 1, ...) of each bus of ``buses``: the connected parts of the net with its
    transformers and open switches taken out, numbered in order of first appearance.  On a
    SimBench MV/LV grid every LV grid is one feeder and the MV level another; a feeder without
    transformers (ieee33) is one feeder.  Used as attention neighbourhoods (agents/marl/attention.py)."""
    import pandapower.topology as top

    graph = top.create_nxgraph(net, include_trafos=False, include_trafo3ws=False, respect_switches=True)
    component = {}
    for k, part in enumerate(top.connected_components(graph)):
        component.update(dict.fromkeys(part, k))
    labels = {}
    return np.array([labels.setdefault(component[int(b)], len(labels)) for b in buses], dtype=np.int64)
