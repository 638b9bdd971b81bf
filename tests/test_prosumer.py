"""Device physics of the prosumer fleet, spec validation and the rule-based policy."""

import json

import numpy as np
import pytest

from simulators.prosumer.fleet import Fleet
from simulators.prosumer.interface import (ACT, ACTION_FIELDS, ACTION_HIGH, ACTION_LOW, FORECAST_COLUMNS, OBS,
                                          OBS_FIELDS)
from simulators.prosumer.policies import POLICIES, PolicyContext, make_policy
from simulators.prosumer.spec import load_specs, spec_from_dict
from simulators.scenario import DATA_DIR
from simulators.units import STEP_H
from simulators.validation import ConfigError

SPECS = load_specs(DATA_DIR / "ieee33_prosumers.json")


def _random_run(fleet, steps, seed):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        a = rng.uniform(ACTION_LOW, ACTION_HIGH, size=(fleet.n, len(ACTION_FIELDS)))
        load = fleet.load_peak_kw * rng.uniform(0.2, 1.0, fleet.n)
        pv = fleet.devices["pv"].kwp_total * rng.uniform(0.0, 1.0, fleet.n)
        soc_before = fleet.devices["batteries"].soc_kwh.copy()
        gen_before = fleet.devices["generators"].gen_last_kw.copy()
        res = fleet.apply(t % 96, a, load, 0.3 * load, pv, 0.3, 0.08)
        out.append((a, load, pv, soc_before, gen_before, fleet.devices["batteries"].soc_kwh.copy(), fleet.devices["generators"].gen_last_kw.copy(), res))
    return out


def test_battery_soc_bounds_power_limits_and_energy_book():
    fleet = Fleet(SPECS)
    b = fleet.devices["batteries"]
    for _, _, _, soc0, _, soc1, _, res in _random_run(fleet, 200, seed=1):
        assert np.all(soc1 >= b.soc_lo_kwh - 1e-9) and np.all(soc1 <= b.soc_hi_kwh + 1e-9)
        assert np.all(np.abs(res.battery_kw) <= fleet.devices["batteries"].p_max + 1e-9)
        # per prosumer: stored energy change matches charge/discharge with efficiencies
        d_soc = b.total(soc1 - soc0)
        assert np.all(np.sign(d_soc[np.abs(res.battery_kw) > 1e-9]) == np.sign(res.battery_kw[np.abs(res.battery_kw) > 1e-9]))
    single = [s for s in SPECS if len(s.batteries) == 1][0]
    f1 = Fleet([single])
    bat = single.batteries[0]
    a = np.zeros((1, len(ACTION_FIELDS)))
    a[0, ACT["battery"]] = 0.5
    f1.apply(0, a, [0.0], [0.0], [0.0], 0.3, 0.08)
    expected = bat.soc_init * bat.capacity_kwh + bat.eta_charge * 0.5 * bat.p_max_kw * STEP_H
    assert f1.devices["batteries"].soc_kwh[0] == pytest.approx(expected, rel=1e-12)


def test_generator_limits_ramp_and_cost():
    fleet = Fleet(SPECS)
    g = fleet.devices["generators"]
    for _, _, _, _, last, _, now, res in _random_run(fleet, 200, seed=2):
        on = now > 0
        assert np.all(now[on] >= g.p_min_kw[on] - 1e-9) and np.all(now <= g.p_max_kw + 1e-9)
        ramp = np.where(g.ramp_kw_per_step > 0, g.ramp_kw_per_step, np.inf)
        assert np.all(np.abs(now - last) <= np.maximum(ramp, g.p_min_kw) + 1e-9)
    spec = [s for s in SPECS if s.generators][0]
    f1 = Fleet([spec])
    gs = spec.generators[0]
    a = np.zeros((1, len(ACTION_FIELDS)))
    a[0, ACT["generator"]] = 1.0
    res = f1.apply(0, a, [0.0], [0.0], [0.0], 0.3, 0.08)
    p = min(gs.p_max_kw, max(gs.ramp_kw_per_step, gs.p_min_kw) if gs.ramp_kw_per_step else gs.p_max_kw)
    assert res.gen_kw[0] == pytest.approx(p)
    cost = (gs.cost_a_eur_per_kw2h * p ** 2 + gs.cost_b_eur_per_kwh * p + gs.cost_c_eur_per_h) * STEP_H
    assert res.device_cost_eur[0] == pytest.approx(cost, rel=1e-9)


def test_controllable_load_window_energy_and_penalty():
    raw = {"name": "c", "bus": 1, "load_peak_kw": 1.0,
           "controllable_loads": [{"energy_kwh": 4.0, "p_max_kw": 4.0, "earliest_step": 10,
                                   "deadline_step": 20, "unserved_penalty_eur_per_kwh": 0.5}]}
    fleet = Fleet([spec_from_dict(raw)])
    a = np.zeros((1, len(ACTION_FIELDS)))
    a[0, ACT["controllable_load"]] = 0.5  # 2 kW -> 0.5 kWh per step
    served, costs = [], []
    for t in range(96):
        res = fleet.apply(t, a, [0.0], [0.0], [0.0], 0.3, 0.08)
        served.append(res.cl_kw[0] * STEP_H)
        costs.append(res.device_cost_eur[0])
        if t < 10 or t >= 20:
            assert res.cl_kw[0] == 0.0
    assert sum(served) == pytest.approx(4.0)  # 8 steps of 0.5 kWh fill the need within the window
    assert sum(costs) == 0.0
    # a second day starts with the full need again; never running leaves all of it unserved
    a[0, ACT["controllable_load"]] = 0.0
    res = [fleet.apply(t, a, [0.0], [0.0], [0.0], 0.3, 0.08) for t in range(96)]
    assert sum(r.cl_unserved_kwh[0] for r in res) == pytest.approx(4.0)
    assert sum(r.device_cost_eur[0] for r in res) == pytest.approx(2.0)


def test_pv_curtailment_reactive_capability_and_net_balance():
    fleet = Fleet(SPECS)
    for a, load, pv, _, _, _, _, res in _random_run(fleet, 50, seed=3):
        assert np.all(res.pv_kw <= pv + 1e-12) and np.all(res.pv_kw >= -1e-12)
        assert np.all(res.pv_q_kvar ** 2 + res.pv_kw ** 2 <= fleet.devices["pv"].s_kva_total ** 2 + 1e-6)
        net = res.load_kw + res.cl_kw + res.battery_kw - res.pv_kw - res.gen_kw
        np.testing.assert_allclose(res.net_kw, net, atol=1e-12)
        np.testing.assert_allclose(res.bid_kwh, res.net_kw * STEP_H)
        assert np.all((res.bid_price_eur_per_kwh >= 0.08 - 1e-12) & (res.bid_price_eur_per_kwh <= 0.3 + 1e-12))


def test_fleet_of_one_equals_row_of_grouped_fleet():
    grouped = _random_run(Fleet(SPECS), 30, seed=4)
    for i in (0, 5, 17):
        single = Fleet([SPECS[i]])
        for t, (a, load, pv, _, _, _, _, res) in enumerate(grouped):
            r1 = single.apply(t % 96, a[i:i + 1], load[i:i + 1], 0.3 * load[i:i + 1], pv[i:i + 1], 0.3, 0.08)
            for name in ("net_kw", "net_kvar", "soc_kwh", "gen_kw", "device_cost_eur"):
                assert getattr(r1, name)[0] == pytest.approx(getattr(res, name)[i], abs=1e-12)


def test_actions_from_setpoints_inverts_apply():
    fleet = Fleet(SPECS)
    rng = np.random.default_rng(5)
    a = rng.uniform(ACTION_LOW, ACTION_HIGH, size=(fleet.n, len(ACTION_FIELDS)))
    a[:, ACT["battery"]] *= 0.1  # small enough to be feasible from the initial SoC
    a[:, ACT["generator"]] *= 0.1
    load = fleet.load_peak_kw * 0.5
    pv = fleet.devices["pv"].kwp_total * 0.5
    res = fleet.apply(30, a, load, 0.1 * load, pv, 0.3, 0.08)
    setpoints = {"battery_kw": res.battery_kw, "gen_kw": res.gen_kw, "cl_kw": res.cl_kw,
                 "curtail_kw": res.curtailed_kw, "pv_q_kvar": res.pv_q_kvar}
    back = fleet.actions_from_setpoints(setpoints, a[:, ACT["bid_price"]], pv)
    has = {"battery": fleet.devices["batteries"].p_max > 0, "generator": fleet.devices["generators"].p_max > 0, "pv_curtail": pv > 0, "pv_q": pv > 0}
    for name, mask in has.items():
        np.testing.assert_allclose(back[mask, ACT[name]], a[mask, ACT[name]], atol=1e-9)


@pytest.mark.parametrize("edit, field", [
    ({"batteries": [{"capacity_kwh": -5, "p_max_kw": 1}]}, "capacity_kwh"),
    ({"batteries": [{"capacity_kwh": 5, "p_max_kw": 1, "soc_min": 0.8, "soc_max": 0.2}]}, "soc_max"),
    ({"pv": [{"kwp": float("nan")}]}, "kwp"),
    ({"load_peak_kw": -1}, "load_peak_kw"),
    ({"generators": [{"p_max_kw": 5, "p_min_kw": 9}]}, "p_min_kw"),
    ({"controllable_loads": [{"energy_kwh": 500, "p_max_kw": 1}]}, "energy_kwh"),
    ({"batteries": [{"capacity_kwh": 5, "p_max_kw": 1, "colour": "red"}]}, "colour"),
])
def test_bad_spec_names_field_and_range(edit, field):
    raw = {"name": "x", "bus": 3, "load_peak_kw": 5.0, **edit}
    with pytest.raises(ConfigError, match=field):
        spec_from_dict(raw)


def test_spec_file_errors(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"prosumers": [{"name": "a", "bus": 1, "load_peak_kw": 1},
                                              {"name": "a", "bus": 2, "load_peak_kw": 1}]}))
    with pytest.raises(ConfigError, match="unique"):
        load_specs(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="spec file"):
        load_specs(path)


@pytest.mark.parametrize("name", [n for n, p in POLICIES.items() if not isinstance(p, str)])
def test_builtin_policies_stay_in_bounds(name):
    fleet = Fleet(SPECS)
    policy = make_policy(name, PolicyContext(SPECS))
    rng = np.random.default_rng(6)
    for t in range(0, 96, 7):
        obs = fleet.observe(t, fleet.load_peak_kw * rng.uniform(0, 1, fleet.n), fleet.devices["pv"].kwp_total * rng.uniform(0, 1, fleet.n),
                            rng.uniform(0.9, 1.1, fleet.n), 0.2, 0.1, 0.3, 0.08)
        fc = [c for c, name in enumerate(OBS_FIELDS) if name in FORECAST_COLUMNS]
        assert np.all(np.isfinite(np.delete(obs, fc, axis=1))) and np.isnan(obs[:, fc]).all()  # no forecast given
        a = policy.act(obs, np.arange(fleet.n))
        assert a.shape == (fleet.n, len(ACTION_FIELDS))
        assert np.all(a >= np.array(ACTION_LOW) - 1e-12) and np.all(a <= np.array(ACTION_HIGH) + 1e-12)


def test_rule_policy_stores_surplus_and_supports_voltage():
    fleet = Fleet(SPECS)
    policy = make_policy("rule", PolicyContext(SPECS))
    has_bat = fleet.devices["batteries"].p_max > 0
    obs = fleet.observe(48, fleet.load_peak_kw * 0.1, fleet.devices["pv"].kwp_total, np.ones(fleet.n), 0.2, 0.1, 0.3, 0.08)
    surplus = obs[:, OBS["pv_avail"]] > obs[:, OBS["load"]]
    a = policy.act(obs, np.arange(fleet.n))
    assert np.all(a[has_bat & surplus, ACT["battery"]] > 0)
    high = fleet.observe(48, fleet.load_peak_kw * 0.1, fleet.devices["pv"].kwp_total, np.full(fleet.n, 1.06), 0.2, 0.1, 0.3, 0.08)
    a = policy.act(high, np.arange(fleet.n))
    assert np.all(a[:, ACT["pv_curtail"]] == 1.0) and np.all(a[:, ACT["pv_q"]] < 0)
