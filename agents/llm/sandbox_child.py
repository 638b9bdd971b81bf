"""Child side of the sandbox: build prosumer models in the jail and hand back numeric problem data.

Started by agents/llm/worker.py as ``python -I -c <this file's text> <fd>`` inside the jail of
agents/llm/jail.py; it imports only the standard library, numpy and cvxpy, never the project.

Protocol.  stdin: JSON lines from the parent.  The first is the setup (``codes`` by name,
limits, the seccomp program as hex); every later one asks for one model:
``{"name": ..., "state": {...}}``.  Replies go to the inherited descriptor ``<fd>`` as frames:
MAGIC, two little-endian uint64 (header and blob length), a JSON header, the raw arrays it
lists.  One frame ``loaded`` after the setup, one frame per request.  A state frame carries
the conic form of the model that cvxpy's get_problem_data gives for Clarabel
(min ½xᵀPx + cᵀx + offset s.t. Ax + s = b, s in zero x nonneg x second-order cones) and, per
contract item (every action, p_ex, q_ex, p_p2p), the columns of x that hold it: the wrapper
adds a variable z == item for each.  Nothing here is believed by the parent: it validates the
data, solves it with its own solver and judges the solution (agents/llm/problem_data.py).
Untrusted code runs in this process too, so it could write anything to ``<fd>``; that is why
the frame carries data only.

Order of confinement (each step needs what the later ones forbid): imports and one warm-up
model (so cvxpy's lazy imports are done), rlimits (CPU per request, address space, FSIZE 0,
NOFILE at the open descriptors, NPROC 0, no core), the seccomp program (no execve, sockets,
file writes, signals, namespaces), then ``exec`` of each code with restricted builtins: no
open/eval/exec/getattr/..., an ``__import__`` that hands out only numpy and cvxpy, and a
``print`` that keeps a few kB.
"""

import ctypes
import io
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback

MAGIC = b"P2PDATA1"
SAFE_BUILTINS = (
    "abs all any bool dict enumerate float int len list max min range round sorted str sum tuple zip "
    "reversed set divmod pow slice repr "
    "Exception ValueError TypeError IndexError KeyError ZeroDivisionError ArithmeticError "
    "RuntimeError AssertionError NotImplementedError True False None"
).split()
LIST_KEYS = ("soc_kwh", "gen_last_kw", "cl_remaining_kwh")
"""state entries handed to the code as lists (the rest as numpy arrays)"""
TEXT_CAP = 4000
"""characters kept of printed output and of each error text"""


def _cap(text, n=TEXT_CAP):
    return text if len(text) <= n else text[: n // 2] + f"\n...[{len(text) - n} chars cut]...\n" + text[-n // 2:]


def _send(fd, header, arrays):
    """One frame: MAGIC, header length, blob length, JSON header, raw little-endian arrays."""
    blobs = [arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes() for arr in arrays.values()]
    header["arrays"] = [[name, arr.dtype.newbyteorder("<").str, int(arr.size)] for name, arr in arrays.items()]
    head = json.dumps(header).encode()
    data = MAGIC + struct.pack("<QQ", len(head), sum(map(len, blobs))) + head + b"".join(blobs)
    while data:
        data = data[os.write(fd, data):]


# ---- confinement ---------------------------------------------------------------------------
def _warm_up(cp, np):
    """Build the kinds of models prosumer code builds, so no import is left for later."""
    x = cp.Variable(4, nonneg=True)
    y = cp.Variable(4)
    cons = [cp.cumsum(x) <= 3, cp.abs(cp.diff(y)) <= 1, cp.norm(cp.hstack([x[0], y[0]])) <= 2,
            cp.SOC(cp.Constant(2.0), cp.vstack([x[1], y[1]])[:, 0]), cp.maximum(x, y) <= 5, cp.pos(y) <= 5]
    obj = cp.sum_squares(x) + cp.sum(cp.multiply(np.ones(4), y)) + cp.square(y[2]) + cp.quad_over_lin(x[3], 1)
    problem = cp.Problem(cp.Minimize(obj + cp.sum(cp.neg(y)) + cp.max(y) - cp.min(x)), cons + [y >= -4])
    problem.is_dcp()
    problem.get_problem_data(cp.CLARABEL)
    traceback.format_exception(ValueError("x"))


def _confine(setup):
    enforced = {}
    cpu = int(setup["lifetime_cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (min(int(setup["cpu_s"]), cpu), cpu))
    with open("/proc/self/status") as f:
        vm_kb = int(f.read().split("VmSize:")[1].split()[0])
    address_space = vm_kb * 1024 + int(setup["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    open_fds = [fd for fd in range(1024) if _is_open(fd)]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds[-1] + 1, open_fds[-1] + 1))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    enforced.update(uid=os.getuid(), pid=os.getpid(), cpu_s=int(setup["cpu_s"]), lifetime_cpu_s=cpu,
                    address_space_mb=address_space >> 20, fsize=0, nofile=open_fds[-1] + 1, open_fds=open_fds,
                    nproc=0)
    enforced["seccomp"] = _load_seccomp(bytes.fromhex(setup["seccomp"])) if setup.get("seccomp") else False
    return enforced


def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _load_seccomp(program):
    """Load the parent's BPF program (compiled by libseccomp) with prctl; True when it holds."""
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS (bwrap set it already)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "loading the seccomp filter failed")
    return True


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


# ---- models --------------------------------------------------------------------------------
def _traceback_text(exc, code):
    """Traceback limited to the generated code's frames (file '<prosumer>') plus the message."""
    source = code.splitlines()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<prosumer>"]
    lines = [f"line {f.lineno}: {source[f.lineno - 1].strip() if 0 < f.lineno <= len(source) else ''}"
             for f in frames[-3:]]
    return _cap("\n".join(lines + [f"{type(exc).__name__}: {exc}"]))


def _load(code, printed):
    scope = {"__builtins__": _builtins(printed), "__name__": "prosumer_module"}
    try:
        exec(compile(code, "<prosumer>", "exec"), scope)
        fn = scope.get("prosumer")
        if not callable(fn):
            raise NameError("the code does not define a function prosumer(state)")
        return fn, None
    except BaseException as exc:
        return None, _traceback_text(exc, code)


def _structure(out, horizon, cp):
    """Problems of the returned 6-tuple (empty list if the contract holds)."""
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


def _build(fn, req, code, cp, np):
    """(header, arrays) of one state: the conic data of the model, or an error."""
    state = req["state"]
    horizon = int(state["horizon"])
    head = {"kind": "state", "name": req["name"], "time": state["time"], "error": None}
    arg = {k: (np.array(v, dtype=float) if isinstance(v, list) and k not in LIST_KEYS else v)
           for k, v in state.items()}
    try:
        t0 = time.process_time()
        out = fn(arg)
        head["build_s"] = time.process_time() - t0
        problems = _structure(out, horizon, cp)
        if problems:
            head.update(error="; ".join(problems), stage="structure")
            return head, {}
        actions, objective, constraints, p_ex, q_ex, p_p2p = out
        items = [("action:" + k, v) for k, v in actions.items()] + [("p_ex", p_ex), ("q_ex", q_ex), ("p_p2p", p_p2p)]
        aux = [(key, cp.Variable(expr.shape), expr) for key, expr in items]
        problem = cp.Problem(cp.Minimize(objective), list(constraints) + [z == expr for _, z, expr in aux])
        if not problem.is_dcp():
            head.update(error="the problem is not DCP (Disciplined Convex Programming); check each product "
                              "and atom", stage="dcp")
            return head, {}
        data, chain, inverse = problem.get_problem_data(cp.CLARABEL)
        return _pack(head, data, chain, inverse, aux, np)
    except BaseException as exc:
        head.update(error=_traceback_text(exc, code), stage="error")
        return head, {}


def _pack(head, data, chain, inverse, aux, np):
    offsets = next(inv.var_offsets for red, inv in zip(chain.reductions, inverse)
                   if type(red).__name__ == "ConeMatrixStuffing")
    dims = data["dims"]
    head["dims"] = {"zero": int(dims.zero), "nonneg": int(dims.nonneg), "soc": [int(k) for k in dims.soc],
                    "exp": int(dims.exp), "psd": [int(k) for k in dims.psd],
                    "power": len(dims.p3d) + len(getattr(dims, "pnd", []))}
    head["offset"] = float(np.asarray(inverse[-1].inverse_data["offset"]).sum())
    head["bounds"] = data.get("lower_bounds") is not None or data.get("upper_bounds") is not None
    head["columns"] = {key: [int(offsets[z.id]), int(z.size)] for key, z, _ in aux}
    A = data["A"].tocsc()
    P = data["P"].tocsc() if data.get("P") is not None else type(A)((A.shape[1], A.shape[1]))  # an LP has no P
    arrays = {"A_indptr": A.indptr.astype(np.int64), "A_indices": A.indices.astype(np.int64),
              "A_data": A.data.astype(np.float64), "P_indptr": P.indptr.astype(np.int64),
              "P_indices": P.indices.astype(np.int64), "P_data": P.data.astype(np.float64),
              "c": np.asarray(data["c"], dtype=np.float64), "b": np.asarray(data["b"], dtype=np.float64)}
    head["shape"] = [int(A.shape[0]), int(A.shape[1])]
    return head, arrays


def _take(printed):
    text = printed.getvalue()
    printed.seek(0)
    printed.truncate()
    return _cap(text)


def main():
    out_fd = int(sys.argv[1])
    if out_fd != 3:  # the channel becomes descriptor 3, so NOFILE can stop at 4
        os.dup2(out_fd, 3)
        os.close(out_fd)
        out_fd = 3
    setup = json.loads(sys.stdin.readline())
    import cvxpy as cp
    import numpy as np

    _warm_up(cp, np)
    enforced = _confine(setup)
    printed = io.StringIO()
    sys.stdout = sys.stderr = printed
    loaded = {name: _load(code, printed) for name, code in setup["codes"].items()}
    _send(out_fd, {"kind": "loaded", "errors": {n: err for n, (_, err) in loaded.items()}, "enforced": enforced,
                   "printed": _take(printed)}, {})
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    for line in sys.stdin:
        req = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        budget = int(used.ru_utime + used.ru_stime) + int(setup["cpu_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (min(budget, hard), hard))  # the CPU seconds of this request
        fn, error = loaded.get(req["name"], (None, f"no code named {req['name']!r}"))
        if fn is None:
            head, arrays = {"kind": "state", "name": req["name"], "time": req["state"]["time"],
                            "error": "the code failed to load: " + str(error), "stage": "load"}, {}
        else:
            head, arrays = _build(fn, req, setup["codes"][req["name"]], cp, np)
        head["printed"] = _take(printed)
        _send(out_fd, head, arrays)


if __name__ == "__main__":
    main()
