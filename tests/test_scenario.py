"""The co-simulation end to end through mosaik: schema, physics of the books, reproducibility, errors."""

import json

import numpy as np
import pandas as pd
import pytest

from scenarios.cli import parse_args
from simulators.cosim import run
from simulators.prosumer import policies
from simulators.recorder.recorder import FEEDER_COLUMNS, GRID_COLUMNS, MARKET_COLUMNS, PROSUMER_COLUMNS
from simulators.scenario import ScenarioConfig
from simulators.validation import ConfigError

SUMMARY_KEYS = {"cost_eur", "cost_per_prosumer_eur", "voltage_violation_rate", "steps_with_violation", "vm_min_pu",
                "vm_max_pu", "losses_kwh", "p2p_volume_kwh", "self_sufficiency", "nonconverged_steps"}


def _cfg(tmp_path, **kw):
    base = dict(results_dir=str(tmp_path), progress=False, plots=False)
    base.update(kw)
    return ScenarioConfig(**base)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default scenario exactly as the README runs it (one day, per-prosumer simulators)."""
    tmp = tmp_path_factory.mktemp("default")
    return run(_cfg(tmp, plots=True))


def test_default_run_writes_complete_schema(default_run):
    run_dir, summary = default_run
    for name, cols, rows in (("prosumers", PROSUMER_COLUMNS, 96 * 32), ("market", MARKET_COLUMNS, 96),
                             ("grid", GRID_COLUMNS, 96 * 33), ("feeder", FEEDER_COLUMNS, 96)):
        df = pd.read_csv(run_dir / f"{name}.csv")
        assert tuple(df.columns) == cols
        assert len(df) == rows
    assert SUMMARY_KEYS <= set(json.loads((run_dir / "summary.json").read_text()))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tariff_values"]["buy_eur_per_kwh"] and len(config["prosumer_specs"]) == 32
    for png in ("voltage_envelope.png", "prices_volume.png", "battery_soc.png"):
        assert (run_dir / png).stat().st_size > 10_000
    assert summary["nonconverged_steps"] == 0 and not summary["incomplete"]


def test_default_run_books_balance(default_run):
    run_dir, _ = default_run
    pros = pd.read_csv(run_dir / "prosumers.csv")
    market = pd.read_csv(run_dir / "market.csv")
    per_step = pros.groupby("step")[["p2p_buy_kwh", "p2p_sell_kwh"]].sum()
    np.testing.assert_allclose(per_step["p2p_buy_kwh"], per_step["p2p_sell_kwh"], atol=1e-6)
    np.testing.assert_allclose(per_step["p2p_buy_kwh"].values, market["traded_kwh"].values, atol=1e-6)
    net = pros["p2p_buy_kwh"] + pros["grid_buy_kwh"] - pros["p2p_sell_kwh"] - pros["grid_sell_kwh"]
    np.testing.assert_allclose(net, pros["net_kw"] * 0.25, atol=1e-6)
    np.testing.assert_allclose(pros["cost_eur"], pros["market_cost_eur"] + pros["device_cost_eur"], atol=1e-9)
    assert ((market["price_buy_eur_per_kwh"] <= market["tariff_buy_eur_per_kwh"] + 1e-9)
            & (market["price_sell_eur_per_kwh"] >= market["tariff_sell_eur_per_kwh"] - 1e-9)).all()


def test_grouped_equals_per_prosumer_and_same_seed_same_numbers(default_run, tmp_path):
    run_dir, _ = default_run
    grouped_dir, _ = run(_cfg(tmp_path, grouping="grouped", run_name="g1"))
    again_dir, _ = run(_cfg(tmp_path, grouping="grouped", run_name="g2"))
    for table in ("prosumers", "market", "grid", "feeder"):
        a = pd.read_csv(run_dir / f"{table}.csv")
        b = pd.read_csv(grouped_dir / f"{table}.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)
        assert (grouped_dir / f"{table}.csv").read_bytes() == (again_dir / f"{table}.csv").read_bytes()


def test_other_seed_changes_profiles(default_run, tmp_path):
    run_dir, _ = default_run
    other, _ = run(_cfg(tmp_path, grouping="grouped", seed=1, run_name="s1"))
    a = pd.read_csv(run_dir / "prosumers.csv")["load_kw"]
    b = pd.read_csv(other / "prosumers.csv")["load_kw"]
    assert not np.allclose(a, b)


@pytest.mark.parametrize("changes, field", [
    ({"market": "pay_as_you_wish"}, "market"),
    ({"network": "ieee9000"}, "network"),
    ({"grid_model": "dc"}, "grid_model"),
    ({"policy": "oracle"}, "policy"),
    ({"start_date": "2019-06-01"}, "date"),
    ({"start_date": "2016-13-01"}, "start_date"),
    ({"days": 0}, "days"),
    ({"specs": "/nonexistent.json"}, "specs"),
    ({"grouping": "clustered"}, "grouping"),
])
def test_bad_scenario_input_fails_before_run(tmp_path, changes, field):
    with pytest.raises(ConfigError, match=field):
        run(_cfg(tmp_path, **changes))
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid config"


def test_prosumer_on_unknown_bus_is_rejected(tmp_path):
    specs = tmp_path / "s.json"
    specs.write_text(json.dumps({"prosumers": [{"name": "a", "bus": 99, "load_peak_kw": 5}]}))
    with pytest.raises(ConfigError, match="bus: 99"):
        run(_cfg(tmp_path / "out", specs=str(specs)))


class _CrashingPolicy(policies.RuleBasedPolicy):
    calls = 0

    def act(self, obs, agent_ids):
        _CrashingPolicy.calls += 1
        if _CrashingPolicy.calls > 10:
            raise RuntimeError("policy exploded")
        return super().act(obs, agent_ids)


def test_crash_mid_run_keeps_recorded_rows(tmp_path, monkeypatch, capfd):
    import gc

    monkeypatch.setitem(policies.POLICIES, "crashing", _CrashingPolicy)
    _CrashingPolicy.calls = 0
    with pytest.raises(RuntimeError, match="policy exploded"):
        run(_cfg(tmp_path, policy="crashing", grouping="grouped", max_prosumers=4, run_name="crash"))
    gc.collect()
    assert "Task was destroyed" not in capfd.readouterr().err, "pending mosaik tasks must be cancelled"
    pros = pd.read_csv(tmp_path / "crash" / "prosumers.csv")
    assert len(pros) == 10 * 4
    assert json.loads((tmp_path / "crash" / "summary.json").read_text())["incomplete"] is True


def test_prosumers_in_their_own_processes(tmp_path, default_run):
    run_dir, _ = default_run
    out, _ = run(_cfg(tmp_path, max_prosumers=2, prosumer_start="cmd", run_name="proc", days=1))
    pros = pd.read_csv(out / "prosumers.csv")
    assert len(pros) == 96 * 2 and pros["net_kw"].abs().sum() > 0


def test_cli_flags_and_config_roundtrip(default_run):
    run_dir, _ = default_run
    cfg = parse_args(ScenarioConfig(), ["--config", str(run_dir / "config.json"), "--market", "mmr", "--no-progress"])
    assert cfg.market == "mmr" and cfg.progress is False and cfg.start_date
