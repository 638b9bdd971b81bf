"""Child side of the sandbox: run untrusted prosumer code on test states, print plain JSON.

Started by agents/llm/sandbox.py as ``python -I sandbox_child.py`` (isolated mode: no
user site, no PYTHON* variables, no script folder on sys.path) in an empty temporary folder.
It reads one JSON job from stdin, confines itself, executes the code, and writes one JSON
line, prefixed by RESULT_MARK, to the stdout file descriptor it saved before confining.

Confinement order (each step needs what the later ones forbid):
1. import numpy/cvxpy and solve a tiny problem, so no lazy import has to open a file later;
2. leave the network: a fresh network namespace (unshare) where the kernel allows it, and
   socket constructors replaced by a function that raises in any case;
3. drop root to nobody (65534) when started as root;
4. rlimits: CPU seconds, address space (imports + budget), FSIZE 0 (no file data written),
   NOFILE = highest open descriptor + 1 (no new file, socket or pipe can be opened),
   NPROC 0 (no fork, no thread);
5. exec the code with restricted builtins: no open/eval/exec/getattr/..., an ``__import__``
   that hands out only numpy and cvxpy, and a ``print`` that keeps at most a few kB.
This file only imports the standard library, numpy and cvxpy; it never imports the project.
"""

import ctypes
import io
import json
import os
import resource
import signal
import sys
import time
import traceback

RESULT_MARK = "@@SANDBOX-RESULT@@"
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
SAFE_BUILTINS = (
    "abs all any bool dict enumerate float int len list max min range round sorted str sum tuple zip "
    "isinstance map filter reversed set frozenset divmod pow slice repr "
    "Exception ValueError TypeError IndexError KeyError ZeroDivisionError ArithmeticError "
    "RuntimeError AssertionError NotImplementedError True False None"
).split()
TEXT_CAP = 4000
"""characters kept of printed output and of each error text"""


def _cap(text, n=TEXT_CAP):
    return text if len(text) <= n else text[: n // 2] + f"\n...[{len(text) - n} chars cut]...\n" + text[-n // 2:]


def _leave_network(enforced):
    """Enter a new, empty network namespace if the kernel lets us; always disarm socket()."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    enforced["net_namespace"] = libc.unshare(flags) == 0
    import socket

    def refused(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    for name in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
        setattr(socket, name, refused)
    enforced["socket_disabled"] = True


def _drop_root(enforced):
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    enforced["uid"] = os.geteuid()


def _limit(job, enforced):
    cpu = int(job["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    vm_kb = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0])
    address_space = vm_kb * 1024 + int(job["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    highest_fd = max(fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest_fd + 1, highest_fd + 1))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    enforced.update(cpu_s=cpu, address_space_mb=address_space >> 20, fsize=0, nofile=highest_fd + 1, nproc=0)


def _is_open(fd):
    """True for descriptors still open (the one listdir used for /proc/self/fd is closed by now)."""
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _builtins(printed):
    import builtins

    import cvxpy
    import numpy

    allowed = {"cvxpy": cvxpy, "numpy": numpy}
    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name not in allowed:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox (only numpy, cvxpy)")
        return allowed[name]

    def capped_print(*args, sep=" ", end="\n", **_):
        if printed.tell() < TEXT_CAP:
            printed.write(_cap(sep.join(str(a) for a in args) + end))

    safe.update(__import__=guarded_import, print=capped_print)
    return safe


def _values(expr):
    value = getattr(expr, "value", expr)
    if value is None:
        return None
    import numpy as np

    return np.atleast_1d(np.asarray(value, dtype=float)).ravel()[:1000].tolist()


def _structure(out, horizon):
    """Check the returned 6-tuple; returns a list of problems (empty if the contract holds)."""
    import cvxpy as cp

    if not isinstance(out, tuple) or len(out) != 6:
        size = len(out) if isinstance(out, (tuple, list, dict)) else "-"
        return [f"prosumer(state) must return a 6-tuple, got {type(out).__name__} of length {size}"]
    actions, objective, constraints, p_ex, q_ex, p_p2p = out
    problems = []
    if not isinstance(actions, dict):
        problems.append("actions must be a dict of cvxpy Variables by device name")
    else:
        for key, var in actions.items():
            if not isinstance(key, str) or not isinstance(var, cp.Expression):
                problems.append(f"actions[{key!r}] must be a cvxpy Variable/expression, got {type(var).__name__}")
            elif var.size not in (1, horizon):
                problems.append(f"actions[{key!r}] has shape {var.shape}, expected ({horizon},)")
    if isinstance(objective, (cp.Minimize, cp.Maximize)):
        problems.append("objective must be an expression, not wrapped in cp.Minimize/cp.Maximize")
    elif not isinstance(objective, cp.Expression) or objective.size != 1:
        problems.append(f"objective must be a scalar cvxpy expression, got {type(objective).__name__}")
    if not isinstance(constraints, list) or not all(isinstance(c, cp.constraints.constraint.Constraint)
                                                    for c in constraints):
        problems.append("constraints must be a list of cvxpy constraints")
    for name, expr in (("p_ex", p_ex), ("q_ex", q_ex), ("p_p2p", p_p2p)):
        if not isinstance(expr, cp.Expression) or expr.shape != (horizon,):
            shape = getattr(expr, "shape", type(expr).__name__)
            problems.append(f"{name} must be a cvxpy expression of shape ({horizon},), got {shape}")
    return problems


def _run_state(fn, state, job):
    """Build, check and solve the problem of one test state; plain-data record."""
    import cvxpy as cp
    import numpy as np

    rec = {"time": state["time"], "status": None, "error": None}
    arg = {k: (np.array(v, dtype=float) if isinstance(v, list) and k not in job["list_keys"] else v)
           for k, v in state.items()}
    try:
        t0 = time.process_time()
        out = fn(arg)
        rec["build_s"] = time.process_time() - t0
        rec["structure"] = _structure(out, int(state["horizon"]))
        if rec["structure"]:
            rec["status"] = "bad_structure"
            return rec
        actions, objective, constraints, p_ex, q_ex, p_p2p = out
        # the coordinator's side, stand-alone: no P2P partner, so the P2P quantity is fixed at 0
        extra = [p_p2p == 0] if job["fix_p2p"] else []
        problem = cp.Problem(cp.Minimize(objective), constraints + extra)
        rec["dcp"] = bool(problem.is_dcp())
        if not rec["dcp"]:
            rec["status"] = "not_dcp"
            rec["error"] = "the problem is not DCP (Disciplined Convex Programming); check each product and atom"
            return rec
        problem.solve(solver=job["solver"])
        rec["status"] = problem.status
        rec["objective"] = None if problem.value is None else float(problem.value)
        rec["actions"] = {str(k): _values(v) for k, v in actions.items()}
        rec.update(p_ex=_values(p_ex), q_ex=_values(q_ex), p_p2p=_values(p_p2p))
    except BaseException as exc:
        rec["status"] = "error"
        rec["error"] = _cap(_traceback_text(exc, job["code"]))
    return rec


def _traceback_text(exc, code):
    """Traceback limited to the generated code's frames (file '<prosumer>') plus the message."""
    source = code.splitlines()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<prosumer>"]
    lines = [f"line {f.lineno}: {source[f.lineno - 1].strip() if 0 < f.lineno <= len(source) else ''}"
             for f in frames[-3:]]
    return "\n".join(lines + [f"{type(exc).__name__}: {exc}"])


def main():
    job = json.loads(sys.stdin.read())
    result_out = sys.stdout
    enforced = {}
    import cvxpy as cp
    import numpy  # noqa: F401  (imported before the limits)

    x = cp.Variable(2)
    cp.Problem(cp.Minimize(cp.sum_squares(x) + cp.sum(cp.pos(x))), [x >= -1]).solve(solver=job["solver"])
    _leave_network(enforced)
    _drop_root(enforced)
    _limit(job, enforced)
    printed = io.StringIO()
    sys.stdout = sys.stderr = printed
    result = {"enforced": enforced, "load_error": None, "states": []}
    scope = {"__builtins__": _builtins(printed), "__name__": "prosumer_module"}
    try:
        exec(compile(job["code"], "<prosumer>", "exec"), scope)
        fn = scope.get("prosumer")
        if not callable(fn):
            raise NameError("the code does not define a function prosumer(state)")
    except BaseException as exc:
        result["load_error"] = _cap(_traceback_text(exc, job["code"]))
    else:
        result["states"] = [_run_state(fn, s, job) for s in job["states"]]
    result["printed"] = _cap(printed.getvalue())
    result_out.write(RESULT_MARK + json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
