"""Optimization expert: reference models, preferences, the joint expert and the expert policy."""

import dataclasses
import warnings

import numpy as np
import pytest

from agents.expert.joint import (JointExpert, RecedingHorizon, couple, day_start_state, evaluate, forecast_profiles,
                                 perfect_foresight)
from agents.expert.policy import ExpertPolicy, load_demonstrations, write_demonstrations
from agents.expert.preferences import NIGHT, parse_preference, parse_preferences
from agents.expert.reference import ACTION_KEYS, build_reference, make_state
from simulators.grid.networks import make_network
from simulators.market.tariffs import make_tariff
from simulators.profiles.data import DEFAULT_TEST_DAY, ProfileBank, assign_profiles, prosumer_days
from simulators.prosumer.fleet import Fleet
from simulators.prosumer.interface import ACTION_HIGH, ACTION_LOW
from simulators.prosumer.policies import PolicyContext
from simulators.prosumer.spec import load_specs
from simulators.scenario import DATA_DIR
from simulators.validation import ConfigError

SPECS = load_specs(DATA_DIR / "ieee33_prosumers.json")
BY_NAME = {s.name: s for s in SPECS}
TARIFF = make_tariff("tou")
TOL = 1e-4  # kW / kWh: solver round-off on limits


@pytest.fixture(scope="module")
def day():
    bank = ProfileBank.simbench()
    return prosumer_days(bank, SPECS, assign_profiles(SPECS, 0, bank), DEFAULT_TEST_DAY)


@pytest.fixture(autouse=True)
def _quiet_solver_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(CPP backend|may be inaccurate).*")
        yield


def _state(spec, day, t, **kw):
    j = SPECS.index(spec) if spec in SPECS else SPECS.index(BY_NAME[spec.name])
    return make_state(spec, t, day.load_kw[:96, j], day.pv_avail_kw[:96, j], TARIFF.buy_eur_per_kwh,
                      TARIFF.sell_eur_per_kwh, **kw)


def _with(spec, **changes):
    return dataclasses.replace(spec, **changes)


# ---- preferences -------------------------------------------------------------------------------
def test_preference_patterns_parse_to_soft_constraints():
    s = BY_NAME["p006"]  # PV, battery, generator, controllable load
    night = parse_preference("Don't run the generator at night.", s)
    assert (night.quantity, night.sense, night.bound) == ("gen_kw", "max", 0.0)
    assert night.steps == tuple(range(88, 96)) + tuple(range(0, 24)) and NIGHT == (22.0, 6.0)
    window = parse_preference("no generator between 22:00 and 06:00", s)
    assert window.steps == night.steps
    soc = parse_preference("keep the battery above 50% before 18:00", s)
    assert soc.sense == "min" and soc.bound == pytest.approx(0.5 * s.batteries[0].capacity_kwh)
    assert soc.steps == tuple(range(72))
    assert parse_preference("keep the battery above 12.5 kWh", s).bound == 12.5
    imp = parse_preference("limit grid import to 72.5 kW between 6 pm and 9 pm", s)
    assert (imp.quantity, imp.bound, imp.steps) == ("net_kw", 72.5, tuple(range(72, 84)))
    cl = parse_preference("run the controllable load after 10:00", s)
    assert (cl.quantity, cl.bound, cl.steps) == ("cl_kw", 0.0, tuple(range(40)))  # banned before 10:00
    assert parse_preference("don't curtail the PV", s).quantity == "curtail_kw"
    assert parse_preference("limit grid export to 5 kW", s).quantity == "export_kw"


@pytest.mark.parametrize("text, who, match", [
    ("please be green", "p006", "matches none"),
    ("don't run the generator at night", "p001", "has none"),          # p001 owns no generator
    ("no generator between 25:00 and 06:00", "p006", "outside"),
    ("no generator after 10:07", "p006", "15-minute"),
    ("run the controllable load", "p006", "needs a time"),
])
def test_bad_preferences_raise_config_error_naming_prosumer_and_text(text, who, match):
    spec = _with(BY_NAME[who], preferences=(text,))
    with pytest.raises(ConfigError, match=match) as err:
        parse_preferences(spec)
    assert repr(who) in str(err.value) and text in str(err.value)
    with pytest.raises(ConfigError):
        build_reference(spec)


# ---- the per-prosumer reference model -----------------------------------------------------------
def _check_solution(spec, state, sol):
    a, t0, T = sol["actions"], state["time"], state["horizon"]
    steps = t0 + np.arange(T)
    total_kwp = sum(p.kwp for p in spec.pv)
    net = np.array(state["load_kw"], float)
    for i, pv in enumerate(spec.pv, 1):
        p, q = a[f"P_RDG{i}"], a[f"Q_RDG{i}"]
        assert (p >= -TOL).all() and (p <= state["pv_avail_kw"] * pv.kwp / total_kwp + TOL).all()
        assert (np.hypot(p, q) <= pv.s_kva + TOL).all()
        net -= p
    for i, b in enumerate(spec.batteries, 1):
        p = a[f"P_BESS{i}"]
        assert (np.abs(p) <= b.p_max_kw + TOL).all()
        soc = state["soc_kwh"][i - 1] + np.cumsum(np.where(p > 0, b.eta_charge * p, p / b.eta_discharge) * 0.25)
        assert soc.min() >= b.soc_min * b.capacity_kwh - 1e-3 and soc.max() <= b.soc_max * b.capacity_kwh + 1e-3
        net += p
    for i, g in enumerate(spec.generators, 1):
        p = a[f"P_CDG{i}"]
        assert (p >= -TOL).all() and (p <= g.p_max_kw + TOL).all()
        assert np.abs(np.diff(np.concatenate([[state["gen_last_kw"][i - 1]], p]))).max() <= g.ramp_kw_per_step + TOL
        net -= p
    for i, c in enumerate(spec.controllable_loads, 1):
        p = a[f"P_CL{i}"]
        window = (steps >= c.earliest_step) & (steps < c.deadline_step)
        assert (p >= -TOL).all() and (p <= np.where(window, c.p_max_kw, 0.0) + TOL).all()
        assert p.sum() * 0.25 <= state["cl_remaining_kwh"][i - 1] + TOL
        net += p
    np.testing.assert_allclose(net, -sol["p_ex"], atol=1e-5 * max(1.0, np.abs(net).max()))  # balance, p2p = 0
    np.testing.assert_allclose(a["P_B"] - a["P_S"], net, atol=1e-5 * max(1.0, np.abs(net).max()))


@pytest.mark.parametrize("name", ["p000", "p006", "p009", "p019", "p026", "p030"])
def test_reference_is_feasible_balanced_and_within_device_limits(name, day):
    spec = BY_NAME[name]
    ref = build_reference(spec)
    for t in (0, 47, 90):
        st = _state(spec, day, t, gen_last_kw=[0.5 * g.p_max_kw for g in spec.generators] if t else None)
        sol = ref.solve(st)
        assert sol["status"] == "optimal"
        _check_solution(spec, st, sol)


def test_reference_golden_objective_and_dpp_resolve(day):
    spec = BY_NAME["p000"]
    ref = build_reference(spec)
    sol = ref.solve(_state(spec, day, 0))
    assert sol["objective"] == pytest.approx(-60.022, rel=2e-3)  # one golden value: 2016-06-08, seed 0, tou
    problem = sol["problem"]
    assert problem.is_dcp(dpp=True)
    compiled = problem._cache.param_prog
    busier = _state(spec, day, 0)
    busier["load_kw"] = busier["load_kw"] * 1.2
    assert ref.solve(busier)["objective"] > sol["objective"]
    assert problem._cache.param_prog is compiled  # re-solved with new parameters, not recompiled


def test_multiple_units_get_their_own_variables(day):
    spec = BY_NAME["p009"]  # two PV arrays, two batteries
    assert len(spec.pv) == 2 and len(spec.batteries) == 2
    actions = build_reference(spec)(_state(spec, day, 0))[0]
    expected = [ACTION_KEYS[k].format(i=i) for k in ACTION_KEYS for i in range(1, len(getattr(spec, k)) + 1)]
    assert set(expected) <= set(actions) and {"P_CDG1", "P_CL1"}.isdisjoint(actions)
    assert all(actions[k].shape == (96,) for k in expected)
    b1, b2 = spec.batteries
    st = _state(spec, day, 0, soc_kwh=[b1.soc_min * b1.capacity_kwh, b2.soc_max * b2.capacity_kwh])
    sol = build_reference(spec).solve(st)
    _check_solution(spec, st, sol)  # each unit keeps its own SoC bounds
    assert sol["actions"]["P_BESS1"][0] >= -TOL  # the empty unit cannot discharge ...
    assert np.abs(sol["actions"]["P_BESS1"] - sol["actions"]["P_BESS2"]).max() > 1.0  # ... the units act apart
    prompts = pytest.importorskip("agents.llm.prompts")
    assert prompts.ACTION_KEYS == ACTION_KEYS and set(prompts.action_keys(spec)) == set(expected)


def test_preferences_lower_the_penalized_behaviour(day):
    base = BY_NAME["p006"]
    cheap = _with(base, generators=(dataclasses.replace(base.generators[0], cost_b_eur_per_kwh=0.05),),
                  preferences=())
    night = np.zeros(96, bool)
    night[list(parse_preference("no generator at night", base).steps)] = True
    free = build_reference(cheap).solve(_state(cheap, day, 0))["actions"]["P_CDG1"]
    polite = _with(cheap, preferences=("don't run the generator at night", "keep the battery above 60% before 18:00"))
    sol = build_reference(polite).solve(_state(polite, day, 0))
    assert free[night].sum() * 0.25 > 10.0  # kWh at night when the generator is cheap
    assert sol["actions"]["P_CDG1"][night].sum() * 0.25 < 1e-3
    b = polite.batteries[0]
    p = sol["actions"]["P_BESS1"]
    soc = b.soc_init * b.capacity_kwh + np.cumsum(np.where(p > 0, b.eta_charge * p, p / b.eta_discharge) * 0.25)
    assert soc[:72].min() >= 0.6 * b.capacity_kwh - 1e-3


# ---- the joint expert ----------------------------------------------------------------------------
def test_joint_expert_equals_coupled_reference_models(day):
    specs = [BY_NAME[n] for n in ("p000", "p006", "p019", "p026")]
    cols = [SPECS.index(s) for s in specs]
    t = 80
    expert = JointExpert(specs, TARIFF, make_network("ieee33"))
    state = {"soc_kwh": [0.4 * b.capacity_kwh for s in specs for b in s.batteries],
             "gen_last_kw": [0.3 * g.p_max_kw for s in specs for g in s.generators],
             "cl_remaining_kwh": [0.5 * c.energy_kwh for s in specs for c in s.controllable_loads]}
    plan = expert.plan(t, day.load_kw[t:96, cols], day.load_kvar[t:96, cols], day.pv_avail_kw[t:96, cols], state,
                       full=True)
    tuples, k = [], {"soc_kwh": 0, "gen_last_kw": 0, "cl_remaining_kwh": 0}
    for s, j in zip(specs, cols):
        per = {}
        for key, attr in (("soc_kwh", "batteries"), ("gen_last_kw", "generators"), ("cl_remaining_kwh",
                                                                                     "controllable_loads")):
            per[key] = state[key][k[key]:k[key] + len(getattr(s, attr))]
            k[key] += len(getattr(s, attr))
        tuples.append(build_reference(s)(_state(s, day, t, **per)))
    problem, info = couple(tuples, specs, make_network("ieee33"), day.load_kvar[t:96, cols])
    problem.solve(solver="CLARABEL")
    assert problem.status == "optimal" and problem.is_dcp(dpp=True)
    assert plan.objective_eur == pytest.approx(problem.value, rel=1e-5, abs=1e-4)


def test_highs_solves_the_linear_variant_and_refuses_quadratic_costs(day):
    specs = [_with(s, generators=tuple(dataclasses.replace(g, cost_a_eur_per_kw2h=0.0) for g in s.generators))
             for s in (BY_NAME[n] for n in ("p000", "p006", "p027"))]
    cols = [SPECS.index(BY_NAME[s.name]) for s in specs]
    t, state = 72, day_start_state(specs)
    values = []
    for solver in ("CLARABEL", "HIGHS"):
        expert = JointExpert(specs, TARIFF, make_network("ieee33"), solver=solver)
        values.append(expert.plan(t, day.load_kw[t:96, cols], day.load_kvar[t:96, cols], day.pv_avail_kw[t:96, cols],
                                  state).objective_eur)
    assert values[1] == pytest.approx(values[0], rel=1e-5, abs=1e-4)
    with pytest.raises(ConfigError, match="quadratic"):
        JointExpert([BY_NAME["p006"]], TARIFF, make_network("ieee33"), solver="HIGHS")


def test_a_failed_solve_falls_back_to_the_next_solver_and_says_so_when_all_fail(day, monkeypatch):
    import cvxpy as cp

    specs = [BY_NAME[n] for n in ("p000", "p006")]
    cols = [SPECS.index(s) for s in specs]
    t, state = 72, day_start_state(specs)
    args = (t, day.load_kw[t:96, cols], day.load_kvar[t:96, cols], day.pv_avail_kw[t:96, cols], state)
    reference = JointExpert(specs, TARIFF, make_network("ieee33")).plan(*args).objective_eur
    solve, calls = cp.Problem.solve, []

    def flaky(problem, *a, solver=None, **kw):  # the configured solve (qdldl) fails as it did on a stressed-feeder day
        calls.append((solver, kw))
        if kw.get("direct_solve_method") == "qdldl" or failing_all:
            raise cp.error.SolverError("Solver 'CLARABEL' failed.")
        return solve(problem, *a, solver=solver, **kw)

    monkeypatch.setattr(cp.Problem, "solve", flaky)
    failing_all = False
    expert = JointExpert(specs, TARIFF, make_network("ieee33"))
    assert expert.plan(*args).objective_eur == pytest.approx(reference, rel=1e-5, abs=1e-4)
    assert expert.fallbacks == 1 and [c[0] for c in calls] == ["CLARABEL", "CLARABEL"]
    assert calls[1][1] == {"warm_start": False}  # the fallback: Clarabel's default factorization, no solver state kept
    failing_all = True
    with pytest.raises(RuntimeError, match=r"step 72: no solver found an optimum .*CLARABEL.*SolverError.*SCS"):
        expert.plan(*args)


def test_joint_expert_keeps_the_linearized_voltage_band(day):
    margin = 0.04  # band 0.99..1.01: the passive feeder leaves it on this day, so the expert has to act
    expert = JointExpert(SPECS, TARIFF, make_network("ieee33"), v_margin_pu=margin)
    passive = expert.voltage.numeric(day.load_kw[:96] - day.pv_avail_kw[:96], day.load_kvar[:96])
    watch = expert.voltage.watch
    assert passive[:, watch].min() < 0.99 - 1e-3 or passive[:, watch].max() > 1.01 + 1e-3
    pf = perfect_foresight(expert, day)
    plan = pf["plan"]
    assert plan.status == "optimal" and pf["v_slack_pu"] < 1e-6
    assert plan.vm_pu.min() >= 0.99 - 1e-6 and plan.vm_pu.max() <= 1.01 + 1e-6
    kvar = day.load_kvar[:96] - _q_of_plan(expert)
    realized = expert.voltage.numeric(plan.net_kw, kvar)[:, watch]  # dense form agrees with the tree constraints
    np.testing.assert_allclose(realized, plan.vm_pu, atol=1e-6)
    assert np.isfinite(pf["per_prosumer_cost_eur"]).all() and pf["per_prosumer_cost_eur"].shape == (len(SPECS),)


def _q_of_plan(expert):
    jp = expert._problem(expert.layout(0, full=True))
    return np.asarray(jp.prog.q_inj.value)


def test_perfect_foresight_bounds_the_receding_horizon(day):
    specs = [BY_NAME[n] for n in ("p000", "p006", "p019", "p027")]
    cols = [SPECS.index(s) for s in specs]
    bank = ProfileBank.simbench()
    assignment = assign_profiles(SPECS, 0, bank)
    truth = dataclasses.replace(day, load_kw=day.load_kw[:, cols], load_kvar=day.load_kvar[:, cols],
                                pv_avail_kw=day.pv_avail_kw[:, cols])
    yesterday = forecast_profiles("yesterday", bank, SPECS, assignment, [DEFAULT_TEST_DAY])
    yesterday = dataclasses.replace(yesterday, load_kw=yesterday.load_kw[:, cols],
                                    load_kvar=yesterday.load_kvar[:, cols], pv_avail_kw=yesterday.pv_avail_kw[:, cols])
    expert = JointExpert(specs, TARIFF, make_network("ieee33"), fine_hours=1)
    pf = perfect_foresight(expert, truth)
    assert expert._problem(expert.layout(0)).problem.is_dcp(dpp=True)
    totals = []
    for forecast in (truth, yesterday):
        rh = RecedingHorizon(expert, truth, forecast).run()
        totals.append(evaluate(expert, rh)["total_eur"])
        assert pf["total_eur"] <= totals[-1] + 1e-6 * abs(totals[-1]) + 1e-3
        assert len(rh.actions) == 96 and all((a >= ACTION_LOW).all() and (a <= ACTION_HIGH).all() for a in rh.actions)
    # with the true profiles as forecast the loop stays close to the bound (coarse tail, unit commitment)
    assert totals[0] <= pf["total_eur"] + 0.01 * abs(pf["total_eur"]) + 0.5


# ---- the policy ------------------------------------------------------------------------------------
def test_expert_policy_acts_and_refuses_a_mismatched_context():
    specs = SPECS[:4]
    bank = ProfileBank.simbench()
    day = prosumer_days(bank, specs, assign_profiles(specs, 0, bank), DEFAULT_TEST_DAY)
    obs = Fleet(specs).observe(0, day.load_kw[0], day.pv_avail_kw[0], np.ones(4), 0.2, 0.1, *TARIFF.at(0))
    ctx = dict(specs=specs, dates=[DEFAULT_TEST_DAY], tariff=TARIFF, options={"fine_hours": 1})
    policy = ExpertPolicy(PolicyContext(seed=0, **ctx))
    a = policy.act(obs[[2]], np.array([2]))
    assert a.shape == (1, 6) and ((a >= ACTION_LOW) & (a <= ACTION_HIGH)).all()
    np.testing.assert_array_equal(ExpertPolicy(PolicyContext(seed=0, **ctx)).act(obs, np.arange(4))[2], a[0])
    with pytest.raises(ConfigError, match="own fleet"):
        ExpertPolicy(PolicyContext(seed=5, **ctx)).act(obs, np.arange(4))  # other profiles than the run
    with pytest.raises(ConfigError, match="unknown option"):
        ExpertPolicy(PolicyContext(seed=0, **{**ctx, "options": {"horizon": 4}}))


def test_write_demonstrations_records_the_env_observations(tmp_path):
    from agents.env import EnvConfig, P2PEnv

    cfg = EnvConfig(max_prosumers=4, grid_model="lindistflow")
    path = tmp_path / "demo.npz"
    meta = write_demonstrations(path, [DEFAULT_TEST_DAY], cfg, options={"fine_hours": 1})
    arrays, saved = load_demonstrations(path)
    assert arrays["obs"].shape == (96, 4, len(saved["obs_fields"])) and arrays["actions"].shape == (96, 4, 6)
    assert saved["dates"] == [DEFAULT_TEST_DAY] and saved == meta
    env = P2PEnv(cfg)  # replaying the saved actions reproduces the saved observations and costs
    obs = env.reset_batch(day=DEFAULT_TEST_DAY)
    for t in range(96):
        np.testing.assert_allclose(arrays["obs"][t], obs, rtol=1e-6, atol=1e-6)
        obs, _, _, info = env.step_batch(arrays["actions"][t].astype(float))
        np.testing.assert_allclose(arrays["cost_eur"][t], info["cost_eur"], rtol=1e-4, atol=1e-5)
