"""The adapters as mosaik citizens: checked inputs through real worlds, identities, init errors,
the bus's reactive power against pandapower, and the README's reference table against META."""

import math
import re
from pathlib import Path

import mosaik
import pandapower as pp
import pytest
from mosaik.starters import PythonStarter
from mosaik_probe import Collector, Feed

from simulators.attrs import InputError, render_reference
from simulators.grid.networks import make_network
from simulators.market.tariffs import make_tariff
from simulators.prosumer.sim import ProsumerSim
from simulators.recorder.sim import RecorderSim
from simulators.tables import simulators
from simulators.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PV_SPEC = {"name": "sunny", "bus": 17, "load_peak_kw": 5.0, "pv": [{"kwp": 4.0}]}
DARK_SPEC = {"name": "dark", "bus": 18, "load_peak_kw": 3.0}
TOU = make_tariff("tou")
GOOD = {"P_load[MW]": 0.002, "Q_load[MVar]": 0.0005, "P_pv_avail[MW]": 0.003, "Vm[pu]": 1.01,
        "price_buy[EUR/kWh]": 0.2, "price_sell[EUR/kWh]": 0.1}
SIMS = {"Prosumer": {"python": "simulators.prosumer.sim:ProsumerSim"}, "Grid": {"python": "simulators.grid.sim:GridSim"},
        "Feed": PythonStarter(Feed), "Collector": PythonStarter(Collector)}


def _prosumer_world(values, spec=PV_SPEC, skip=(), steps=1, **init):
    """One prosumer fed by a Feed with ``values`` (minus the attributes in ``skip``); returns the
    collector's records of its P[MW] and inputs_clipped."""
    Feed.attrs, Feed.values = tuple(values), values
    world = mosaik.World(SIMS, skip_greetings=True, configure_logging=False)
    try:
        pros = world.start("Prosumer", context={"specs": [spec], "tariff": TOU.to_dict()}, **init).Prosumer.create(1)[0]
        feed = world.start("Feed").Feed.create(1)[0]
        col = world.start("Collector").Collector.create(1)[0]
        world.connect(feed, pros, *(a for a in values if a not in skip))
        world.connect(pros, col, "P[MW]", "inputs_clipped")
        Collector.seen = {}
        world.run(until=steps * 900, print_progress=False)
    finally:
        if not world.loop.is_closed():
            world.shutdown()
    return {t: {a: next(iter(v.values())) for a, v in seen.items()} for t, seen in Collector.seen.items()}


@pytest.mark.parametrize("attr, value, spec, allowed", [
    ("P_load[MW]", 5.0, PV_SPEC, "[0, 0.01]"),          # 5 kW given as MW
    ("P_pv_avail[MW]", -0.001, PV_SPEC, "[0, 0.0044]"),  # negative PV
    ("P_pv_avail[MW]", 0.005, PV_SPEC, "[0, 0.0044]"),   # above the inverter rating (1.1 x 4 kWp)
    ("P_pv_avail[MW]", 0.001, DARK_SPEC, "[0, 0]"),      # PV on a prosumer without PV
    ("P_load[MW]", math.nan, PV_SPEC, "NaN"),
    ("Vm[pu]", None, PV_SPEC, "None"),
    ("Vm[pu]", 12.66, PV_SPEC, "[0.5, 1.5]"),           # kV given as p.u.
    ("price_buy[EUR/kWh]", 25.0, PV_SPEC, "[0.08, 0.36]"),  # ct/kWh given as EUR/kWh
    ("P_pv_fc4h[MW]", 3.0, PV_SPEC, "[0, 0.0044]"),      # a forecast in kW given as MW
    ("E_load_fc_day[MWh]", 40.0, PV_SPEC, "[0, 0.24]"),  # kWh given as MWh (24 h x 2 x 5 kW = 0.24 MWh)
    ("E_pv_fc_day[MWh]", -0.001, PV_SPEC, "[0, 0.1056]"),
])
def test_bad_input_names_entity_attribute_value_and_range(attr, value, spec, allowed):
    with pytest.raises(InputError) as err:
        _prosumer_world({**GOOD, attr: value}, spec=spec)
    text = str(err.value)
    assert repr(spec["name"]) in text and repr(attr) in text and repr(value) in text and "time 0" in text
    assert allowed in text


def test_unconnected_required_input_is_an_error_at_the_first_step():
    with pytest.raises(InputError, match=r"'sunny': input 'Vm\[pu\]' received nothing at time 0"):
        _prosumer_world(GOOD, skip=("Vm[pu]",))


def test_optional_inputs_and_clip_mode():
    """Q_load may be absent (from load_pf); in clip mode a bad value is clipped and counted."""
    ok = _prosumer_world(GOOD, skip=("Q_load[MVar]",))
    assert ok[0]["inputs_clipped"] == 0
    clipped = _prosumer_world({**GOOD, "P_load[MW]": [5.0, 0.002]}, steps=2, on_invalid="clip")
    assert clipped[0]["inputs_clipped"] == 1 and clipped[900]["inputs_clipped"] == 0
    # the load was clipped to 2 x load_peak_kw = 10 kW; PV 3 kW, idle devices at most 4 kW of battery etc.
    assert 0.002 < clipped[0]["P[MW]"] <= 0.010


def test_market_and_prosumer_tariffs_must_agree():
    flat = make_tariff("flat")  # 0.25 / 0.08 all day, the prosumer has the time-of-use tariff
    values = {**GOOD, "tariff_buy[EUR/kWh]": [0.17, flat.at(0)[0]], "tariff_sell[EUR/kWh]": 0.08}
    with pytest.raises(InputError, match=r"tariff_buy.*time 900.*same tariff"):
        _prosumer_world(values, steps=2)


def test_duplicate_entity_ids_are_refused():
    context = {"specs": [PV_SPEC, DARK_SPEC], "tariff": TOU.to_dict()}
    sim = ProsumerSim()
    sim.init("Prosumer-0", context=context)
    with pytest.raises(ConfigError, match="agent_ids: required"):
        sim.create(1, "Prosumer")  # two such instances would both become 'sunny'
    sim.create(1, "Prosumer", agent_ids=[0])
    with pytest.raises(ConfigError, match="already has an entity"):
        sim.create(1, "Prosumer", agent_ids=[0])
    world = mosaik.World(SIMS, skip_greetings=True, configure_logging=False)
    try:
        grid = world.start("Grid", network="ieee33")
        with pytest.raises(ConfigError, match="bus: 5 already has"):
            grid.Bus.create(2, bus=[5, 5])
    finally:
        world.shutdown()
    layout = {"prosumer": {"Prosumer-0.sunny": "sunny", "Prosumer-1.sunny": "sunny"}, "participant": {},
              "bus": {}, "market": "", "feeder": []}
    rec = RecorderSim()
    rec.init("Recorder-0")
    with pytest.raises(ConfigError, match="duplicate entity ids"):
        rec.create(1, "Recorder", run_dir="/nonexistent", layout=layout, start="2016-06-08")


@pytest.mark.parametrize("kwargs, match", [
    ({"context": {"specs": [PV_SPEC]}}, r"missing key\(s\) \['tariff'\]"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict(), "colour": 1}}, r"unknown key\(s\) \['colour'\]"),
    ({"context": {"specs": [{"name": "x", "bus": 1}], "tariff": TOU.to_dict()}}, "load_peak_kw: missing"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict()}, "polcy": "rule"}, r"unknown parameter\(s\) \['polcy'\]"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict()}, "policy": "oracle"}, "policy"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict()}, "on_invalid": "ignore"}, "on_invalid"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict(), "seed": -3}}, r"context\['seed'\]"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict()}, "policy": "expert"}, "at least one date"),
    ({"context": {"specs": [PV_SPEC], "tariff": TOU.to_dict()}, "start_step": 3.5}, "start_step"),
])
def test_prosumer_init_errors_name_the_parameter(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ProsumerSim().init("Prosumer-0", **kwargs)


def test_bus_reactive_power_equals_pandapower():
    """Bus P[MW] / Q[MVar] are the bus's total demand, as pandapower's res_bus (the old adapter answered Q with P)."""
    p17, q17 = 0.25, 0.12
    Feed.attrs, Feed.values = ("P[MW]", "Q[MVar]"), {"P[MW]": p17, "Q[MVar]": q17}
    world = mosaik.World(SIMS, skip_greetings=True, configure_logging=False)
    grid_sim = world.start("Grid", network="ieee33", model="ac_runpp", prosumer_buses=[17])
    bus17, bus5 = grid_sim.Bus.create(2, bus=[17, 5])
    feed = world.start("Feed").Feed.create(1)[0]
    col = world.start("Collector").Collector.create(1)[0]
    world.connect(feed, bus17, "P[MW]", "Q[MVar]")
    world.connect(bus17, col, "P[MW]", "Q[MVar]", "Vm[pu]")
    world.connect(bus5, col, ("P[MW]", "P5"), ("Q[MVar]", "Q5"))
    Collector.seen = {}
    world.run(until=900, print_progress=False)
    seen = {a: next(iter(v.values())) for a, v in Collector.seen[0].items()}

    net = make_network("ieee33")
    net.load.loc[net.load.bus == 17, "in_service"] = False  # the prosumer replaces the native load
    pp.create_load(net, 17, p_mw=p17, q_mvar=q17)
    pp.runpp(net)
    assert seen["Q[MVar]"] == pytest.approx(net.res_bus.q_mvar[17], abs=1e-9)
    assert seen["P[MW]"] == pytest.approx(net.res_bus.p_mw[17], abs=1e-9)
    assert seen["Q5"] == pytest.approx(net.res_bus.q_mvar[5], abs=1e-9) and seen["Q5"] != seen["P5"]
    assert seen["Vm[pu]"] == pytest.approx(net.res_bus.vm_pu[17], abs=1e-6)


def test_readme_simulator_reference_is_generated_from_the_tables():
    """The README's reference is render_reference(simulators()): edit the tables, then run
    ``python -m simulators.tables --readme`` to rewrite the README section."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- simulator reference: begin.*?-->\n(.*?)<!-- simulator reference: end -->", readme, re.S)
    assert found, "README lacks the generated simulator reference"
    assert found.group(1).strip() == render_reference(simulators()).strip()


def test_every_adapter_meta_comes_from_its_table():
    from simulators.grid.sim import GridSim
    from simulators.market.sim import MarketSim
    from simulators.profiles.sim import ProfileSim

    for sim, cls in zip(simulators(), (ProfileSim, ProsumerSim, MarketSim, GridSim, RecorderSim)):
        models = cls().meta["models"]
        assert set(models) == {m.name for m in sim.models}
        for m in sim.models:
            names = {a.name for a in m.inputs} | {a.name for a in m.outputs}
            assert set(models[m.name]["attrs"]) == names and models[m.name]["params"] == list(m.params)


def test_p2p_unit_price_is_its_own_attribute():
    from simulators.tables import MARKET, PARTICIPANT

    for table in (MARKET, PARTICIPANT):
        docs = {a.name: a.doc for a in table.outputs}
        assert "unit price of every P2P kWh" in docs["price_p2p[EUR/kWh]"]
        assert "grid remainder" in docs["price_buy[EUR/kWh]"] and "grid remainder" in docs["price_sell[EUR/kWh]"]


@pytest.mark.parametrize("target, values, says", [
    ("market", {"bid_E[kWh]": 1.0, "bid_price[EUR/kWh]": 25.0}, r"'bid_price\[EUR/kWh\]' = 25.0 .* \[0.08, 0.17\]"),
    ("market", {"bid_E[kWh]": None}, r"'bid_E\[kWh\]' .* = None .* it must be a number"),
    ("grid", {"P[MW]": 50.0, "Q[MVar]": 0.0}, r"'Bus_17': input 'P\[MW\]' = 50.0 .* \[-46.25, 46.25\] \(p_max_mw\)"),
    ("grid", {"P[MW]": 0.1, "Q[MVar]": math.nan}, r"'Q\[MVar\]' .* = nan .*\(NaN is not allowed\)"),
])
def test_market_and_grid_inputs_are_checked_in_a_world(target, values, says):
    """A bid price in ct/kWh, a bid of None, 50 MW at an IEEE 33-bus bus (3.7 MW feeder), NaN reactive power."""
    Feed.attrs, Feed.values = tuple(values), values
    sims = {**SIMS, "Market": {"python": "simulators.market.sim:MarketSim"}}
    world = mosaik.World(sims, skip_greetings=True, configure_logging=False)
    try:
        if target == "market":
            entity = world.start("Market", tariff=TOU.to_dict()).Participant.create(1)[0]
        else:
            entity = world.start("Grid", network="ieee33", prosumer_buses=[17]).Bus.create(1, bus=17)[0]
        world.connect(world.start("Feed").Feed.create(1)[0], entity, *values)
        with pytest.raises(InputError, match=says):
            world.run(until=900, print_progress=False)
    finally:
        if not world.loop.is_closed():
            world.shutdown()
