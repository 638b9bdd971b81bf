"""Hostile samples (tests/hostile_samples.py): every family is stopped, by the layer named, and the host is unchanged.

Default run: the static samples without any process, the jail samples batched in one jailed
worker (next to a second, innocent worker they must not reach), the breaking and forged
samples in their own children, the garbled frames against the parent's parser directly.
``-m slow`` also runs every jail sample in a child of its own.
"""

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hostile_samples import BREAKING, FORGED, FORGED_ALONE, FORGED_FRAME, JAILED, STATIC
from test_sandbox import GOOD, state

from agents.llm import jail
from agents.llm.checker import static_check
from agents.llm.problem_data import MAGIC, ProblemData, Rejected, read_frame
from agents.llm.sandbox import judge, run_prosumer
from agents.llm.verification import check_limits, verify
from agents.llm.worker import Worker

SECRET = "p2p-secret-7f3a"


def _snapshot(*folders):
    """{path: (mode, size, mtime)} of everything under ``folders`` (what the samples must not change),
    plus the top level of the base Python installation the jail sees."""
    out = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    for env in {sys.base_prefix, os.path.dirname(os.__file__)}:  # not the venv: pip may run beside us
        for entry in os.scandir(env):
            st = entry.stat(follow_symlinks=False)
            out[entry.path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A world-writable folder with a victim and a secret file, TCP and AF_UNIX listeners, a sleeper."""
    tmp = tmp_path_factory.mktemp("hostile")
    os.chmod(tmp, 0o777)
    (tmp / "victim").write_text("intact")
    (tmp / "secret").write_text(SECRET)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.settimeout(0.2)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp / "listener.sock"))
    os.chmod(tmp / "listener.sock", 0o777)
    unix.listen(4)
    unix.settimeout(0.2)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    stage = next(d for d in jail.STAGE_DIRS if os.path.isdir(d))
    work, home = tmp_path_factory.mktemp("cwd"), os.getcwd()
    os.chdir(work)  # the working directory of every run of this module: it must stay empty
    watched = [str(tmp), str(work), stage]
    info = {"tmp": str(tmp), "victim": str(tmp / "victim"), "secret": str(tmp / "secret"),
            "port": tcp.getsockname()[1], "unix": str(tmp / "listener.sock"), "pid": sleeper.pid,
            "watched": watched, "before": _snapshot(*watched), "tcp": tcp, "unix_sock": unix, "sleeper": sleeper}
    yield info
    os.chdir(home)
    sleeper.kill()
    sleeper.wait()
    tcp.close()
    unix.close()


def _fill(code, host):
    for key in ("tmp", "victim", "secret", "port", "unix", "pid"):
        code = code.replace("{" + key + "}", str(host[key]))
    return code


def _out_line(printed):
    lines = [line for line in printed.splitlines() if line.startswith("OUT ")]
    return lines[-1] if lines else f"(no OUT line in {printed[-300:]!r})"


def test_the_suite_has_at_least_60_named_samples():
    assert len(STATIC) + len(JAILED) + len(BREAKING) + len(FORGED) + len(FORGED_ALONE) + 1 + len(FRAMES) >= 60


# ---- layer 1: the allowlist ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_check_refuses_before_any_process_starts(name):
    code, expected = STATIC[name]
    reasons = static_check(code)
    assert any(expected in r for r in reasons), reasons
    result = run_prosumer(code, [state()])
    assert not result.ok and not result.states and not result.enforced  # no child was started
    assert result.reasons[0].startswith("refused by the static check")


# ---- layer 2: the jail on its own --------------------------------------------------------------------
def test_the_jail_holds_every_sample_without_the_static_check(host):
    innocent = Worker({"good": GOOD})  # another sandbox the samples must not reach
    codes = {name: _fill(code, host) for name, (code, _, _) in JAILED.items()}
    with Worker(codes, check=False) as hostile:
        assert hostile.load_errors == {}
        outcomes = {}
        for name in JAILED:
            with pytest.raises(Rejected, match="6-tuple"):
                hostile.build(name, state())
            outcomes[name] = _out_line(hostile.printed[-1])
    bad = {n: (JAILED[n][1], o) for n, o in outcomes.items() if not re.search(JAILED[n][2], o)}
    assert not bad, bad
    assert all(SECRET not in o for o in outcomes.values())
    assert innocent.build("good", state()).solve()["status"] == "optimal"  # still alive, still right
    innocent.close()
    _assert_host_untouched(host)


def _assert_host_untouched(host):
    for listener in (host["tcp"], host["unix_sock"]):
        with pytest.raises(socket.timeout):
            listener.accept()
    assert host["sleeper"].poll() is None  # no signal reached it
    assert Path(host["victim"]).read_text() == "intact"


@pytest.mark.parametrize("name", sorted(BREAKING))
def test_a_child_that_breaks_itself_is_a_rejection_with_a_reason(name, host):
    code, layer, expected = BREAKING[name]
    result = run_prosumer(_fill(code, host), [state()], check=False)
    assert not result.ok and any(re.search(expected, r) for r in result.reasons), (layer, result.reasons)
    assert SECRET not in result.printed and "OUT DONE" not in result.printed


# ---- layer 3: the parent's own solve ----------------------------------------------------------------
def test_forged_results_are_rejected_by_the_parents_solve():
    for name, (code, passes_static, _) in FORGED.items():
        assert (static_check(code) == []) == passes_static, (name, static_check(code))
    with Worker({n: c for n, (c, _, _) in FORGED.items()}, check=False) as worker:
        verdicts = {}
        for name in FORGED:
            reasons = []
            rec = judge(worker, name, state(), reasons=reasons)
            verdicts[name] = (rec["status"], reasons)
    bad = {n: v for n, v in verdicts.items() if not any(re.search(FORGED[n][2], r) for r in v[1])}
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(FORGED_ALONE))
def test_a_child_that_sabotages_its_replies_is_rejected(name):
    code, passes_static, expected = FORGED_ALONE[name]
    assert (static_check(code) == []) == passes_static
    result = run_prosumer(code, [state()], check=False)
    assert not result.ok and any(re.search(expected, r) for r in result.reasons), result.reasons


def test_a_well_formed_forged_frame_is_solved_and_judged_by_the_parent():
    """Code that writes a complete frame of its own invention: the parent takes it as data, solves it,
    and the verification's checks of that solution (here the power balance) reject it."""
    from simulators.prosumer.spec import spec_from_dict

    spec = spec_from_dict({"name": "pv", "bus": 1, "load_peak_kw": 3.0, "pv": [{"kwp": 5.0}]})
    assert not verify(FORGED_FRAME, spec, [state()], references=[1.0])["accepted"]  # static check first
    result = run_prosumer(FORGED_FRAME, [state()], check=False)
    rec = result.states[0]
    assert result.ok and rec["objective"] == pytest.approx(6.0)  # the parent's solve of the forged data
    assert any("power balance" in r for r in check_limits(spec, state(), rec))


def _frame(header, arrays, counts=None, extra=b""):
    """A frame as the child writes it; ``counts`` overrides the sizes it declares, ``extra`` pads its data."""
    header = dict(header, arrays=[[k, v.dtype.str, int((counts or {}).get(k, v.size))] for k, v in arrays.items()])
    head = json.dumps(header).encode()
    blob = b"".join(v.tobytes() for v in arrays.values()) + extra
    return MAGIC + struct.pack("<QQ", len(head), len(blob)) + head + blob


T = 2
N = 4 * T
BASE = {"kind": "state", "name": "candidate", "time": 94, "error": None, "offset": 0.0, "bounds": False,
        "dims": {"zero": N, "nonneg": 0, "soc": [], "exp": 0, "psd": [], "power": 0}, "shape": [N, N],
        "columns": {"action:P_RDG1": [0, T], "p_ex": [T, T], "q_ex": [2 * T, T], "p_p2p": [3 * T, T]}}
ARRAYS = {"A_indptr": np.arange(N + 1), "A_indices": np.arange(N), "A_data": np.ones(N),
          "P_indptr": np.zeros(N + 1, dtype=np.int64), "P_indices": np.zeros(0, dtype=np.int64),
          "P_data": np.zeros(0), "c": np.zeros(N), "b": np.zeros(N)}


def _with(header=None, **arrays):
    return _frame({**BASE, **(header or {})}, {**ARRAYS, **arrays})


def _quad(p):
    """P arrays of a dense (N, N) matrix."""
    csc = sp.csc_matrix(p)
    return {"P_indptr": csc.indptr.astype(np.int64), "P_indices": csc.indices.astype(np.int64),
            "P_data": csc.data.astype(float)}


FRAMES = {  # garbled or lying replies -> the reason the parent gives
    "wrong marker": (_with().replace(MAGIC, b"XXXXXXXX", 1), "no frame marker"),
    "truncated": (_with()[:60], "closed the result channel"),
    "header beyond the cap": (MAGIC + struct.pack("<QQ", 1 << 40, 0), "exceeds the caps"),
    "header not JSON": (MAGIC + struct.pack("<QQ", 3, 0) + b"{x}", "garbled reply header"),
    "header nested 100000 deep": (MAGIC + struct.pack("<QQ", 100000, 0) + b"[" * 100000, "garbled reply header"),
    "header not an object": (MAGIC + struct.pack("<QQ", 2, 0) + b"[]", "not an object"),
    "array list lies about sizes": (_frame(BASE, ARRAYS, counts={"c": N + 100}), "runs past the data"),
    "bytes left over": (_frame(BASE, ARRAYS, extra=bytes(8)), "data left over"),
    "object dtype": (_frame(BASE, {**ARRAYS, "c": np.zeros(N).astype("<U1")}), "bad array description"),
    "column pointers": (_with(A_indptr=np.arange(N + 1)[::-1].copy()), "inconsistent column pointers"),
    "row index out of range": (_with(A_indices=np.arange(N) + 5), "row index out of range"),
    "NaN in A": (_with(A_data=np.full(N, np.nan)), "NaN or infinite"),
    "cone sizes": (_with({"dims": {**BASE["dims"], "zero": N - 1}}), "cone sizes add up"),
    "column out of range": (_with({"columns": {**BASE["columns"], "p_ex": [N, T]}}), "columns of"),
    "wrong horizon": (_with({"columns": {**BASE["columns"], "p_ex": [T, T - 1]}}), "expected 2"),
    "no p_p2p": (_with({"columns": {k: v for k, v in BASE["columns"].items() if k != "p_p2p"}}), "lacks"),
    "P not symmetric": (_with(**_quad(np.triu(np.ones((N, N))))), "not symmetric"),
    "P negative": (_with(**_quad(-np.eye(N))), "not convex"),
    "P indefinite": (_with(**_quad(np.eye(N)[[1, 0] + list(range(2, N))] * (np.arange(N) < 2))),
                     "not convex \\(eigenvalue"),
    "exponential cones": (_with({"dims": {**BASE["dims"], "exp": 1}}), "exponential"),
    "too many variables": (_with({"shape": [N, 150_000]}), "variables \\(at most"),
    "child-reported error": (_with({"error": "Traceback: x"}), "Traceback: x"),
    "time not an integer": (_with({"time": "94; rm -rf /"}), "time"),
}


def _parse(data):
    """read_frame + ProblemData.from_frame of ``data`` written by a thread into a pipe."""
    read, write = os.pipe()

    def feed():
        try:
            with os.fdopen(write, "wb") as out:
                out.write(data)
        except BrokenPipeError:  # the parser stopped reading early, as it should
            pass

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        return ProblemData.from_frame(*read_frame(read, deadline=time.monotonic() + 5), T)
    finally:
        os.close(read)
        writer.join()


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_garbled_replies_are_rejections_never_exceptions(name):
    data, expected = FRAMES[name]
    with pytest.raises(Rejected) as info:
        _parse(data)
    assert re.search(expected, str(info.value)), str(info.value)


def test_the_valid_base_frame_is_accepted():
    assert _parse(_with()).solve()["status"] == "optimal"


def test_zz_the_host_is_unchanged_after_the_suite(host):
    assert _snapshot(*host["watched"]) == host["before"]
    _assert_host_untouched(host)


# ---- slow: every jail sample in a child of its own ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JAILED))
def test_each_jail_sample_alone(name, host):
    code, layer, pattern = JAILED[name]
    result = run_prosumer(_fill(code, host), [state()], check=False)
    assert not result.ok and re.search(pattern, _out_line(result.printed)), (layer, result.printed[-500:])
    _assert_host_untouched(host)
