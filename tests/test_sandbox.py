"""The sandbox runs a well-formed prosumer model in the jail and judges it in the parent; limits hold.

The hostile samples are in test_hostile.py; this file checks the honest path, the limits, the
jail's facts, and what happens on a machine without the jail.
"""

import os
import textwrap

import numpy as np
import pytest

from agents.llm import jail
from agents.llm.checker import static_check
from agents.llm.sandbox import Limits, run_prosumer
from agents.llm.worker import Worker

GOOD = textwrap.dedent('''
    import cvxpy as cp
    import numpy as np

    def prosumer(state):
        T = state["horizon"]
        pv = cp.Variable(T, nonneg=True)
        p_b = cp.Variable(T, nonneg=True)
        p_s = cp.Variable(T, nonneg=True)
        p_p2p = cp.Variable(T)
        constraints = [pv <= state["pv_avail_kw"], state["load_kw"] - pv - p_b + p_s - p_p2p == 0]
        objective = state["dt_h"] * cp.sum(cp.multiply(state["tariff_buy"], p_b)
                                           - cp.multiply(state["tariff_sell"], p_s))
        print("built", T)
        return {"pv0_kw": pv}, objective, constraints, p_s - p_b - p_p2p, 0 * p_b, p_p2p
''')


def state(t=0):
    h = 96 - t
    return {"time": t, "horizon": h, "load_kw": np.full(h, 3.0), "pv_avail_kw": np.linspace(0.0, 5.0, h),
            "tariff_buy": np.full(h, 0.30), "tariff_sell": np.full(h, 0.05), "soc_kwh": [], "gen_last_kw": [],
            "cl_remaining_kwh": [], "dt_h": 0.25}


def wrap(body):
    """A prosumer function whose body is ``body`` (so only the hostile part differs)."""
    return "import numpy as np\nimport cvxpy as cp\n\ndef prosumer(state):\n" + textwrap.indent(
        textwrap.dedent(body), "    ") + "\n    return None\n"


def test_good_code_is_built_in_the_jail_and_solved_by_the_parent():
    assert static_check(GOOD) == []
    result = run_prosumer(GOOD, [state(0), state(60)])
    assert result.ok, result.reasons
    load, pv = 3.0, np.linspace(0.0, 5.0, 96)
    golden = 0.25 * (0.30 * np.maximum(load - pv, 0).sum() - 0.05 * np.maximum(pv - load, 0).sum())
    first = result.states[0]
    assert first["status"] == "optimal" and first["objective"] == pytest.approx(golden, rel=1e-4)
    assert len(first["actions"]["pv0_kw"]) == 96 and len(result.states[1]["p_ex"]) == 36
    assert np.allclose(first["p_p2p"], 0.0, atol=1e-6)  # stand-alone: the parent fixes p_p2p = 0
    assert "built 96" in result.printed
    e = result.enforced
    assert e["jailed"] and e["seccomp"] and e["fsize"] == 0 and e["nproc"] == 0
    assert e["open_fds"] == [0, 1, 2, 3] and e["nofile"] == 4  # nothing new can be opened
    assert e["uid"] == jail.JAIL_UID and e["pid"] == 2  # own user and PID namespaces
    if os.geteuid() == 0:  # a fresh host uid, far from root and from every user of the machine
        assert jail.FRESH_ID_RANGE[0] <= e["host_uid"] <= jail.FRESH_ID_RANGE[1]


def test_one_worker_serves_many_states_and_prosumers():
    other = GOOD.replace('objective = state', 'objective = 0.5 * state')
    with Worker({"a": GOOD, "b": other, "bad": wrap("x = 1")}) as worker:
        first = worker.build("a", state(0)).solve()
        again = worker.build("a", state(0)).solve()
        cheaper = worker.build("b", state(0)).solve()
        with pytest.raises(Exception, match="6-tuple"):
            worker.build("bad", state(0))
        later = worker.build("a", state(40)).solve()  # the worker survives a rejected model
    assert first["objective"] == pytest.approx(again["objective"], rel=1e-9)
    assert cheaper["objective"] < first["objective"] and later["status"] == "optimal"


def test_infinite_loop_is_killed_by_the_cpu_limit():
    code = wrap("x = 0\nwhile x >= 0:\n    x += 1")
    assert static_check(code) == []
    result = run_prosumer(code, [state()], limits=Limits(cpu_s=1, wall_s=30))
    assert not result.ok and "CPU time limit" in result.reasons[0], result.reasons


def test_wall_clock_limit_kills_a_child_that_outlives_it():
    code = wrap("x = 0\nwhile x >= 0:\n    x += 1")
    result = run_prosumer(code, [state()], limits=Limits(cpu_s=60, wall_s=1.5))
    assert not result.ok and "wall-clock" in result.reasons[0]


def test_memory_bomb_fails_inside_the_address_space_limit():
    code = wrap("x = np.ones((30000, 30000))\ny = [0] * 10**10")
    result = run_prosumer(code, [state()], limits=Limits(memory_mb=256))
    assert not result.ok and "MemoryError" in result.reasons[0]


def test_huge_output_is_capped():
    code = wrap("for i in range(20000):\n    print('x' * 1000)\nx = [0][5]")
    result = run_prosumer(code, [state()])
    assert not result.ok and "IndexError" in result.reasons[0]
    assert len(result.printed) < 10_000 and len(result.reasons[0]) < 10_000


def test_without_the_jail_generated_code_is_refused_unless_allowed(monkeypatch, capsys):
    from agents.llm import workflow

    monkeypatch.setattr(jail, "status", lambda: {"available": False, "reasons": ["bubblewrap is not installed"],
                                                 "bwrap": None, "fresh_uid": False, "seccomp_bytes": 0})
    with pytest.raises(jail.JailUnavailable, match="bubblewrap is not installed.*allow_unjailed"):
        run_prosumer(GOOD, [state()])
    unjailed = run_prosumer(GOOD, [state()], allow_unjailed=True)
    assert unjailed.ok and not unjailed.enforced["jailed"]
    assert "WITHOUT the jail" in capsys.readouterr().err
    wf = workflow.ExpertWorkflow(backend=None, config=workflow.WorkflowConfig(use_cache=False), index=object())
    res = wf.run(_spec(), [state()])
    assert not res.accepted and res.source == "reference" and res.verdict("jail") == "fail"
    assert "refused" in res.verification["reasons"][0] and "WARNING" in capsys.readouterr().err
    from agents.llm.decomposed import DecomposedConfig, DecomposedWorkflow

    res = DecomposedWorkflow(None, DecomposedConfig(use_cache=False), [_spec()]).run(_spec(), [state()])
    assert not res.accepted and res.source == "reference" and res.verdict("jail") == "fail"
    assert "refused" in res.verification["reasons"][0] and "WARNING" in capsys.readouterr().err


def _spec():
    from simulators.prosumer.spec import spec_from_dict

    return spec_from_dict({"name": "x", "bus": 1, "load_peak_kw": 3.0})
