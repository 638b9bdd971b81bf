"""IEEE 33-bus day with mosaik's own pandapower adapter (mosaik-pandapower-2) as the grid.

The same scenario as ieee33_day, but the power flow runs in ``mosaik_components.pandapower``
(pandapower ``runpp`` on every step) instead of simulators/grid/sim.py.  The feeder is built
exactly as ours (``make_network``); the native loads and sgens at prosumer buses are disabled
through the adapter's ``disable_elements``, as our grid model zeroes them, so both grids solve the
same flow (tests/test_mosaik_pandapower.py checks the voltages agree to 1e-6 p.u.).

Attribute names and units between our prosumers and the adapter's Bus entities:

    prosumer P[MW]  (load convention, > 0 consumption) -> Bus P_load[MW]   (its bus's extra load)
    prosumer Q[MVar]                                   -> Bus Q_load[MVar]
    Bus Vm[pu] -> prosumer Vm[pu] (time-shifted: the flow of step t reaches step t+1)

The adapter's Grid entity has no outputs: the recorder takes P_slack from the ExternalGrid's
P[MW], loading_max from the Lines' loading[%], and derives losses from the buses' P[MW] (net
demand, slack bus included) and Vm_min / Vm_max / converged from the bus voltages.  The adapter
does not catch a non-converging flow: the run then stops with an error, its rows so far kept and
summary.json marked incomplete.  ``--grid-model`` does not apply (pandapower's AC flow always).

    python -m scenarios.ieee33_mosaik_pandapower                      # one day, one simulator per prosumer
    python -m scenarios.ieee33_mosaik_pandapower --grouping grouped   # one simulator for all prosumers
    python -m scenarios.ieee33_mosaik_pandapower --help               # every flag
"""

import copy

from scenarios.cli import main_for
from simulators.cosim import GridWiring
from simulators.scenario import ScenarioConfig
from simulators.units import STEP_S
from simulators.validation import ConfigError

DEFAULTS = ScenarioConfig(scenario="ieee33_mosaik_pandapower")

PROSUMER_TO_BUS = (("P[MW]", "P_load[MW]"), ("Q[MVar]", "Q_load[MVar]"))
"""our prosumer outputs -> the adapter's Bus inputs; both load convention, MW / MVar"""


def mosaik_pandapower_grid(world, cfg, net, specs):
    """Start mosaik-pandapower-2 on ``net`` with the native elements at prosumer buses disabled."""
    import pandapower as pp

    if cfg.grid_model != "ac":
        raise ConfigError(f"grid_model: {cfg.grid_model!r} does not apply to the mosaik-pandapower-2 grid "
                          "(always pandapower's AC flow); leave it at 'ac'")
    # the first runpp in a process compiles with numba (~3 s) where it is installed: pay it here,
    # not inside world.run, on a copy without loads and sgens (always converges)
    idle = copy.deepcopy(net)
    idle.load["in_service"] = idle.sgen["in_service"] = False
    pp.runpp(idle, numba=pp.NUMBA_INSTALLED)
    grid_sim = world.start("PandapowerGrid", step_size=STEP_S)
    grid = grid_sim.Grid.create(1, net=net)[0]
    children = {}
    for e in grid.children:
        children.setdefault(e.type, []).append(e)
    prosumer_buses = {s.bus for s in specs}
    native = [e.eid for kind in ("Load", "StaticGen") for e in children.get(kind, [])
              if e.extra_info["bus"] in prosumer_buses]
    grid_sim.disable_elements(native)
    by_index = {e.extra_info["index"]: e for e in children["Bus"]}
    feeder = ([(e, [("P[MW]", "P_slack[MW]")]) for e in children["ExternalGrid"]]
              + [(e, [("loading[%]", "loading_max[%]")]) for e in children.get("Line", [])])
    return GridWiring(buses={int(b): by_index[b] for b in net.bus.index}, feeder=feeder,
                      prosumer_attrs=PROSUMER_TO_BUS, vm_attr="Vm[pu]", bus_p_attr="P[MW]")


def main(argv=None):
    return main_for(DEFAULTS, argv, description=__doc__.splitlines()[0], grid_builder=mosaik_pandapower_grid)


if __name__ == "__main__":
    main()
