"""Generated experts at run time: accepted code rebuilt per state in one jailed worker, coupled like the reference.

The reference model written as generated code (agents/llm/reference_code.py) goes through the
jailed worker; the parent rebuilds its cvxpy pieces from the problem data, and the joint
problem (agents/expert/joint.py ``couple``) must give the same optimum and the same actions as
with the in-process reference, step after step, without the code ever being compiled here.
"""

import builtins
import warnings

import numpy as np
import pytest

from agents.expert.joint import couple
from agents.expert.reference import ACTION_KEYS, build_reference, make_state
from agents.llm.checker import static_check
from agents.llm.reference_code import reference_code
from agents.llm.verification import make_test_states, verify
from agents.llm.worker import GeneratedFleet
from simulators.grid.networks import make_network
from simulators.market.tariffs import make_tariff
from simulators.profiles.data import (
    DEFAULT_TEST_DAY,
    ProfileBank,
    assign_profiles,
    prosumer_days,
)
from simulators.prosumer.spec import load_specs
from simulators.scenario import DATA_DIR

SPECS = load_specs(DATA_DIR / "ieee33_prosumers.json")
BY_NAME = {s.name: s for s in SPECS}
NAMES = ("p000", "p001", "p006", "p019", "p026")
"""PV, battery, generator, controllable load; p001 with a preference"""
TARIFF = make_tariff("tou")


@pytest.fixture(scope="module")
def day():
    bank = ProfileBank.simbench()
    return prosumer_days(bank, SPECS, assign_profiles(SPECS, 0, bank), DEFAULT_TEST_DAY)


@pytest.fixture
def no_prosumer_code_here(monkeypatch):
    """Fail if generated code were compiled in this process (the sandbox child compiles it as '<prosumer>')."""
    real = builtins.compile

    def guarded(source, filename, *args, **kwargs):
        assert filename != "<prosumer>", "generated code compiled in the main process"
        return real(source, filename, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", guarded)


def _states(specs, day, t):
    out = []
    for s in specs:
        j = SPECS.index(s)
        out.append(make_state(s, t, day.load_kw[:96, j], day.pv_avail_kw[:96, j], TARIFF.buy_eur_per_kwh,
                              TARIFF.sell_eur_per_kwh, soc_kwh=[0.4 * b.capacity_kwh for b in s.batteries],
                              gen_last_kw=[0.3 * g.p_max_kw for g in s.generators],
                              cl_remaining_kwh=[0.5 * c.energy_kwh for c in s.controllable_loads]))
    return out


def _couple(tuples, specs, day, t, fixed=None):
    """Solve the joint problem of ``tuples``; ``fixed``: {(name, key): values} imposed on the actions."""
    cols = [SPECS.index(s) for s in specs]
    problem, _ = couple(tuples, specs, make_network("ieee33"), day.load_kvar[t:96, cols])
    keys = [(s.name, key.format(i=i)) for s in specs for kind, key in ACTION_KEYS.items()
            for i in range(1, len(getattr(s, kind)) + 1)]
    if fixed:
        extra = [tup[0][key] == fixed[(s.name, key)] for s, tup in zip(specs, tuples) for name, key in keys
                 if name == s.name]
        problem = type(problem)(problem.objective, problem.constraints + extra)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(CPP backend|may be inaccurate).*")
        problem.solve(solver="CLARABEL")
    assert problem.status == "optimal"
    values = {(s.name, key): np.asarray(tup[0][key].value, float) for s, tup in zip(specs, tuples)
              for name, key in keys if name == s.name}
    return problem.value, values


def test_reference_code_passes_the_static_check_and_the_verification():
    spec = BY_NAME["p001"]
    code = reference_code(spec)
    assert static_check(code) == []
    result = verify(code, spec, make_test_states([spec], n=2)[spec.name])
    assert result["accepted"] and result["max_abs_gap"] < 1e-5, result["reasons"]


def test_generated_experts_through_the_worker_couple_like_the_reference(day, no_prosumer_code_here):
    """Same joint optimum, step after step; and the worker's actions are optimal actions of the
    in-process reference's joint problem (and back).  The joint optimum is not unique (P2P splits,
    interchangeable batteries), so the actions are compared by imposing them, not entry by entry."""
    specs = [BY_NAME[n] for n in NAMES]
    references = [build_reference(s) for s in specs]
    with GeneratedFleet({s.name: reference_code(s) for s in specs}, specs) as fleet:
        assert fleet.worker.jail["available"] and fleet.worker.enforced["seccomp"]
        pid = fleet.worker.proc.pid
        for t in (80, 81, 90):  # one long-lived worker rebuilds the data for every new state
            states = _states(specs, day, t)
            ref = [r(st) for r, st in zip(references, states)]
            gen = [fleet[s.name](st) for s, st in zip(specs, states)]
            best, ref_actions = _couple(ref, specs, day, t)
            value, gen_actions = _couple(gen, specs, day, t)
            assert value == pytest.approx(best, rel=1e-6, abs=1e-6)
            ref = [r(st) for r, st in zip(references, states)]
            assert _couple(ref, specs, day, t, fixed=gen_actions)[0] == pytest.approx(best, rel=1e-5, abs=1e-5)
            gen = [fleet[s.name](st) for s, st in zip(specs, states)]
            assert _couple(gen, specs, day, t, fixed=ref_actions)[0] == pytest.approx(best, rel=1e-5, abs=1e-5)
        assert fleet.worker.proc.pid == pid and fleet.worker.proc.poll() is None
        assert len(fleet["p006"].build_s) == 6
