"""Grid models: AC fast path equals pandapower, LinDistFlow within its stated tolerance, physics
invariants, failure handling, bad input, and the mosaik adapter in a tiny world."""

import copy

import mosaik
import mosaik_api_v3
import numpy as np
import pandapower as pp
import pytest
from grid_helpers import random_demand
from mosaik.starters import PythonStarter
from mosaik_probe import Collector

from simulators.grid.lindistflow import VM_TOLERANCE_PU
from simulators.grid.models import GRIDS, make_grid
from simulators.grid.networks import load_buses, make_network, nominal_load_kw
from simulators.validation import ConfigError

FEEDERS = ("ieee33", "simbench_lv_rural3")


@pytest.fixture(scope="module")
def nets():
    return {name: make_network(name) for name in FEEDERS}


@pytest.mark.parametrize("feeder", FEEDERS)
def test_ac_fast_path_equals_pandapower(nets, feeder):
    net = nets[feeder]
    ac, ref = make_grid("ac", net, load_buses(net)), make_grid("ac_runpp", net, load_buses(net))
    assert ac.backend == "lightsim2grid"
    rng = np.random.default_rng(3)
    # mixed demand, heavy PV (reverse flow through the feeder head), heavy load
    for lo, hi in ((-1.0, 1.5), (-3.0, -2.0), (1.5, 2.0)):
        p, q = random_demand(ac, net, rng, lo, hi)
        a, r = ac.solve(p, q), ref.solve(p, q)
        assert a.converged and r.converged
        np.testing.assert_allclose(a.vm_pu, r.vm_pu, atol=1e-6, rtol=0)
        np.testing.assert_allclose(a.va_deg, r.va_deg, atol=1e-4, rtol=0)
        np.testing.assert_allclose([a.losses_mw, a.p_slack_mw], [r.losses_mw, r.p_slack_mw], atol=1e-6, rtol=0)
        np.testing.assert_allclose(a.line_loading_percent, r.line_loading_percent, atol=1e-3, rtol=0)
        np.testing.assert_allclose(a.trafo_loading_percent, r.trafo_loading_percent, atol=1e-3, rtol=0)
        if lo < -1.5:
            assert a.p_slack_mw < 0 and a.vm_pu.max() > 1.05  # PV pushes power upstream and voltage up


def test_lindistflow_within_stated_tolerance(nets):
    net = nets["ieee33"]
    buses = load_buses(net)
    ac, lin = make_grid("ac", net, buses), make_grid("lindistflow", net, buses)
    assert lin.tolerance_pu == VM_TOLERANCE_PU
    rng = np.random.default_rng(11)
    zero = np.zeros(ac.n_bus)
    base_net = make_grid("lindistflow", net, []).solve(zero, zero)
    base_ac = make_grid("ac", net, []).solve(zero, zero)
    errors = [np.max(np.abs(base_net.vm_pu - base_ac.vm_pu))]
    for _ in range(30):
        p, q = random_demand(ac, net, rng, -3.0, 2.0)
        errors.append(np.max(np.abs(lin.solve(p, q).vm_pu - ac.solve(p, q).vm_pu)))
    assert max(errors) <= VM_TOLERANCE_PU
    assert max(errors) > 1e-4  # the comparison is not vacuous: it is an approximation


def test_lindistflow_linear_coefficients_are_the_first_order_model(nets):
    net = nets["simbench_lv_rural3"]
    lin = make_grid("lindistflow", net, load_buses(net)[:60])
    vm_const, dv_dp, dv_dq = lin.linear_vm_coefficients()
    zero = np.zeros(lin.n_bus)
    np.testing.assert_allclose(vm_const, lin.solve(zero, zero).vm_pu, atol=1e-12)
    p, q = zero.copy(), zero.copy()
    p[40], q[40] = -1e-4, 2e-5  # a small injection at a leaf-side bus
    step = lin.solve(p, q).vm_pu - vm_const
    np.testing.assert_allclose(dv_dp @ p + dv_dq @ q, step, rtol=1e-3, atol=1e-12)
    assert (dv_dp <= 0).all() and dv_dp[40, 40] < 0  # more demand never raises a voltage
    assert lin.r_pu.shape == lin.x_pu.shape == (129, 129) and lin.vm0_pu[lin.bus_ids == 384] == 1.025


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_case33bw_golden_base_case(nets, kind):
    grid = make_grid(kind, nets["ieee33"], [])
    zero = np.zeros(grid.n_bus)
    r = grid.solve(zero, zero)
    if kind == "lindistflow":
        assert abs(r.vm_pu.min() - 0.913) <= VM_TOLERANCE_PU and int(np.argmin(r.vm_pu)) == 17
        return
    assert int(np.argmin(r.vm_pu)) == 17 and grid.bus_ids[17] == 17
    assert r.vm_pu.min() == pytest.approx(0.913, abs=5e-4)
    assert r.losses_mw == pytest.approx(0.203, rel=1e-2)


@pytest.mark.parametrize("kind", sorted(GRIDS))
@pytest.mark.parametrize("feeder", FEEDERS)
def test_power_balance(nets, kind, feeder):
    net = nets[feeder]
    grid = make_grid(kind, net, load_buses(net)[::2])  # half the buses keep their native load
    p, q = random_demand(grid, net, np.random.default_rng(5), -2.0, 1.5)
    r = grid.solve(p, q)
    demand = np.sum(p + grid.p_background_mw)
    assert r.p_slack_mw == pytest.approx(demand + r.losses_mw, abs=1e-7)
    assert r.losses_mw > 0


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_nonconvergence_is_recorded_not_raised(nets, kind):
    net = nets["ieee33"]
    grid = make_grid(kind, net, load_buses(net))
    p, q = random_demand(grid, net, np.random.default_rng(2), 0.5, 1.0)
    good = grid.solve(p, q)
    absurd = p.copy()
    absurd[17] = 1000.0
    bad = grid.solve(absurd, q)
    assert not bad.converged and np.isnan(bad.vm_pu).all() and np.isnan(bad.losses_mw)
    assert np.isnan(bad.p_slack_mw) and grid.n_nonconverged == 1
    again = grid.solve(p, q)
    assert again.converged and grid.n_nonconverged == 1
    np.testing.assert_allclose(again.vm_pu, good.vm_pu, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_reset_makes_a_time_series_repeat(nets, kind):
    """Warm starts depend on the last solve; reset() returns to a fresh model's start
    (lightsim2grid's factorization state still moves round-off: 1e-12 p.u. allowed)."""
    net = nets["ieee33"]
    grid = make_grid(kind, net, load_buses(net))
    rng = np.random.default_rng(4)
    series = [random_demand(grid, net, rng, -1.0, 1.5) for _ in range(4)]
    first = [grid.solve(p, q).vm_pu for p, q in series]
    grid.reset()
    again = [grid.solve(p, q).vm_pu for p, q in series]
    fresh = make_grid(kind, net, load_buses(net))
    np.testing.assert_allclose(fresh.solve(*series[0]).vm_pu, first[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(again), np.array(first), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_solve_aside_leaves_the_next_solve_as_it_would_be(nets, kind):
    """Counterfactual flows (agents/env.py's difference credit) neither move the warm start nor the counters:
    a series with asides in between gives the very numbers of the series without them."""
    net = nets["ieee33"]
    rng = np.random.default_rng(6)
    plain, busy = make_grid(kind, net, load_buses(net)), make_grid(kind, net, load_buses(net))
    series = [random_demand(plain, net, rng, -1.0, 1.5) for _ in range(3)]
    absurd = series[0][0].copy()
    absurd[17] = 1000.0
    for p, q in series:
        want = plain.solve(p, q)
        aside = busy.solve_aside(p * 0.3, -q)
        assert aside.converged and np.abs(aside.vm_pu - want.vm_pu).max() > 1e-4  # a different flow indeed
        assert not busy.solve_aside(absurd, q).converged  # a failed one does not reset the start either
        got = busy.solve(p, q)
        np.testing.assert_allclose(got.vm_pu, want.vm_pu, rtol=0, atol=1e-12)
    assert busy.n_solves == 3 and busy.n_nonconverged == 0
    with pytest.raises(ConfigError, match=r"p_mw: expected shape"):
        busy.solve_aside(np.zeros(2), np.zeros(2))


def test_switches_and_meshes(nets):
    """Open line switches, closed bus-bus switches and meshes: AC still equals pandapower."""
    net = copy.deepcopy(nets["ieee33"])
    net.line.loc[32, "in_service"] = True  # a tie line, kept open by its switch
    pp.create_switch(net, bus=int(net.line.at[32, "from_bus"]), element=32, et="l", closed=False)
    extra = pp.create_bus(net, vn_kv=12.66, min_vm_pu=0.95, max_vm_pu=1.05)
    pp.create_switch(net, bus=17, element=extra, et="b", closed=True)
    pp.create_load(net, extra, p_mw=0.05)
    buses = load_buses(net)
    assert extra in buses
    ac, ref, lin = (make_grid(k, net, buses) for k in ("ac", "ac_runpp", "lindistflow"))
    assert ac.backend == "lightsim2grid"
    p, q = random_demand(ac, net, np.random.default_rng(8), -1.0, 1.0)
    a, r, li = ac.solve(p, q), ref.solve(p, q), lin.solve(p, q)
    np.testing.assert_allclose(a.vm_pu, r.vm_pu, atol=1e-6)
    assert a.vm_pu[ac.bus_ids == extra] == pytest.approx(a.vm_pu[17], abs=1e-12)
    assert np.max(np.abs(li.vm_pu - a.vm_pu)) <= VM_TOLERANCE_PU
    net.switch.loc[0, "closed"] = True  # now the tie closes a loop
    with pytest.raises(ConfigError, match="not radial"):
        make_grid("lindistflow", net, buses)
    meshed, meshed_ref = make_grid("ac", net, buses), make_grid("ac_runpp", net, buses)
    assert meshed.backend == "lightsim2grid"
    np.testing.assert_allclose(meshed.solve(p, q).vm_pu, meshed_ref.solve(p, q).vm_pu, atol=1e-6)


def test_bad_input_names_the_field(nets):
    net = nets["ieee33"]
    with pytest.raises(ConfigError, match="network"):
        make_network("ieee34")
    with pytest.raises(ConfigError, match="grid_model"):
        make_grid("dc", net, [])
    with pytest.raises(ConfigError, match=r"bus 999 .*33 bus indices"):
        make_grid("ac", net, [5, 999])
    grid = make_grid("lindistflow", net, [5])
    with pytest.raises(ConfigError, match=r"p_mw: expected shape \(33,\)"):
        grid.solve(np.zeros(32), np.zeros(33))
    with pytest.raises(ConfigError, match="q_mvar"):
        grid.solve(np.zeros(33), np.full(33, np.nan))


def test_networks_registry(nets):
    net = nets["ieee33"]
    assert (net.bus["min_vm_pu"] == 0.95).all() and (net.bus["max_vm_pu"] == 1.05).all()
    assert load_buses(net) == list(range(1, 33))
    assert sum(nominal_load_kw(net).values()) == pytest.approx(3715.0)
    sb = nets["simbench_lv_rural3"]
    assert len(sb.bus) == 129 and len(load_buses(sb)) == 118
    again = make_network("simbench_lv_rural3")
    again.load["p_mw"] = 0.0  # a copy: the cached source stays untouched
    assert make_network("simbench_lv_rural3").load["p_mw"].sum() > 0


class Source(mosaik_api_v3.Simulator):
    """Feeds a fixed P[MW] schedule (one value per step) into the grid."""

    schedule = (0.0, -3.0)

    def __init__(self):
        super().__init__({"api_version": "3.0", "type": "time-based",
                          "models": {"Src": {"public": True, "params": [], "attrs": ["P[MW]"]}}})

    def init(self, sid, time_resolution=1.0):
        return self.meta

    def create(self, num, model):
        return [{"eid": "src", "type": model}]

    def step(self, time, inputs, max_advance):
        self.time = time
        return time + 900

    def get_data(self, outputs):
        return {"src": {"P[MW]": self.schedule[self.time // 900]}}


def test_mosaik_world_voltage_follows_injection():
    world = mosaik.World({"Grid": {"python": "simulators.grid.sim:GridSim"}, "Src": PythonStarter(Source),
                          "Col": PythonStarter(Collector)}, debug=False)
    grid_sim = world.start("Grid", step_size=900, network="ieee33", model="ac", prosumer_buses=[17])
    grid = grid_sim.Grid.create(1)[0]
    bus17, bus5 = grid_sim.Bus.create(2, bus=[17, 5])
    src = world.start("Src").Src.create(1)[0]
    col = world.start("Col").Collector.create(1)[0]
    world.connect(src, bus17, "P[MW]")
    world.connect(bus17, col, "Vm[pu]")
    world.connect(grid, col, "converged", "P_slack[MW]", "n_violations")
    Collector.seen = {}
    world.run(until=2 * 900, print_progress=False)
    first, second = ({attr: next(iter(v.values())) for attr, v in Collector.seen[t].items()} for t in (0, 900))
    assert first["converged"] and second["converged"]
    assert second["Vm[pu]"] > first["Vm[pu]"] + 0.05  # 3 MW injected at the feeder end
    assert second["P_slack[MW]"] == pytest.approx(first["P_slack[MW]"] - 3.0, abs=0.3)
    assert first["n_violations"] > 0  # the base case already violates (min 0.913 p.u.)
