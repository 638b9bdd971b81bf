"""SimBench profiles: data invariants, split, seeded assignment, scaling, cache, errors, mosaik adapter."""

import datetime as dt
import sys
from pathlib import Path

import mosaik
import numpy as np
import pytest
from mosaik.starters import PythonStarter
from mosaik_probe import Collector

from simulators.profiles import data
from simulators.profiles.data import (DEFAULT_TEST_DAY, FORECAST_FIELDS, ProfileAssignment, ProfileBank,
                                      assign_profiles, forecast_features, is_test_day, persistence_days, prosumer_days)
from simulators.prosumer.spec import spec_from_dict
from simulators.validation import ConfigError

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_DAY = 96


@pytest.fixture(scope="module")
def bank():
    return ProfileBank.simbench()


def _specs(n=12):
    """Prosumers of different sizes; p001 has two PV arrays, every third one has none."""
    raw = []
    for k in range(n):
        pv = [] if k % 3 == 2 else [{"kwp": 2.0 + k}]
        if k == 1:
            pv = [{"kwp": 3.0}, {"kwp": 1.5}]
        raw.append({"name": f"p{k:03d}", "bus": k + 1, "load_peak_kw": 3.0 + 0.5 * k, "load_pf": 0.9, "pv": pv})
    return [spec_from_dict(r, i) for i, r in enumerate(raw)]


def _by_day(arr):
    return arr.reshape(-1, STEPS_PER_DAY, arr.shape[-1])  # (days, 96, types)


# ---- the data ----------------------------------------------------------------------------------
def test_profiles_finite_normalized_and_pv_follows_the_sun(bank):
    assert len(bank.days) == 366 and bank.load_p.shape == (366 * STEPS_PER_DAY, len(bank.load_types))
    assert {"H0-A", "H0-B", "H0-C", "H0-G", "H0-L", "G1-C", "L0-A"} <= set(bank.load_types)
    assert bank.pv_types == [f"PV{i}" for i in range(1, 9)]
    for arr in (bank.load_p, bank.load_q, bank.pv):
        assert np.isfinite(arr).all()
    np.testing.assert_allclose(bank.load_p.max(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(bank.pv.max(0), 1.0, rtol=1e-12)
    assert bank.pv.min() >= 0.0
    pv = _by_day(bank.pv)
    assert pv[:, : 3 * 4].max() == 0.0, "PV must be zero 00:00-03:00 on every day"
    month = bank.days.month
    summer, winter = np.isin(month, (6, 7, 8)), np.isin(month, (12, 1, 2))
    noon = slice(11 * 4, 13 * 4)
    assert (pv[summer][:, noon].mean(axis=(0, 1)) > 0.3).all()
    assert (pv[bank.day_index(DEFAULT_TEST_DAY), noon] > 0).all()
    assert (pv[summer].sum(axis=(0, 1)) > 2 * pv[winter].sum(axis=(0, 1))).all()


def test_golden_values(bank):
    """Means of the normalized profiles on DEFAULT_TEST_DAY, computed once straight from the CSVs."""
    p, q = bank.load_day("H0-B", DEFAULT_TEST_DAY)
    assert p.shape == q.shape == (STEPS_PER_DAY,)
    assert p.mean() == pytest.approx(0.07364608333333333, rel=1e-6)
    assert q.mean() == pytest.approx(0.02380925, rel=1e-6)
    assert bank.pv_day("PV3", DEFAULT_TEST_DAY).mean() == pytest.approx(0.22923393732207306, rel=1e-6)


# ---- split -------------------------------------------------------------------------------------
def test_split_is_disjoint_complete_and_spread(bank):
    train, test, val = data.train_days(bank), data.test_days(bank), data.validation_days(bank)
    assert len(train.intersection(test)) == len(train.intersection(val)) == len(val.intersection(test)) == 0
    assert train.union(test).union(val).equals(bank.days)
    assert len(test) == 45 and len(val) == 46
    assert all(set(val.month) & s for s in ({12, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11}))
    seasons = ({12, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11})
    assert all(set(test.month) & s for s in seasons)
    assert set(test.dayofweek) == set(range(7))
    assert DEFAULT_TEST_DAY in {str(d.date()) for d in test} and is_test_day(DEFAULT_TEST_DAY)
    assert data.DEFAULT_TRAIN_DAY in {str(d.date()) for d in train}  # the LLM verification's day
    assert is_test_day(dt.date(2016, 1, 8)) and not is_test_day("2016-01-09")


def test_default_test_day_has_pv_and_an_evening_peak(bank):
    pv = bank.pv[bank.rows(DEFAULT_TEST_DAY)].mean(1)
    daily = _by_day(bank.pv).mean(axis=(1, 2))
    assert pv.mean() > np.quantile(daily, 0.9)
    households = [bank.load_col(n) for n in bank.household_types if bank.q_from_profile[bank.load_col(n)]]
    load = bank.load_p[bank.rows(DEFAULT_TEST_DAY)][:, households].mean(1)
    evening = load[18 * 4: 23 * 4]
    assert evening.max() > 1.4 * load.mean() and pv[18 * 4 + evening.argmax()] < 0.02


# ---- assignment and scaling ----------------------------------------------------------------------
def test_assignment_is_seeded(bank):
    specs = _specs(12)
    a, b = assign_profiles(specs, 7, bank), assign_profiles(specs, 7, bank)
    assert a.load_type == b.load_type and a.pv_type == b.pv_type
    np.testing.assert_array_equal(a.load_scale_jitter, b.load_scale_jitter)
    da, db = (prosumer_days(bank, specs, x, [DEFAULT_TEST_DAY]) for x in (a, b))
    for field in ("load_kw", "load_kvar", "pv_avail_kw"):
        np.testing.assert_array_equal(getattr(da, field), getattr(db, field))
    c = assign_profiles(specs, 8, bank)
    assert (c.load_type, c.pv_type) != (a.load_type, a.pv_type)
    assert set(a.load_type) <= set(bank.household_types)
    assert ((a.load_scale_jitter >= 0.9) & (a.load_scale_jitter <= 1.1)).all()
    assert (assign_profiles(specs, 7, bank, jitter=False).load_scale_jitter == 1.0).all()
    wide = assign_profiles(_specs(40), 7, bank, household_only=False)
    assert set(wide.load_type) - set(bank.household_types), "the full pool includes commercial types"


def test_scaling_peak_pv_and_reactive_power(bank):
    specs = _specs(12)
    year = [str(d.date()) for d in bank.days]
    off = assign_profiles(specs, 3, bank, jitter=False)
    prof = prosumer_days(bank, specs, off, year)
    peak = np.array([s.load_peak_kw for s in specs])
    assert prof.load_kw.shape == (366 * STEPS_PER_DAY, len(specs)) and prof.date == "2016-01-01"
    np.testing.assert_allclose(prof.load_kw.max(0), peak, rtol=1e-12)
    on = prosumer_days(bank, specs, assign_profiles(specs, 3, bank), year)
    assert (_by_day(on.load_kw).max(1) <= 1.1 * peak + 1e-9).all()
    kwp = np.array([sum(pv.kwp for pv in s.pv) for s in specs])
    np.testing.assert_allclose(prof.pv_avail_kw.max(0), kwp, rtol=1e-12)
    assert kwp[1] == 4.5 and (prof.pv_avail_kw[:, kwp == 0] == 0).all()
    # Q from the profile where it is meaningful (H0-B), from the power factor where not (H0-H)
    forced = ProfileAssignment(["H0-B", "H0-H"], ["PV1", "PV1"], np.array([1.0, 1.05]))
    two = prosumer_days(bank, specs[:2], forced, [DEFAULT_TEST_DAY, "2016-06-09"])
    p, q = bank.load_day("H0-B", DEFAULT_TEST_DAY)
    np.testing.assert_allclose(two.load_kvar[:STEPS_PER_DAY, 0], q * specs[0].load_peak_kw, rtol=1e-12)
    tan_phi = np.tan(np.arccos(specs[1].load_pf))
    np.testing.assert_allclose(two.load_kvar[:, 1], two.load_kw[:, 1] * tan_phi, rtol=1e-12)
    assert two.dates == (DEFAULT_TEST_DAY, "2016-06-09") and two.load_kw.shape == (2 * STEPS_PER_DAY, 2)


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("date", ["2019-06-01", "2015-12-31", dt.date(2017, 1, 1), "2016-13-01", "noon", None])
def test_dates_outside_the_data_are_rejected(bank, date):
    with pytest.raises(ConfigError, match=r"date: .*\[2016-01-01, 2016-12-31\]"):
        bank.day_index(date)


def test_bad_dates_types_and_assignments_are_rejected(bank):
    specs = _specs(2)
    a = assign_profiles(specs, 0, bank)
    with pytest.raises(ConfigError, match="consecutive"):
        prosumer_days(bank, specs, a, ["2016-06-08", "2016-06-10"])
    with pytest.raises(ConfigError, match="outside the available range"):
        prosumer_days(bank, specs, a, ["2016-12-31", "2017-01-01"])
    with pytest.raises(ConfigError, match="load_type: 'H9-Z'"):
        bank.load_day("H9-Z", DEFAULT_TEST_DAY)
    with pytest.raises(ConfigError, match="assignment.load_type: 2 entries for 3"):
        prosumer_days(bank, _specs(3), a, [DEFAULT_TEST_DAY])
    with pytest.raises(ConfigError, match="seed"):
        assign_profiles(specs, -1, bank)


@pytest.mark.parametrize("table, name", [("load_p", "H0-B_pload"), ("pv", "PV3")])
def test_nan_in_a_profile_is_rejected(bank, table, name):
    load_p, pv = bank.load_p.copy(), bank.pv.copy()
    arr, col = (load_p, bank.load_col("H0-B")) if table == "load_p" else (pv, bank.pv_col("PV3"))
    arr[1234, col] = np.nan
    with pytest.raises(ConfigError, match=rf"profile {name}: non-finite value nan at index \(1234,\)"):
        ProfileBank("2016-01-01", bank.load_types, load_p, bank.load_q, bank.pv_types, pv)


# ---- cache -------------------------------------------------------------------------------------
def test_cache_is_written_reused_and_rebuilt_when_stale(bank, tmp_path, monkeypatch):
    monkeypatch.setenv("P2P_COSIM_CACHE", str(tmp_path / "new" / "dir"))
    path = data.cache_path()
    assert not path.exists()
    cold = data.load_simbench()
    assert path.is_file() and data.simbench_version() in path.name
    np.testing.assert_array_equal(cold.load_q, bank.load_q)
    mtime = path.stat().st_mtime_ns
    warm = data.load_simbench()
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(warm.pv, bank.pv)
    # a file written by another simbench version under this name is ignored and replaced
    with np.load(path) as z:
        content = dict(z)
    np.savez(path, **{**content, "simbench_version": "0.0.1", "pv": np.zeros_like(content["pv"])})
    np.testing.assert_array_equal(data.load_simbench().pv, bank.pv)
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = data.load_simbench()
    np.testing.assert_array_equal(again.load_p, bank.load_p)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary files left behind"


# ---- the persistence forecast ------------------------------------------------------------------
def test_persistence_forecast_is_the_day_before_summed_over_the_rest_of_the_day(bank):
    specs = _specs(5)
    assignment = assign_profiles(specs, 2, bank)
    dates = ["2016-03-01", "2016-03-02"]
    fc = persistence_days(bank, specs, assignment, dates)
    before = prosumer_days(bank, specs, assignment, ["2016-02-29", "2016-03-01"])
    for field in ("load_kw", "load_kvar", "pv_avail_kw"):
        np.testing.assert_array_equal(getattr(fc, field), getattr(before, field))
    # the bank's first day has no day before: the day after stands in
    first = persistence_days(bank, specs, assignment, ["2016-01-01"])
    np.testing.assert_array_equal(first.load_kw, prosumer_days(bank, specs, assignment, "2016-01-02").load_kw)
    got = forecast_features(fc)
    assert set(got) == set(FORECAST_FIELDS)
    for row in (0, 37, 79, 80, 94, 95, 96, 96 + 50, 191):
        day, k = divmod(row, STEPS_PER_DAY)
        ahead = [day * STEPS_PER_DAY + j for j in range(k + 1, min(k + 17, STEPS_PER_DAY))]  # never past midnight
        rest = [day * STEPS_PER_DAY + j for j in range(k + 1, STEPS_PER_DAY)]
        for name, series in (("load", before.load_kw), ("pv", before.pv_avail_kw)):
            mean4h = series[ahead].mean(axis=0) if ahead else np.zeros(len(specs))
            np.testing.assert_allclose(got[f"{name}_fc4h_kw"][row], mean4h, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got[f"{name}_fc_day_kwh"][row], series[rest].sum(axis=0) * 0.25,
                                       rtol=1e-12, atol=1e-12)
    # a day's features do not depend on the days around it in the run
    alone = forecast_features(persistence_days(bank, specs, assignment, ["2016-03-02"]))
    for field in FORECAST_FIELDS:
        np.testing.assert_allclose(got[field][STEPS_PER_DAY:], alone[field], rtol=1e-12)
    with pytest.raises(ConfigError, match="whole days"):
        forecast_features(type(fc)(date="x", dates=("x",), load_kw=fc.load_kw[:50], load_kvar=fc.load_kvar[:50],
                                   pv_avail_kw=fc.pv_avail_kw[:50]))


# ---- mosaik adapter ----------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["python", "cmd"])
def test_mosaik_outputs_equal_prosumer_days(bank, start):
    specs = _specs(4)
    dates = ["2016-12-31"] if start == "cmd" else [DEFAULT_TEST_DAY, "2016-06-09"]
    starter = ({"python": "simulators.profiles.sim:ProfileSim"} if start == "python"
               else {"cmd": f"{sys.executable} -m simulators.profiles.sim %(addr)s", "cwd": str(REPO)})
    world = mosaik.World({"Profiles": starter, "Collector": PythonStarter(Collector)}, debug=False)
    ents = world.start("Profiles", step_size=900).ProsumerProfile.create(
        len(specs), specs=[s.to_dict() for s in specs], dates=dates, seed=5)
    collector = world.start("Collector").Collector.create(1)[0]
    attrs = ("P_load[MW]", "Q_load[MVar]", "P_pv_avail[MW]", "P_load_fc4h[MW]", "P_pv_fc4h[MW]", "E_load_fc_day[MWh]",
             "E_pv_fc_day[MWh]")
    for e in ents:
        world.connect(e, collector, *attrs)
    Collector.seen = {}
    world.run(until=3 * 900, print_progress=False)
    assignment = assign_profiles(specs, 5, bank)
    expected = vars(prosumer_days(bank, specs, assignment, dates)) | forecast_features(
        persistence_days(bank, specs, assignment, dates))
    assert sorted(Collector.seen) == [0, 900, 1800]
    for k, t in enumerate(sorted(Collector.seen)):
        for attr, field in zip(attrs, ("load_kw", "load_kvar", "pv_avail_kw", *FORECAST_FIELDS)):
            got = [Collector.seen[t][attr][e.full_id] for e in ents]
            np.testing.assert_allclose(got, expected[field][k] / 1000.0, rtol=1e-12)
