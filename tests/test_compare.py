"""Comparing runs: load_runs (simulators/recorder/runs.py) and python -m scenarios.compare."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from test_scenario import _CrashingPolicy  # a policy that raises after 10 steps

from scenarios.compare import TABLE_METRICS, compare, main
from simulators.cosim import run
from simulators.prosumer import policies
from simulators.recorder.runs import config_fields, load_runs, training_run
from simulators.scenario import ScenarioConfig
from simulators.validation import ConfigError


def _run(folder, name, **kw):
    cfg = ScenarioConfig(results_dir=str(folder), run_name=name, max_prosumers=3, grouping="grouped",
                         progress=False, plots=False, **kw)
    return run(cfg)[0]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Four tiny one-day runs: markets sdr and mmr, seeds 0 and 1 each."""
    folder = tmp_path_factory.mktemp("runs")
    for market in ("sdr", "mmr"):
        for seed in (0, 1):
            _run(folder, f"{market}_s{seed}", market=market, seed=seed)
    return folder


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_differing_fields_and_tidy_tables(runs_dir):
    runs = load_runs([runs_dir / "sdr_s0", str(runs_dir / "mmr_*")])
    assert runs.fields == ["market", "seed"]
    assert list(runs.summaries["run"]) == ["sdr_s0", "mmr_s0", "mmr_s1"]
    assert list(runs.summaries["market"]) == ["sdr", "mmr", "mmr"]
    assert not runs.summaries["incomplete"].any()
    for table, rows_per_run in ((runs.series, 96), (runs.prosumers, 96 * 3), (runs.voltages, 96 * 33)):
        assert list(table.columns[:3]) == ["run", "market", "seed"]
        assert (table.groupby("run").size() == rows_per_run).all()
    # the tables are the run's own CSVs, tagged
    market = pd.read_csv(runs_dir / "mmr_s1" / "market.csv")
    mine = runs.series[runs.series.run == "mmr_s1"].reset_index(drop=True)
    assert np.array_equal(mine["price_buy_eur_per_kwh"], market["price_buy_eur_per_kwh"])
    cost = runs.prosumers.groupby(["run", "prosumer"])["cost_eur"].sum()
    for name, value in _summary(runs_dir / "sdr_s0")["cost_per_prosumer_eur"].items():
        assert cost["sdr_s0", name] == pytest.approx(value, rel=1e-12)
    assert load_runs(runs_dir / "sdr_*").fields == ["seed"]


def test_table_aggregates_seeds_and_equals_summaries(runs_dir, tmp_path):
    out, table, _ = compare([str(runs_dir / "*")], results_dir=str(tmp_path))
    assert list(table["market"]) == ["mmr", "sdr"]  # glob order: mmr_s0, mmr_s1, sdr_s0, sdr_s1
    assert list(table["runs"]) == [2, 2] and list(table["seeds"]) == ["seed=0,1", "seed=0,1"]
    saved = pd.read_csv(out / "table.csv", float_precision="round_trip")
    per_run = pd.read_csv(out / "runs.csv", float_precision="round_trip").set_index("run")
    metrics = [k for k, v in _summary(runs_dir / "sdr_s0").items() if isinstance(v, (int, float))
               and not isinstance(v, bool)]
    assert {"cost_eur", "voltage_violation_rate", "p2p_volume_kwh"} <= set(metrics)
    for market in ("sdr", "mmr"):
        summaries = [_summary(runs_dir / f"{market}_s{seed}") for seed in (0, 1)]
        row = saved.set_index("market").loc[market]
        for m in metrics:
            values = [s[m] for s in summaries]
            assert row[f"{m}_min"] == min(values) and row[f"{m}_max"] == max(values), m
            assert row[f"{m}_median"] == pytest.approx(np.median(values), rel=1e-12, nan_ok=True), m
            for seed, s in zip((0, 1), summaries):
                assert per_run.loc[f"{market}_s{seed}", m] == s[m], m
    # the seeds really differ, so the band is not empty
    assert saved["cost_eur_min"].lt(saved["cost_eur_max"]).all()
    md = (out / "table.md").read_text()
    row = saved.set_index("market").loc["sdr"]
    fmt = TABLE_METRICS["cost_eur"][1]
    assert f"| sdr | 2 | seed=0,1 | {fmt.format(row.cost_eur_median)} [{fmt.format(row.cost_eur_min)}, " in md
    for png in ("voltage_envelope", "prices_volume", "battery_soc", "cost_per_prosumer", "voltage_by_bus"):
        assert (out / f"{png}.png").stat().st_size > 10_000, png
    config = json.loads((out / "config.json").read_text())
    assert config["by"] == ["market"] and len(config["resolved"]) == 4


def test_by_field_aggregates_over_it(runs_dir, tmp_path):
    _, table, _ = compare([str(runs_dir / "*")], by=["seed"], results_dir=str(tmp_path))
    assert list(table["seed"]) == [0, 1] and list(table["runs"]) == [2, 2]
    _, table, _ = compare([str(runs_dir / "*")], by=[], results_dir=str(tmp_path))
    assert list(table["runs"]) == [4]


def test_incomplete_runs_included_and_marked(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(policies.POLICIES, "crashing", _CrashingPolicy)
    _CrashingPolicy.calls = 0
    with pytest.raises(RuntimeError):
        _run(tmp_path, "crashed", policy="crashing")
    killed = tmp_path / "killed"  # a run killed outright: rows of 10 steps, no summary.json
    shutil.copytree(runs_dir / "sdr_s0", killed)
    (killed / "summary.json").unlink()
    for name in ("prosumers", "market", "grid", "feeder"):
        frame = pd.read_csv(killed / f"{name}.csv")
        frame[frame.step < 10].to_csv(killed / f"{name}.csv", index=False)
    out, table, notes = compare([str(runs_dir / "sdr_s0"), str(tmp_path / "crashed"), str(killed)],
                                results_dir=str(tmp_path / "cmp"))
    summaries = pd.read_csv(out / "runs.csv").set_index("run")
    assert list(summaries["incomplete"]) == [False, True, True]
    assert summaries.loc["killed", "steps"] == 10 and summaries.loc["crashed", "steps"] == 10
    assert "incomplete runs (included, marked): crashed, killed" in notes
    assert "1 of 1" in (out / "table.md").read_text()


def test_different_feeders_compare_feeder_level_only(runs_dir, tmp_path):
    other = _run(tmp_path, "rural", network="simbench_lv_rural3", specs="generate")
    out, _, notes = compare([str(runs_dir / "sdr_s0"), str(other)], results_dir=str(tmp_path / "cmp"))
    assert not (out / "voltage_by_bus.png").exists()
    assert any("different feeders (ieee33: 1 run; simbench_lv_rural3: 1 run)" in n for n in notes)
    for png in ("voltage_envelope", "prices_volume", "battery_soc", "cost_per_prosumer"):
        assert (out / f"{png}.png").is_file(), png
    assert "network" in load_runs([runs_dir / "sdr_s0", other]).fields


def test_not_a_run_is_refused(runs_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty.*is not a run folder .*missing config.json"):
        load_runs([runs_dir / "sdr_s0", tmp_path / "empty"])
    with pytest.raises(ConfigError, match=r"holds run folders: pass .*\*"):
        load_runs(runs_dir)
    with pytest.raises(ConfigError, match="matches nothing"):
        load_runs(str(tmp_path / "nothing_*"))
    shutil.copytree(runs_dir / "sdr_s0", tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="broken/config.json' is not readable JSON"):
        load_runs(tmp_path / "broken")


def test_run_ids_are_unique_and_runs_counted_once(runs_dir, tmp_path):
    for parent in ("a", "b"):
        shutil.copytree(runs_dir / "sdr_s0", tmp_path / parent / "run")
    runs = load_runs([tmp_path / "a" / "run", str(tmp_path / "*" / "run"), f"{tmp_path}/a/run/"])
    assert list(runs.summaries["run"]) == ["a/run", "b/run"] and runs.fields == []


@pytest.mark.parametrize("argv", [
    ["{empty}"], ["{runs}/sdr_s0", "{runs}/missing"], ["{runs}/nothing_*"], ["{runs}/*", "--by", "colour"],
    ["--bogus", "{runs}/sdr_s0"], [],
])
def test_cli_user_errors_exit_2_and_write_nothing(runs_dir, tmp_path, capsys, argv):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    args = [a.format(runs=runs_dir, empty=tmp_path / "empty") for a in argv] + ["--results-dir", str(out)]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_cli_writes_table(runs_dir, tmp_path, capsys):
    out = main([str(runs_dir / "sdr_s0"), str(runs_dir / "mmr_s0"), "--results-dir", str(tmp_path),
                "--run-name", "cmp"])
    assert out == tmp_path / "cmp" and "| sdr | 1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # the folder exists: refused, nothing overwritten
        main([str(runs_dir / "sdr_s0"), "--results-dir", str(tmp_path), "--run-name", "cmp"])
    assert exc.value.code == 2 and (out / "table.md").is_file()


def test_trained_actor_runs_are_named_by_method_and_training_seed(tmp_path):
    base = {"policy": "actor", "seed": 0}
    evaluation = config_fields({**base, "policy_options": {"checkpoint": "gone/train/imitative_diffattn__s2"}})
    assert (evaluation["method"], evaluation["train_seed"]) == ("imitative_diffattn", 2)
    assert "policy_options.checkpoint" not in evaluation
    assert training_run("results/ieee33_day__matd3__4__20261130-101010-000001/actor.pt") == ("matd3", 4)
    train = tmp_path / "anything"
    train.mkdir()
    (train / "config.json").write_text(json.dumps({"algo": "bc", "seed": 7}))
    assert training_run(str(train / "actor.pt")) == ("bc", 7)
    assert training_run("elsewhere/my_actor.pt") == ("actor:elsewhere", None)
    rule = config_fields({"policy": "rule", "seed": 0, "policy_options": {}})
    assert rule["method"] == "rule" and rule["train_seed"] is None


def test_policy_or_method_column(runs_dir, tmp_path):
    """Runs of different policies show 'policy'; with a trained actor among them, 'method'."""
    _run(tmp_path, "idle", policy="idle")
    assert load_runs([runs_dir / "sdr_s0", tmp_path / "idle"]).fields == ["policy"]
    actor = tmp_path / "actor"
    shutil.copytree(tmp_path / "idle", actor)  # relabelled as a trained actor's run: only config.json is read here
    config = json.loads((actor / "config.json").read_text())
    config.update(policy="actor", policy_options={"checkpoint": "elsewhere/train/bc__s3"})
    (actor / "config.json").write_text(json.dumps(config))
    runs = load_runs([runs_dir / "sdr_s0", tmp_path / "idle", actor])
    assert runs.fields == ["method", "train_seed"]
    assert list(runs.summaries["method"]) == ["rule", "idle", "bc"]
    assert list(runs.summaries["train_seed"].astype(object).fillna(-1)) == [-1, -1, 3]
