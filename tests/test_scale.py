"""Scale: any SimBench grid by its code, a slice of the MV/LV grid end to end, prosumer simulators
split over worker processes (cmd) and over simulators already running elsewhere (connect)."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_env import _env_run

from agents.env import EnvConfig, P2PEnv
from scenarios import make_specs
from scenarios.cli import main_for
from simulators.cosim import run
from simulators.grid.models import make_grid
from simulators.grid.networks import check_network, feeder_groups, make_network, nominal_load_kw
from simulators.prosumer.generate import choose_buses
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.prosumer.spec import load_specs
from simulators.scenario import MVLV_RURAL, PRESETS, ScenarioConfig, prepare, validate
from simulators.validation import ConfigError

TABLES = ("prosumers", "market", "grid", "feeder")
LV_CODE = "simbench:1-LV-semiurb4--0-sw"
"""a SimBench grid that is in no registry: 44 buses, 41 loads on 39 buses"""


def _cfg(tmp_path, **kw):
    return ScenarioConfig(**{"results_dir": str(tmp_path), "progress": False, "plots": False, **kw})


def test_unregistered_simbench_code_end_to_end(tmp_path, capsys):
    run_dir, summary = main_for(ScenarioConfig(scenario="my_lv"), [
        "--network", LV_CODE, "--specs", "generate", "--grouping", "grouped", "--results-dir", str(tmp_path),
        "--run-name", "lv", "--no-progress", "--no-plots"])
    pros = pd.read_csv(run_dir / "prosumers.csv")
    assert pros["prosumer"].nunique() == 39 and len(pros) == 96 * 39
    assert len(pd.read_csv(run_dir / "grid.csv")) == 96 * 44
    assert summary["nonconverged_steps"] == 0 and summary["p2p_volume_kwh"] > 0
    out = tmp_path / "specs.json"
    make_specs.main(["--network", LV_CODE, "--seed", "3", "--out", str(out)])
    assert [s.bus for s in load_specs(out)] == sorted(nominal_load_kw(make_network(LV_CODE)))


def test_network_names_and_aliases():
    assert check_network("simbench:1-LV-rural3--0-sw") and check_network("simbench_lv_rural3")
    alias, code = make_network("simbench_lv_rural3"), make_network("simbench:1-LV-rural3--0-sw")
    assert alias.bus.equals(code.bus) and alias is not code
    with pytest.raises(ConfigError, match=r"network: 'simbench:1-LV-rural9--0-sw' is not a SimBench code.*"
                                          r"simbench:1-LV-rural1--0-sw"):
        check_network("simbench:1-LV-rural9--0-sw")
    with pytest.raises(ConfigError, match=r"network: 'feeder9'.*simbench:<code>"):
        make_network("feeder9")


def test_seeded_choice_of_load_buses():
    loads = {b: float(b) for b in range(10, 60)}
    chosen = choose_buses(loads, 7, seed=3)
    assert len(chosen) == 7 and list(chosen) == sorted(chosen) and all(chosen[b] == b for b in chosen)
    assert chosen == choose_buses(loads, 7, seed=3) and chosen != choose_buses(loads, 7, seed=4)
    assert choose_buses(loads, 0, seed=3) == loads
    with pytest.raises(ConfigError, match=r"n_prosumers: 51 outside the allowed range \[0, 50\]"):
        choose_buses(loads, 51, seed=0)


@pytest.mark.parametrize("changes, message", [
    ({"n_prosumers": 5}, "n_prosumers: 5 draws load buses for generated specs"),
    ({"prosumer_workers": 2}, "prosumer_workers: 2 splits grouped prosumers"),
    ({"grouping": "grouped", "prosumer_workers": 40}, r"prosumer_workers: 40 outside the allowed range \[1, 32\]"),
    ({"prosumer_start": "connect"}, "prosumer_hosts: '' must list"),
    ({"grouping": "grouped", "prosumer_start": "connect", "prosumer_hosts": "localhost"}, "not HOST:PORT"),
    ({"grouping": "grouped", "prosumer_workers": 2, "prosumer_start": "connect", "prosumer_hosts": "a:1"},
     "1 addresses for 2 prosumer simulators"),
])
def test_bad_scale_options_fail_before_run(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        run(_cfg(tmp_path, **changes))
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def mvlv_slice(tmp_path_factory):
    """50 prosumers drawn on SimBench's rural MV/LV grid (5479 buses): the large scenarios' preset."""
    cfg = PRESETS["simbench_mvlv_1000"]
    tmp = tmp_path_factory.mktemp("mvlv")
    return run(_cfg(tmp, **{**cfg.__dict__, "results_dir": str(tmp), "n_prosumers": 50, "progress": False,
                            "plots": False}))


def test_mvlv_slice_end_to_end(mvlv_slice):
    run_dir, summary = mvlv_slice
    pros = pd.read_csv(run_dir / "prosumers.csv")
    grid = pd.read_csv(run_dir / "grid.csv")
    market = pd.read_csv(run_dir / "market.csv")
    assert pros["prosumer"].nunique() == 50 and len(pros) == 96 * 50
    assert len(grid) == 96 * 5479 and grid["vm_pu"].notna().all()
    assert summary["nonconverged_steps"] == 0 and not summary["incomplete"]
    per_step = pros.groupby("step")[["p2p_buy_kwh", "p2p_sell_kwh"]].sum()
    np.testing.assert_allclose(per_step["p2p_buy_kwh"].values, market["traded_kwh"].values, atol=1e-6)
    np.testing.assert_allclose(per_step["p2p_sell_kwh"].values, market["traded_kwh"].values, atol=1e-6)
    # the prosumers sit on many different LV feeders of the grid
    _, specs, net, _ = prepare(PRESETS["simbench_mvlv_1000"].__class__(
        **{**PRESETS["simbench_mvlv_1000"].__dict__, "n_prosumers": 50}))
    assert len(set(feeder_groups(net, [s.bus for s in specs]))) > 20
    assert sorted(s.bus for s in specs) == sorted(pros.drop_duplicates("prosumer")["bus"])


def test_mvlv_slice_environment_reproduces_the_cosimulation(mvlv_slice, tmp_path):
    """With 5000+ load buses left to the grid, its own loads and PV follow their profiles in both."""
    run_dir, _ = mvlv_slice
    env = P2PEnv(EnvConfig(network=MVLV_RURAL, specs="generate", n_prosumers=50))
    assert env.background.active
    policy = make_policy("rule", PolicyContext(env.specs, tariff=env.tariff))
    assert _env_run(env, policy, validate(PRESETS["simbench_mvlv_1000"]).start_date, tmp_path / "env") == 96
    for table in TABLES:
        a = pd.read_csv(run_dir / f"{table}.csv").drop(columns=["time"])
        b = pd.read_csv(tmp_path / "env" / f"{table}.csv").drop(columns=["time"])
        # 9 significant digits in the files: one ulp apart (kW -> MW -> kW) can flip the last one
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-8, atol=1e-9)
    feeder = pd.read_csv(run_dir / "feeder.csv")
    assert feeder["p_slack_mw"].std() > 1.0  # the background's PV and loads move through the day


def test_mvlv_grid_runs_lightsim2grid_and_matches_pandapower():
    net = make_network(MVLV_RURAL)
    buses = sorted(nominal_load_kw(net))[::10]
    ac, ref = make_grid("ac", net, buses), make_grid("ac_runpp", net, buses)
    assert ac.backend == "lightsim2grid"  # open ring switches of the MV cables handled as pandapower does
    rng = np.random.default_rng(0)
    p = np.zeros(ac.n_bus)
    p[np.isin(ac.bus_ids, buses)] = rng.uniform(-0.01, 0.01, len(buses))
    a, r = ac.solve(p, 0.3 * p), ref.solve(p, 0.3 * p)
    np.testing.assert_allclose(a.vm_pu, r.vm_pu, atol=1e-6, rtol=0)
    assert a.p_slack_mw == pytest.approx(r.p_slack_mw, abs=1e-6)


# ---- worker processes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grouped")
    return run(_cfg(tmp, grouping="grouped", run_name="one"))[0]


def _same_tables(a, b):
    for table in TABLES:
        assert (a / f"{table}.csv").read_bytes() == (b / f"{table}.csv").read_bytes(), table


def test_workers_started_by_mosaik_give_identical_results(grouped_run, tmp_path):
    out, _ = run(_cfg(tmp_path, grouping="grouped", prosumer_workers=3, prosumer_start="cmd", run_name="three"))
    _same_tables(grouped_run, out)
    inprocess, _ = run(_cfg(tmp_path, grouping="grouped", prosumer_workers=2, run_name="two"))
    _same_tables(grouped_run, inprocess)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port, deadline):
    """True once a process listens on ``port``, read from Linux's socket table: a test connection
    would be taken for mosaik's (a remote simulator accepts exactly one)."""
    while time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's socket table to see the workers listen")
def test_workers_on_other_hosts_by_connect(grouped_run, tmp_path):
    """Two simulator processes started by hand stand in for two hosts (the README's recipe)."""
    ports = [_free_port(), _free_port()]
    hosts = [subprocess.Popen([sys.executable, "-m", "simulators.prosumer.sim", f"127.0.0.1:{p}", "--remote"])
             for p in ports]
    try:
        assert all(_listening(p, time.monotonic() + 60) for p in ports), "worker processes did not listen"
        out, _ = run(_cfg(tmp_path, grouping="grouped", prosumer_workers=2, prosumer_start="connect",
                          prosumer_hosts=",".join(f"127.0.0.1:{p}" for p in ports), run_name="hosts"))
        _same_tables(grouped_run, out)
    finally:
        for proc in hosts:
            try:
                proc.wait(timeout=30)  # mosaik tells them to stop at the end of the run
            except subprocess.TimeoutExpired:
                proc.kill()
