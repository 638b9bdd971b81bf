"""Build and run a mosaik co-simulation from a ScenarioConfig; write its run folder.

Per step t (15 minutes; mosaik time in seconds):

    Profiles(t) --load, PV--> Prosumer(t) --P,Q--> Grid bus(t) --Vm (time-shifted)--> Prosumer(t+1)
                                          --bid--> Market participant(t) --prices (time-shifted)--> Prosumer(t+1)
    everything(t) --> Recorder(t)

No same-step loop: prosumers act on the voltage and prices of the last step.

Prosumer simulators: one per prosumer (grouping per_prosumer) or ``prosumer_workers`` holding a
block each (grouped), started in-process (python), as OS processes by mosaik (cmd), or reached
on other hosts where they already run (connect; ``python -m simulators.prosumer.sim HOST:PORT
--remote`` on each host).  The recorder takes the prosumers', participants' and (our grid's)
buses' values as one table per simulator, not one mosaik value per entity and attribute.
"""

import asyncio
import contextlib
import datetime as dt
import json
import signal
import threading
import time as wallclock
import warnings
from dataclasses import dataclass, field

import mosaik

from simulators.market.tariffs import Tariff
from simulators.prosumer.devices import added_device_modules
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.recorder.recorder import new_run_dir
from simulators.scenario import prepare, prosumer_blocks, prosumer_hosts, to_dict
from simulators.tables import GRID, MARKET, PROFILE
from simulators.units import STEP_S

MARKET_OUTPUTS = tuple(a.name for a in MARKET.recorded())
GRID_OUTPUTS = tuple(a.name for a in GRID.recorded())
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
    bus_table: object = None
    """entity whose 'buses' output is every bus's voltage as one table (simulators/grid/sim.py);
    then ``record_buses`` lists the buses of grid.csv and ``buses`` need only hold prosumer buses"""
    record_buses: list = field(default_factory=list)
    """bus indices recorded from ``bus_table``, in grid.csv order"""


PROSUMER_STARTS = {
    "python": lambda addr, level: {"python": "simulators.prosumer.sim:ProsumerSim"},
    "cmd": lambda addr, level: {"cmd": f"%(python)s -m simulators.prosumer.sim %(addr)s --log-level {level}"},
    "connect": lambda addr, level: {"connect": addr},
}
"""prosumer_start -> mosaik sim config entry (``addr``: the HOST:PORT of a running simulator)"""


def sim_config(prosumer_start="python", verbose=False, hosts=()):
    """mosaik sim config: 'Prosumer' for python / cmd starts, 'Prosumer<k>' per address of ``hosts``
    for connect; 'PandapowerGrid' (mosaik-pandapower-2) is only started by the grid builder of
    scenarios/ieee33_mosaik_pandapower.py.  A prosumer process logs only warnings and errors
    unless ``verbose``."""
    level = "info" if verbose else "warning"
    prosumers = {f"Prosumer{k}": PROSUMER_STARTS[prosumer_start](a, level) for k, a in enumerate(hosts)}
    return {
        "Profiles": {"python": "simulators.profiles.sim:ProfileSim"},
        **(prosumers or {"Prosumer": PROSUMER_STARTS[prosumer_start]("", level)}),
        "Market": {"python": "simulators.market.sim:MarketSim"},
        "Grid": {"python": "simulators.grid.sim:GridSim"},
        "PandapowerGrid": {"python": "mosaik_components.pandapower:Simulator"},
        "Recorder": {"python": "simulators.recorder.sim:RecorderSim"},
    }


def run_dir_for(cfg):
    return new_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, cfg.policy, cfg.seed)


def builder_name(builder):
    return f"{builder.__module__}:{builder.__qualname__}"


def check_policy(cfg, specs, tariff):
    """Build the policy once with the run's context, so its options (a checkpoint, a forecast)
    fail before anything is written; experts cache what they build, so this costs nothing later."""
    make_policy(cfg.policy, PolicyContext(specs=specs, dates=cfg.dates, seed=cfg.seed, tariff=tariff,
                                          network=cfg.network, options=dict(cfg.policy_options)))


def run(cfg, grid_builder=None):
    """Run the co-simulation described by ``cfg``; return (run_dir, summary dict).

    Everything is validated before the run folder is created.  ``grid_builder(world, cfg, net,
    specs)`` may replace our grid simulator: it starts its grid and returns a GridWiring, e.g.
    mosaik's own pandapower adapter (scenarios/ieee33_mosaik_pandapower.py).  A run that stops
    early (an error, Ctrl-C, a simulator process that died) keeps its rows and writes
    summary.json with ``"incomplete": true``, then raises (RunIncomplete if mosaik itself only
    logged the failure).
    """
    from simulators.recorder.report import plot_run, write_summary

    cfg, specs, net, tariff = prepare(cfg)
    check_policy(cfg, specs, tariff)
    builder = grid_builder or our_grid
    run_dir = run_dir_for(cfg)
    context = {"specs": [s.to_dict() for s in specs], "dates": cfg.dates, "seed": cfg.seed,
               "tariff": tariff.to_dict(), "network": cfg.network, "options": cfg.policy_options}
    (run_dir / "config.json").write_text(json.dumps({
        **to_dict(cfg), "grid_builder": builder_name(builder), "tariff_values": context["tariff"],
        "prosumer_specs": context["specs"]}, indent=1))
    t0 = wallclock.perf_counter()
    world = mosaik.World(sim_config(cfg.prosumer_start, cfg.verbose, prosumer_hosts(cfg)), time_resolution=1.0,
                         debug=False,
                         skip_greetings=not cfg.verbose, configure_logging=cfg.verbose)
    try:
        _build(world, cfg, specs, net, context, run_dir, builder)
        t_setup = wallclock.perf_counter() - t0
        with _interrupt_between_callbacks(world.loop):
            world.run(until=cfg.steps * STEP_S, print_progress=cfg.progress)
        _check_complete(run_dir, cfg.steps)
    except BaseException as exc:
        _stop(world)
        if (run_dir / "feeder.csv").exists():
            write_summary(run_dir, {"incomplete": True})
        exc.add_note(f"run folder: {run_dir}")
        raise
    t_run = wallclock.perf_counter() - t0 - t_setup
    summary = write_summary(run_dir, {"incomplete": False, "wall_setup_s": t_setup, "wall_run_s": t_run})
    if cfg.plots:
        plot_run(run_dir)
    return run_dir, summary


class RunIncomplete(RuntimeError):
    """mosaik ended the run early without raising (it logs a simulator process's failure)."""


def _check_complete(run_dir, steps):
    with open(run_dir / "feeder.csv") as fh:
        recorded = sum(1 for _ in fh) - 1
    if recorded != steps:
        raise RunIncomplete(f"the run stopped after {recorded} of {steps} steps: a simulator failed "
                            "(run with --verbose to see mosaik's log)")


def _raise_interrupt():
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_between_callbacks(loop):
    """Ctrl-C raises KeyboardInterrupt from a loop callback of its own, not at whatever bytecode the
    main thread is running: Python's default handler can fire inside asyncio's own bookkeeping (a
    task half-built by asyncio.gather, neither scheduled nor registered), leaving a task that no
    clean-up can find and that asyncio reports as "destroyed but pending" at exit.  Only in the main
    thread and only while nobody else handles SIGINT."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    loop.add_signal_handler(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        if not loop.is_closed():  # closing the loop removes its handlers and restores the default
            loop.remove_signal_handler(signal.SIGINT)


def _stop(world):
    """Cancel the simulator tasks an exception or Ctrl-C left pending, then shut mosaik down,
    so asyncio has no destroyed pending tasks to complain about."""
    # the cancelled scheduler leaves coroutines it created but never awaited; they are harmless
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    loop = world.loop
    for _ in range(100):  # a cancelled task may leave tasks of its own behind: repeat until none
        pending = [] if loop.is_closed() else [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.wait(pending, timeout=10))
    try:
        world.shutdown()
    except Exception:  # a simulator process that already died cannot be stopped cleanly
        pass


def _build(world, cfg, specs, net, context, run_dir, grid_builder):
    n = len(specs)
    profiles = world.start("Profiles", step_size=STEP_S, device_modules=added_device_modules())
    profile_ents = profiles.ProsumerProfile.create(
        n, specs=context["specs"], dates=cfg.dates, seed=cfg.seed)

    prosumers, prosumer_tables = _start_prosumers(world, cfg, context)

    market_sim = world.start("Market", step_size=STEP_S, mechanism=cfg.market, tariff=context["tariff"],
                             on_invalid=cfg.on_invalid)
    market = market_sim.Market.create(1)[0]
    participants = market_sim.Participant.create(n)

    wiring = grid_builder(world, cfg, net, specs)
    buses = wiring.buses

    buy0, sell0 = Tariff.from_dict(context["tariff"]).at(0)
    feedback = {"price_buy[EUR/kWh]": buy0, "price_sell[EUR/kWh]": sell0,  # before any clearing: the tariffs
                "tariff_buy[EUR/kWh]": buy0, "tariff_sell[EUR/kWh]": sell0}
    for spec, prof, pros, part in zip(specs, profile_ents, prosumers, participants):
        world.connect(prof, pros, *(a.name for a in PROFILE.outputs))  # the profiles and their forecast
        world.connect(pros, part, "bid_E[kWh]", "bid_price[EUR/kWh]")
        world.connect(pros, buses[spec.bus], *wiring.prosumer_attrs)
        # feedback of step t reaches the prosumer at step t+1 (no same-step loop)
        world.connect(buses[spec.bus], pros, (wiring.vm_attr, "Vm[pu]"), time_shifted=True,
                      initial_data={wiring.vm_attr: 1.0})
        world.connect(part, pros, *feedback, time_shifted=True, initial_data=feedback)

    recorder_sim = world.start("Recorder", step_size=STEP_S)
    tabled = wiring.bus_table is not None
    layout = {
        "prosumer": {e.full_id: s.name for e, s in zip(prosumers, specs)},
        "participant": {e.full_id: s.name for e, s in zip(participants, specs)},
        "prosumer_bus": {s.name: s.bus for s in specs},
        "bus": {} if tabled else {e.full_id: b for b, e in buses.items()},
        "buses": [int(b) for b in wiring.record_buses] if tabled else [],
        "market": market.full_id,
        "feeder": [e.full_id for e, _ in wiring.feeder],
    }
    start = dt.datetime.fromisoformat(cfg.dates[0]).isoformat()
    recorder = recorder_sim.Recorder.create(1, run_dir=str(run_dir), layout=layout, start=start)[0]
    # one table per simulator instead of one value per entity and attribute (see the module doc)
    for table in prosumer_tables:
        world.connect(table, recorder, "prosumers")
    world.connect(market, recorder, *MARKET_OUTPUTS, "participants")
    for e, attrs in wiring.feeder:
        world.connect(e, recorder, *attrs)
    if tabled:
        world.connect(wiring.bus_table, recorder, "buses")
        return
    bus_attrs = [(wiring.vm_attr, "Vm[pu]")] + ([(wiring.bus_p_attr, "P_bus[MW]")] if wiring.bus_p_attr else [])
    for e in buses.values():
        world.connect(e, recorder, *bus_attrs)


def _start_prosumers(world, cfg, context):
    """Start the prosumer simulators (see prosumer_blocks); return (Prosumer entities in spec
    order, one Prosumers table entity per simulator)."""
    args = dict(step_size=STEP_S, policy=cfg.policy, context=context, start_step=0,
                device_modules=added_device_modules(), on_invalid=cfg.on_invalid)
    names = [f"Prosumer{k}" for k in range(len(prosumer_hosts(cfg)))]
    prosumers, tables = [], []
    for k, block in enumerate(prosumer_blocks(cfg, len(context["specs"]))):
        sim = world.start(names[k] if names else "Prosumer", **args)
        prosumers += sim.Prosumer.create(len(block), agent_ids=block)
        tables.append(sim.Prosumers.create(1)[0])
    return prosumers, tables


def our_grid(world, cfg, net, specs):
    """The default grid: simulators/grid/sim.py with the configured model; Bus entities where
    prosumers connect, every bus's voltage to the recorder as one table."""
    prosumer_buses = sorted({s.bus for s in specs})
    grid_sim = world.start("Grid", step_size=STEP_S, network=cfg.network, model=cfg.grid_model,
                           prosumer_buses=prosumer_buses, on_invalid=cfg.on_invalid, dates=cfg.dates)
    grid = grid_sim.Grid.create(1)[0]
    bus_list = grid_sim.Bus.create(len(prosumer_buses), bus=prosumer_buses)
    return GridWiring(buses=dict(zip(prosumer_buses, bus_list)), feeder=[(grid, GRID_OUTPUTS)], bus_table=grid,
                      record_buses=[int(b) for b in net.bus.index])
