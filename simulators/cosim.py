"""Build and run a mosaik co-simulation from a ScenarioConfig; write its run folder.

Per step t (15 minutes; mosaik time in seconds):

    Profiles(t) --load, PV--> Prosumer(t) --P,Q--> Grid bus(t) --Vm (time-shifted)--> Prosumer(t+1)
                                          --bid--> Market participant(t) --prices (time-shifted)--> Prosumer(t+1)
    everything(t) --> Recorder(t)

No same-step loop: prosumers act on the voltage and prices of the last step.
"""

import datetime as dt
import json
import time as wallclock
from dataclasses import dataclass, field

import mosaik

from simulators.market.tariffs import make_tariff
from simulators.recorder.recorder import new_run_dir
from simulators.scenario import prepare, to_dict
from simulators.units import STEP_S

PROSUMER_OUTPUTS_TO_RECORD = (
    "P[MW]", "Q[MVar]", "bid_E[kWh]", "bid_price[EUR/kWh]", "P_load_served[MW]", "P_pv[MW]", "Q_pv[MVar]",
    "P_curtailed[MW]", "P_battery[MW]", "SoC[kWh]", "P_gen[MW]", "P_cl[MW]", "E_cl_unserved[kWh]",
    "cost_device[EUR]")
PARTICIPANT_OUTPUTS = ("E_p2p_buy[kWh]", "E_p2p_sell[kWh]", "E_grid_buy[kWh]", "E_grid_sell[kWh]", "cost[EUR]")
MARKET_OUTPUTS = ("price_buy[EUR/kWh]", "price_sell[EUR/kWh]", "tariff_buy[EUR/kWh]", "tariff_sell[EUR/kWh]",
                  "supply[kWh]", "demand[kWh]", "traded[kWh]", "mechanism")
GRID_OUTPUTS = ("converged", "losses[MW]", "P_slack[MW]", "Vm_min[pu]", "Vm_max[pu]", "loading_max[%]")
"""feeder-level attributes the recorder takes (simulators/recorder/sim.py derives what a grid omits)"""


@dataclass
class GridWiring:
    """What a grid adapter offers the scenario, and under which attribute names.

    Every power is in MW / MVar, load convention (> 0: consumption), voltages in p.u.
    """

    buses: dict
    """bus index -> bus entity; prosumers connect to it and its voltage is recorded"""
    feeder: list = field(default_factory=list)
    """(entity, attrs) pairs sent to the recorder; attrs are GRID_OUTPUTS names or
    (source attr, GRID_OUTPUTS name) pairs; several sources of one attr are summed
    (P_slack, losses) or reduced by min / max / all"""
    prosumer_attrs: tuple = (("P[MW]", "P[MW]"), ("Q[MVar]", "Q[MVar]"))
    """(prosumer output, bus input) pairs"""
    vm_attr: str = "Vm[pu]"
    """bus output: voltage magnitude [p.u.]"""
    bus_p_attr: str = ""
    """bus output: net active power drawn at the bus [MW], the slack bus counting the external
    grid's supply as negative (pandapower's res_bus.p_mw); the recorder derives the losses as
    minus their sum when no feeder entity gives 'losses[MW]'. Empty: not offered"""


def sim_config(prosumer_start="python"):
    """mosaik sim config; 'PandapowerGrid' (mosaik-pandapower-2) is only started by the grid
    builder of scenarios/ieee33_mosaik_pandapower.py."""
    prosumer = ({"python": "simulators.prosumer.sim:ProsumerSim"} if prosumer_start == "python"
                else {"cmd": "%(python)s -m simulators.prosumer.sim %(addr)s"})
    return {
        "Profiles": {"python": "simulators.profiles.sim:ProfileSim"},
        "Prosumer": prosumer,
        "Market": {"python": "simulators.market.sim:MarketSim"},
        "Grid": {"python": "simulators.grid.sim:GridSim"},
        "PandapowerGrid": {"python": "mosaik_components.pandapower:Simulator"},
        "Recorder": {"python": "simulators.recorder.sim:RecorderSim"},
    }


def run_dir_for(cfg):
    return new_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, cfg.policy, cfg.seed)


def run(cfg, grid_builder=None):
    """Run the co-simulation described by ``cfg``; return (run_dir, summary dict).

    ``grid_builder(world, cfg, net, specs)`` may replace our grid simulator: it starts its
    grid and returns a GridWiring, e.g. mosaik's own pandapower adapter
    (scenarios/ieee33_mosaik_pandapower.py).
    """
    from simulators.recorder.report import plot_run, write_summary

    cfg, specs, net, tariff = prepare(cfg)
    run_dir = run_dir_for(cfg)
    context = {"specs": [s.to_dict() for s in specs], "dates": cfg.dates, "seed": cfg.seed,
               "tariff": tariff.to_dict(), "network": cfg.network, "options": cfg.policy_options}
    builder = grid_builder or our_grid
    (run_dir / "config.json").write_text(json.dumps({
        **to_dict(cfg), "grid_builder": f"{builder.__module__}:{builder.__qualname__}",
        "tariff_values": tariff.to_dict(), "prosumer_specs": context["specs"]}, indent=1))
    t0 = wallclock.perf_counter()
    world = mosaik.World(sim_config(cfg.prosumer_start), time_resolution=1.0, debug=False)
    try:
        _build(world, cfg, specs, net, context, run_dir, builder)
        t_setup = wallclock.perf_counter() - t0
        world.run(until=cfg.steps * STEP_S, print_progress=cfg.progress)
    except BaseException:
        world.shutdown()
        if (run_dir / "feeder.csv").exists():
            write_summary(run_dir, {"incomplete": True})
        raise
    t_run = wallclock.perf_counter() - t0 - t_setup
    summary = write_summary(run_dir, {"incomplete": False, "wall_setup_s": t_setup, "wall_run_s": t_run})
    if cfg.plots:
        plot_run(run_dir)
    return run_dir, summary


def _build(world, cfg, specs, net, context, run_dir, grid_builder):
    n = len(specs)
    profiles = world.start("Profiles", step_size=STEP_S)
    profile_ents = profiles.ProsumerProfile.create(
        n, specs=context["specs"], dates=cfg.dates, seed=cfg.seed)

    prosumer_args = dict(step_size=STEP_S, policy=cfg.policy, context=context, start_step=0)
    if cfg.grouping == "grouped":
        sim = world.start("Prosumer", **prosumer_args)
        prosumers = sim.Prosumer.create(n, agent_ids=list(range(n)))
    else:
        prosumers = [world.start("Prosumer", **prosumer_args).Prosumer.create(1, agent_ids=[i])[0]
                     for i in range(n)]

    market_sim = world.start("Market", step_size=STEP_S, mechanism=cfg.market, tariff=context["tariff"])
    market = market_sim.Market.create(1)[0]
    participants = market_sim.Participant.create(n)

    wiring = grid_builder(world, cfg, net, specs)
    buses = wiring.buses

    buy0, sell0 = make_tariff(cfg.tariff).at(0)
    for spec, prof, pros, part in zip(specs, profile_ents, prosumers, participants):
        world.connect(prof, pros, "P_load[MW]", "Q_load[MVar]", "P_pv_avail[MW]")
        world.connect(pros, part, "bid_E[kWh]", "bid_price[EUR/kWh]")
        world.connect(pros, buses[spec.bus], *wiring.prosumer_attrs)
        # feedback of step t reaches the prosumer at step t+1 (no same-step loop)
        world.connect(buses[spec.bus], pros, (wiring.vm_attr, "Vm[pu]"), time_shifted=True,
                      initial_data={wiring.vm_attr: 1.0})
        world.connect(part, pros, "price_buy[EUR/kWh]", "price_sell[EUR/kWh]", time_shifted=True,
                      initial_data={"price_buy[EUR/kWh]": buy0, "price_sell[EUR/kWh]": sell0})

    recorder_sim = world.start("Recorder", step_size=STEP_S)
    layout = {
        "prosumer": {e.full_id: s.name for e, s in zip(prosumers, specs)},
        "participant": {e.full_id: s.name for e, s in zip(participants, specs)},
        "prosumer_bus": {s.name: s.bus for s in specs},
        "bus": {e.full_id: b for b, e in buses.items()},
        "market": market.full_id,
        "feeder": [e.full_id for e, _ in wiring.feeder],
    }
    start = dt.datetime.fromisoformat(cfg.dates[0]).isoformat()
    recorder = recorder_sim.Recorder.create(1, run_dir=str(run_dir), layout=layout, start=start)[0]
    for e in prosumers:
        world.connect(e, recorder, *PROSUMER_OUTPUTS_TO_RECORD)
    for e in participants:
        world.connect(e, recorder, *PARTICIPANT_OUTPUTS)
    world.connect(market, recorder, *MARKET_OUTPUTS)
    for e, attrs in wiring.feeder:
        world.connect(e, recorder, *attrs)
    bus_attrs = [(wiring.vm_attr, "Vm[pu]")] + ([(wiring.bus_p_attr, "P_bus[MW]")] if wiring.bus_p_attr else [])
    for e in buses.values():
        world.connect(e, recorder, *bus_attrs)


def our_grid(world, cfg, net, specs):
    """The default grid: simulators/grid/sim.py with the configured model; one Bus entity per bus."""
    grid_sim = world.start("Grid", step_size=STEP_S, network=cfg.network, model=cfg.grid_model,
                           prosumer_buses=sorted({s.bus for s in specs}))
    grid = grid_sim.Grid.create(1)[0]
    bus_list = grid_sim.Bus.create(len(net.bus), bus=[int(b) for b in net.bus.index])
    return GridWiring(buses={int(b): e for b, e in zip(net.bus.index, bus_list)}, feeder=[(grid, GRID_OUTPUTS)])
