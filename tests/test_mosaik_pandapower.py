"""mosaik-pandapower-2 as the grid: same names, same units, same numbers as our AC grid."""

import json

import numpy as np
import pandas as pd
import pytest

from scenarios.ieee33_mosaik_pandapower import DEFAULTS, main, mosaik_pandapower_grid
from simulators.cosim import run
from simulators.recorder.recorder import FEEDER_COLUMNS, GRID_COLUMNS, MARKET_COLUMNS, PROSUMER_COLUMNS
from simulators.scenario import ScenarioConfig
from simulators.validation import ConfigError

TABLES = {"prosumers": PROSUMER_COLUMNS, "market": MARKET_COLUMNS, "grid": GRID_COLUMNS, "feeder": FEEDER_COLUMNS}


def _cfg(tmp_path, **kw):
    return ScenarioConfig(**{"results_dir": str(tmp_path), "progress": False, "plots": False,
                             "grouping": "grouped", **kw})


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    """One day, same seed, day and policy: mosaik-pandapower-2 grid and our AC grid."""
    tmp = tmp_path_factory.mktemp("mpp")
    mpp_dir, summary = run(_cfg(tmp, scenario=DEFAULTS.scenario, run_name="mpp"), mosaik_pandapower_grid)
    ours_dir, _ = run(_cfg(tmp, run_name="ours"))
    return _tables(mpp_dir), _tables(ours_dir), mpp_dir, summary


def _tables(run_dir):
    return {t: pd.read_csv(run_dir / f"{t}.csv") for t in TABLES}


def test_run_folder_has_full_schema(both_runs):
    mpp, _, run_dir, summary = both_runs
    for table, cols in TABLES.items():
        assert tuple(mpp[table].columns) == cols
    assert len(mpp["feeder"]) == 96 and len(mpp["grid"]) == 96 * 33
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["nonconverged_steps"] == 0 and not saved["incomplete"] and summary["steps"] == 96
    assert json.loads((run_dir / "config.json").read_text())["grid_builder"].endswith(":mosaik_pandapower_grid")


def test_bus_voltages_equal_our_ac_grid(both_runs):
    mpp, ours, _, _ = both_runs
    assert (mpp["grid"][["step", "bus"]].values == ours["grid"][["step", "bus"]].values).all()
    np.testing.assert_allclose(mpp["grid"]["vm_pu"], ours["grid"]["vm_pu"], rtol=0, atol=1e-6)
    assert mpp["grid"]["vm_pu"].std() > 1e-3, "voltages must move with the prosumers, not sit at 1 p.u."


def test_feeder_values_derived_without_a_grid_entity(both_runs):
    """losses from the bus balance, P_slack from ExternalGrid, loading from Lines, Vm range from buses."""
    mpp, ours, _, _ = both_runs
    a, b = mpp["feeder"], ours["feeder"]
    assert (a["converged"] == 1).all()
    for col, atol in (("vm_min_pu", 1e-6), ("vm_max_pu", 1e-6), ("losses_mw", 1e-5), ("p_slack_mw", 1e-5),
                      ("loading_max_percent", 1e-6)):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-6, atol=atol, err_msg=col)
    assert (a["losses_mw"] > 0).all()


def test_prosumer_and_market_tables_equal(both_runs):
    # prosumers see the other grid's voltages (equal to ~1e-8 p.u.); a volt-var droop turns
    # that into reactive power differences of ~1e-4 kvar
    mpp, ours, _, _ = both_runs
    for table in ("prosumers", "market"):
        pd.testing.assert_frame_equal(mpp[table], ours[table], check_exact=False, rtol=1e-6, atol=1e-3)


def test_script_per_prosumer_simulators(tmp_path):
    run_dir, summary = main(["--grouping", "per_prosumer", "--max-prosumers", "3", "--no-progress", "--no-plots",
                             "--results-dir", str(tmp_path), "--run-name", "pp"])
    pros = pd.read_csv(run_dir / "prosumers.csv")
    assert len(pros) == 96 * 3 and summary["nonconverged_steps"] == 0


def test_other_grid_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="grid_model"):
        run(_cfg(tmp_path, grid_model="lindistflow", max_prosumers=2), mosaik_pandapower_grid)


def test_nonconverging_flow_stops_the_run_visibly(tmp_path):
    """The adapter lets pandapower's LoadflowNotConverged through: the run ends, marked incomplete."""
    def overloaded(world, cfg, net, specs):
        net.load["p_mw"] *= 8
        return mosaik_pandapower_grid(world, cfg, net, specs)

    with pytest.raises(Exception, match="did not converge"):
        run(_cfg(tmp_path, max_prosumers=2, run_name="div"), overloaded)
    assert json.loads((tmp_path / "div" / "summary.json").read_text())["incomplete"] is True
