"""An outside mosaik user's scenario, written from scratch with the public simulator API only: our
profiles, prosumer and market simulators as separate processes (``python -m simulators.<x>.sim``),
mosaik-pandapower-2 as the grid.  The same world in process gives identical numbers."""

import json
from pathlib import Path

import mosaik
import numpy as np
import pytest
from mosaik.starters import PythonStarter
from mosaik_probe import Collector

from simulators.market.tariffs import make_tariff

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8
SPECS = json.loads((ROOT / "scenarios/data/ieee33_prosumers.json").read_text())["prosumers"][4:8]
TARIFF = make_tariff("tou")


def _sim_config(out_of_process):
    def start(module, cls):
        if out_of_process:
            return {"cmd": f"%(python)s -m {module} %(addr)s", "cwd": str(ROOT)}
        return {"python": f"{module}:{cls}"}

    return {"Profiles": start("simulators.profiles.sim", "ProfileSim"),
            "Prosumer": start("simulators.prosumer.sim", "ProsumerSim"),
            "Market": start("simulators.market.sim", "MarketSim"),
            "Grid": {"python": "mosaik_components.pandapower:Simulator"},
            "Collector": PythonStarter(Collector)}


def _scenario(out_of_process):
    world = mosaik.World(_sim_config(out_of_process), skip_greetings=True, configure_logging=False)
    profiles = world.start("Profiles", step_size=900).ProsumerProfile.create(
        len(SPECS), specs=SPECS, dates=["2016-06-08"], seed=0)
    prosumers = world.start("Prosumer", step_size=900, policy="rule",
                            context={"specs": SPECS, "tariff": TARIFF.to_dict()}).Prosumer.create(len(SPECS))
    market_sim = world.start("Market", step_size=900, mechanism="sdr", tariff=TARIFF.to_dict())
    market = market_sim.Market.create(1)[0]
    participants = market_sim.Participant.create(len(SPECS))
    grid = world.start("Grid", step_size=900).Grid.create(1, network_function="case33bw")[0]
    buses = {e.extra_info["index"]: e for e in grid.children if e.type == "Bus"}
    col = world.start("Collector").Collector.create(1)[0]

    buy0, sell0 = TARIFF.at(0)
    for spec, prof, pros, part in zip(SPECS, profiles, prosumers, participants):
        world.connect(prof, pros, "P_load[MW]", "Q_load[MVar]", "P_pv_avail[MW]")
        world.connect(pros, part, "bid_E[kWh]", "bid_price[EUR/kWh]")
        world.connect(pros, buses[spec["bus"]], ("P[MW]", "P_load[MW]"), ("Q[MVar]", "Q_load[MVar]"))
        world.connect(buses[spec["bus"]], pros, "Vm[pu]", time_shifted=True, initial_data={"Vm[pu]": 1.0})
        feedback = {"price_buy[EUR/kWh]": buy0, "price_sell[EUR/kWh]": sell0,
                    "tariff_buy[EUR/kWh]": buy0, "tariff_sell[EUR/kWh]": sell0}
        world.connect(part, pros, *feedback, time_shifted=True, initial_data=feedback)
        world.connect(pros, col, "P[MW]", "bid_E[kWh]")
        world.connect(part, col, "E_p2p_buy[kWh]", "E_p2p_sell[kWh]", "cost[EUR]")
        world.connect(buses[spec["bus"]], col, ("Vm[pu]", "Vm_bus[pu]"))
    world.connect(market, col, "price_buy[EUR/kWh]", "price_sell[EUR/kWh]", "price_p2p[EUR/kWh]", "traded[kWh]")
    Collector.seen = {}
    world.run(until=STEPS * 900, print_progress=False)
    return {t: {a: dict(sorted(v.items())) for a, v in seen.items()} for t, seen in Collector.seen.items()}


@pytest.fixture(scope="module")
def runs():
    return _scenario(out_of_process=True), _scenario(out_of_process=False)


def test_out_of_process_equals_in_process(runs):
    out, inside = runs
    assert sorted(out) == [900 * k for k in range(STEPS)]

    def strip(run):  # entity ids differ only in their simulator ids, which are the same here
        return {t: {a: list(v.values()) for a, v in seen.items()} for t, seen in run.items()}

    np.testing.assert_equal(strip(out), strip(inside))


def test_books_balance_and_prices_stay_within_the_tariff(runs):
    out, _ = runs
    for t, seen in out.items():
        buy, sell = TARIFF.at(t // 900)
        bought, sold = sum(seen["E_p2p_buy[kWh]"].values()), sum(seen["E_p2p_sell[kWh]"].values())
        assert bought == pytest.approx(sold, abs=1e-12)
        assert bought == pytest.approx(next(iter(seen["traded[kWh]"].values())), abs=1e-12)
        for attr in ("price_buy[EUR/kWh]", "price_sell[EUR/kWh]"):
            assert sell - 1e-12 <= next(iter(seen[attr].values())) <= buy + 1e-12
        np.testing.assert_allclose(sorted(seen["bid_E[kWh]"].values()),
                                   sorted(0.25 * 1000 * p for p in seen["P[MW]"].values()), rtol=1e-12)
    vm = [v for seen in out.values() for v in seen["Vm_bus[pu]"].values()]
    assert all(0.9 < v < 1.1 for v in vm) and np.std(vm) > 1e-4
