"""The LLM as the expert: generated prosumer models (here the reference written as generated code,
run in the jail) coupled by the parent plan and demonstrate like the in-process reference models."""

import numpy as np
import pytest

from agents.env import EnvConfig, make_scenario
from agents.expert.joint import day_start_state
from agents.expert.policy import load_demonstrations
from agents.llm.coupled import CoupledExpert, generated_models, write_generated_demonstrations
from agents.llm.reference_code import reference_code
from agents.llm.worker import GeneratedExpert
from simulators.profiles.data import ProfileBank, assign_profiles, prosumer_days

DAY = "2016-03-01"
"""a training day: demonstrations never touch test days"""
CFG = EnvConfig(max_prosumers=3, days=DAY)


@pytest.fixture(scope="module")
def scenario():
    specs, net, tariff = make_scenario(CFG)
    bank = ProfileBank.simbench()
    days = prosumer_days(bank, specs, assign_profiles(specs, 0, bank), [DAY])
    return specs, net, tariff, days


def test_generated_and_reference_models_plan_the_same(scenario):
    specs, net, tariff, days = scenario
    codes = {s.name: reference_code(s) for s in specs[:2]}  # the third prosumer falls back to the reference
    models, fleet = generated_models(specs, codes)
    try:
        generated = CoupledExpert(specs, tariff, net, models)
        reference = CoupledExpert(specs, tariff, net, generated_models(specs, {})[0])
        assert generated.sources() == {"generated": [s.name for s in specs[:2]], "reference": [specs[2].name],
                                       "runtime_fallbacks": {}}
        assert isinstance(models[specs[0].name], GeneratedExpert)
        in_worker, worker = generated_models(specs, codes, reference_in_worker=True)  # the third as code, same path
        try:
            assert isinstance(in_worker[specs[2].name], GeneratedExpert)
            assert CoupledExpert(specs, tariff, net, in_worker).sources() == generated.sources()
            t = 88
            args = (t, days.load_kw[t:96], days.load_kvar[t:96], days.pv_avail_kw[t:96], day_start_state(specs))
            assert CoupledExpert(specs, tariff, net, in_worker).plan(*args).objective_eur == pytest.approx(
                reference.plan(*args).objective_eur, rel=1e-5, abs=1e-4)
        finally:
            worker.close()
        state = day_start_state(specs)
        for t in (60, 88):
            args = (t, days.load_kw[t:96], days.load_kvar[t:96], days.pv_avail_kw[t:96], state)
            a, b = generated.plan(*args), reference.plan(*args)
            assert a.objective_eur == pytest.approx(b.objective_eur, rel=1e-5, abs=1e-4)
            for key in ("gen_kw", "cl_kw", "pv_kw", "curtail_kw"):
                np.testing.assert_allclose(a.setpoints[key], b.setpoints[key], atol=1e-2, err_msg=key)
            assert a.net_kw.shape == (96 - t, len(specs))
    finally:
        fleet.close()


def test_the_coupled_problem_is_not_compiled_for_re_solves(scenario, monkeypatch):
    """A fresh joint problem every step: DPP compilation with the reference models' Parameters
    needed more than 20 GB for 32 prosumers (the process was killed), so plan() must skip it."""
    import cvxpy as cp

    specs, net, tariff, days = scenario
    seen, solve = [], cp.Problem.solve
    monkeypatch.setattr(cp.Problem, "solve", lambda self, *a, **kw: seen.append(kw) or solve(self, *a, **kw))
    expert = CoupledExpert(specs, tariff, net, generated_models(specs, {})[0])
    t = 90
    expert.plan(t, days.load_kw[t:96], days.load_kvar[t:96], days.pv_avail_kw[t:96], day_start_state(specs))
    assert seen and all(kw.get("ignore_dpp") for kw in seen)


def test_a_model_rejected_at_run_time_falls_back_to_the_reference(scenario):
    specs, net, tariff, days = scenario
    liar = reference_code(specs[0]).replace("    return actions,", "    assert now < 70\n    return actions,")
    models, fleet = generated_models(specs[:1], {specs[0].name: liar})
    try:
        expert = CoupledExpert(specs[:1], tariff, net, models)
        state = day_start_state(specs[:1])
        expert.plan(60, days.load_kw[60:96, :1], days.load_kvar[60:96, :1], days.pv_avail_kw[60:96, :1], state)
        assert expert.sources()["runtime_fallbacks"] == {}
        expert.plan(80, days.load_kw[80:96, :1], days.load_kvar[80:96, :1], days.pv_avail_kw[80:96, :1], state)
        assert specs[0].name in expert.sources()["runtime_fallbacks"]
        assert "AssertionError" in expert.sources()["runtime_fallbacks"][specs[0].name]
    finally:
        fleet.close()


@pytest.mark.slow
def test_demonstrations_from_generated_reference_code_equal_the_reference_demos(tmp_path):
    """A day of demonstrations (about 80 s per run for 2 prosumers): the same costs; the same actions
    except the battery schedule, which is not unique within flat tariff periods."""
    cfg = EnvConfig(max_prosumers=2, days=DAY)
    specs, _, _ = make_scenario(cfg)
    gen = write_generated_demonstrations(tmp_path / "gen.npz", [DAY],
                                         {s.name: reference_code(s) for s in specs}, cfg)
    ref = write_generated_demonstrations(tmp_path / "ref.npz", [DAY], {}, cfg, reference_in_worker=False)
    assert gen["episodes"][0]["expert_sources"]["generated"] == [s.name for s in specs]
    assert ref["episodes"][0]["expert_sources"]["reference"] == [s.name for s in specs]
    assert gen["episodes"][0]["env_cost_eur"] == pytest.approx(ref["episodes"][0]["env_cost_eur"], rel=1e-5)
    a, meta = load_demonstrations(tmp_path / "gen.npz")
    b, _ = load_demonstrations(tmp_path / "ref.npz")
    others = [j for j, f in enumerate(meta["action_fields"]) if f != "battery"]
    np.testing.assert_allclose(a["actions"][..., others], b["actions"][..., others], atol=1e-3)


def test_demonstrations_are_refused_on_test_days():
    from scenarios import expert_workflow

    with pytest.raises(SystemExit, match="'2016-06-08' is a test day"):
        expert_workflow.main(["--demonstrations", "2016-03-01,2016-06-08", "--backend", "recorded"])
