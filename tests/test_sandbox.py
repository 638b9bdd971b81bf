"""The sandbox refuses hostile code with a clear reason and runs a well-formed prosumer model.

Static refusals spawn no process; the runtime samples use small limits to keep this file fast.
"""

import os
import socket
import textwrap

import numpy as np
import pytest

from agents.llm.sandbox import Limits, run_prosumer, static_check

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


HOSTILE = {
    "os.system": ("import os\n" + wrap("os.system('touch /tmp/owned')"), "import of 'os'"),
    "subprocess": ("import subprocess\n" + wrap("subprocess.run(['sh', '-c', 'id'])"), "import of 'subprocess'"),
    "open read": (wrap("data = open('/etc/passwd').read()"), "'open' is not allowed"),
    "open write": (wrap("open('/tmp/owned', 'w').write('x')"), "'open' is not allowed"),
    "pathlib write": ("from pathlib import Path\n" + wrap("Path('/tmp/owned').write_text('x')"),
                      "import from 'pathlib'"),
    "__import__": (wrap("__import__('os').system('id')"), "underscore"),
    "subclasses": (wrap("classes = ().__class__.__base__.__subclasses__()"), "'__class__'"),
    "getattr": (wrap("f = getattr(getattr(np, 'lib'), 'format')"), "'getattr' is not allowed"),
    "importlib": ("import importlib\n" + wrap("importlib.import_module('os')"), "import of 'importlib'"),
    "socket": ("import socket\n" + wrap("socket.create_connection(('127.0.0.1', 80))"), "import of 'socket'"),
    "module chain": (wrap("w = np.lib.npyio.DataSource"), "reaches module 'numpy.lib"),
    "numpy file io": (wrap("x = np.loadtxt('/etc/passwd')"), "'loadtxt' is not allowed"),
    "frame walk": (wrap("g = [x for x in [1]]\nh = (y for y in g).gi_frame.f_back.f_globals"),
                   "'gi_frame' is not allowed"),
    "while True": (wrap("while True:\n    pass"), "unbounded loop"),
    "solve inside": (wrap("cp.Problem(cp.Minimize(0)).solve()"), "the coordinator solves"),
    "class": ("class A:\n    pass\n" + wrap("a = A()"), "class definitions"),
    "eval": (wrap("eval('1+1')"), "'eval' is not allowed"),
    "dunder string": (wrap("name = '__class__'"), "'__'"),
    "module as value": (wrap("m = np\nw = m.lib.npyio"), "may only be used as np.<name>"),
    "array dump": (wrap("np.zeros(3).dump('/tmp/owned')"), "'dump' is not allowed"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_is_refused_before_running(name):
    code, expected = HOSTILE[name]
    reasons = static_check(code)
    assert any(expected in r for r in reasons), reasons
    result = run_prosumer(code, [state()])
    assert not result.ok and not result.states
    assert result.reasons[0].startswith("refused by the static check")


def test_good_code_passes_the_static_check_and_solves():
    assert static_check(GOOD) == []
    assert static_check(wrap("x = [0 for _ in range(3)]\ny = np.linalg.norm(np.ones(3))")) == []
    result = run_prosumer(GOOD, [state(0), state(60)])
    assert result.ok, result.reasons
    load, pv = 3.0, np.linspace(0.0, 5.0, 96)
    golden = 0.25 * (0.30 * np.maximum(load - pv, 0).sum() - 0.05 * np.maximum(pv - load, 0).sum())
    first = result.states[0]
    assert first["status"] == "optimal" and first["dcp"]
    assert first["objective"] == pytest.approx(golden, rel=1e-4)
    assert len(first["actions"]["pv0_kw"]) == 96 and len(result.states[1]["p_ex"]) == 36
    assert np.allclose(first["p_p2p"], 0.0, atol=1e-6)  # stand-alone: no P2P partner
    assert "built 96" in result.printed
    assert result.enforced["fsize"] == 0 and result.enforced["nproc"] == 0
    assert result.enforced["nofile"] <= 4 and result.enforced["socket_disabled"]


def test_infinite_loop_is_killed_by_the_cpu_limit():
    code = wrap("x = 0\nwhile x >= 0:\n    x += 1")
    assert static_check(code) == []
    result = run_prosumer(code, [state()], limits=Limits(cpu_s=1, wall_s=8))
    assert not result.ok and "killed" in result.reasons[0]
    assert result.seconds < 8


def test_wall_clock_limit_kills_a_child_that_outlives_it():
    code = wrap("x = 0\nwhile x >= 0:\n    x += 1")
    result = run_prosumer(code, [state()], limits=Limits(cpu_s=30, wall_s=1.5))
    assert not result.ok and "wall-clock" in result.reasons[0]


def test_memory_bomb_fails_inside_the_address_space_limit():
    code = wrap("x = np.ones((30000, 30000))\ny = [0] * 10**10")
    result = run_prosumer(code, [state()], limits=Limits(memory_mb=256))
    assert not result.ok
    assert "MemoryError" in result.reasons[0]


def test_huge_output_is_capped():
    code = wrap("for i in range(20000):\n    print('x' * 1000)\nraise ValueError('y' * 10**6)")
    result = run_prosumer(code, [state()])
    assert not result.ok and "ValueError" in result.reasons[0]
    assert len(result.printed) < 10_000 and len(result.reasons[0]) < 10_000


def test_second_layer_holds_without_the_static_check(tmp_path):
    """Even with the static check skipped, no file, process or socket can be made."""
    os.chmod(tmp_path, 0o777)
    marker = tmp_path / "owned"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.3)
    port = server.getsockname()[1]
    code = wrap(f'''
        errors = []
        for c in ().__class__.__base__.__subclasses__():
            if c.__name__ == "_wrap_close":
                g = c.__init__.__globals__
                errors.append(g["system"]("touch {marker}"))
                try:
                    g["open"]("{marker}", g["O_CREAT"] | g["O_WRONLY"])
                except Exception as exc:
                    errors.append(str(exc))
            if c.__name__ == "socket" and c.__module__ == "_socket":
                try:
                    c().connect(("127.0.0.1", {port}))
                except Exception as exc:
                    errors.append(str(exc))
        print(errors)
        import os
    ''')
    result = run_prosumer(code, [state()], check=False)
    assert not marker.exists()
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()
    assert "import of 'os' is not allowed" in result.reasons[0]
    assert "Too many open files" in result.printed
    for builtin_call in ("open('/etc/hostname').read()", "eval('1')", "getattr(np, 'pi')"):
        blocked = run_prosumer(wrap(f"x = {builtin_call}"), [state()], check=False)
        assert "NameError" in blocked.reasons[0]
