"""Generated prosumer code is untrusted input: check it statically, run it in a confined child.

Two layers, each meant to hold on its own:

* ``static_check(code)`` walks the syntax tree and refuses, with one reason per finding:
  imports other than numpy/cvxpy (aliases np/cp), any name or attribute that starts with an
  underscore (dunders: ``().__class__.__base__.__subclasses__()``), the builtins that reach
  around a namespace (exec, eval, compile, open, getattr, setattr, delattr, globals, locals,
  vars, __import__, input, breakpoint, type, ...), names of system modules (os, sys,
  subprocess, socket, importlib, pathlib, ...), attribute chains from cp/np into any module but
  numpy.random/numpy.linalg, file and frame attributes (tofile, save, load*, f_globals,
  gi_frame, ...), ``.solve`` (the coordinator solves), classes, generators, ``with``,
  ``global``, and ``while True`` loops without a ``break``.
* ``run_prosumer(code, states)`` runs sandbox_child.py in a separate ``python -I`` process
  with a minimal environment in an empty temporary folder; the child confines itself (network
  namespace where possible, socket() disarmed, root dropped to nobody, RLIMIT_CPU/AS/FSIZE=0/
  NOFILE/NPROC, restricted builtins) and reports plain JSON. The parent reads at most a few
  hundred kB from the child's pipes and kills it at the wall-clock limit.

What this cannot do: it is not a kernel sandbox (no seccomp filter, no mount namespace), so a
bug in CPython, numpy or cvxpy that hands arbitrary code execution to the child would give
the child the rights of user ``nobody`` (of the calling user when not started as root), minus
new files, processes and sockets. The host never imports or executes the generated code.
"""

import ast
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
RESULT_MARK = "@@SANDBOX-RESULT@@"
ALLOWED_IMPORTS = {"cvxpy": "cp", "numpy": "np"}
ALLOWED_MODULES = {"cvxpy", "numpy", "numpy.random", "numpy.linalg"}
FORBIDDEN_NAMES = {
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "hasattr", "globals", "locals",
    "vars", "dir", "input", "breakpoint", "help", "exit", "quit", "type", "object", "memoryview",
    "super", "classmethod", "staticmethod", "property",
    "os", "sys", "subprocess", "socket", "importlib", "pathlib", "shutil", "ctypes", "builtins", "io",
    "signal", "resource", "multiprocessing", "threading", "pickle", "marshal",
}
FORBIDDEN_ATTRS = {
    "system", "popen", "spawn", "fork", "kill", "remove", "unlink", "rmdir", "rename", "chmod",
    "tofile", "tobytes", "dump", "dumps", "save", "savez", "savez_compressed", "savetxt", "load", "loadtxt", "fromfile",
    "genfromtxt", "memmap", "fromregex", "DataSource", "ctypes", "ctypeslib", "format", "format_map",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code", "cr_frame",
    "ag_frame", "tb_frame", "tb_next", "func_globals", "solve", "set_printoptions",
}
FORBIDDEN_NODES = {
    ast.ClassDef: "class definitions", ast.Yield: "generators (yield)", ast.YieldFrom: "generators",
    ast.Await: "async code", ast.AsyncFunctionDef: "async code", ast.AsyncFor: "async code",
    ast.AsyncWith: "async code", ast.With: "with-statements", ast.Global: "global",
    ast.Nonlocal: "nonlocal",
}
TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign)
MAX_CODE_CHARS = 50_000
PIPE_CAP = 400_000
"""bytes kept of each of the child's stdout and stderr; the rest is read and dropped"""


@dataclass
class Limits:
    """Resource limits of one sandbox run."""

    cpu_s: int = 20
    """CPU seconds of the child (RLIMIT_CPU; SIGXCPU kills it)"""
    wall_s: float = 40.0
    """wall-clock seconds before the parent kills the child"""
    memory_mb: int = 1024
    """address space the child may add on top of numpy+cvxpy (RLIMIT_AS)"""


@dataclass
class SandboxResult:
    """What came back from one run: only plain data."""

    ok: bool
    """static check passed, the code loaded, and every state solved to optimality"""
    reasons: list = field(default_factory=list)
    """why not ok, one clear sentence each (static findings, load error, kills, per-state errors)"""
    states: list = field(default_factory=list)
    """per test state: time, status, objective, dcp, structure, actions, p_ex, q_ex, p_p2p, error"""
    enforced: dict = field(default_factory=dict)
    """the confinement the child reported (uid, rlimits, net namespace)"""
    printed: str = ""
    seconds: float = 0.0

    def to_dict(self):
        return asdict(self)


# ---- static check -----------------------------------------------------------------------

def static_check(code):
    """Return a list of reasons to refuse ``code`` (empty list: it may run in the sandbox)."""
    if not isinstance(code, str) or not code.strip():
        return ["no code"]
    if len(code) > MAX_CODE_CHARS:
        return [f"code is {len(code)} characters, more than the {MAX_CODE_CHARS} allowed"]
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"syntax error at line {exc.lineno}: {exc.msg}"]
    reasons = []
    for node in tree.body:
        if not (isinstance(node, TOP_LEVEL) or _is_docstring(node)):
            reasons.append(f"line {node.lineno}: top-level {type(node).__name__} not allowed; "
                           "put the code inside prosumer(state)")
    aliases = {}
    for node in ast.walk(tree):
        reasons += _check_node(node, aliases)
    reasons += _module_values(tree, aliases)
    if not any(isinstance(n, ast.FunctionDef) and n.name == "prosumer" for n in tree.body):
        reasons.append("no top-level function prosumer(state)")
    return list(dict.fromkeys(reasons))


def _module_values(tree, aliases):
    """np/cp may only appear as ``np.name``: a module passed around as a value (``m = np``,
    ``f(np)``) would let later attribute chains escape the module check."""
    roots = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return [f"line {n.lineno}: the module {n.id!r} may only be used as {n.id}.<name>, not as a value"
            for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in aliases and id(n) not in roots]


def _is_docstring(node):
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _check_node(node, aliases):
    line = f"line {getattr(node, 'lineno', '?')}"
    for kind, what in FORBIDDEN_NODES.items():
        if isinstance(node, kind):
            return [f"{line}: {what} are not allowed"]
    if isinstance(node, ast.Import):
        return _check_import(node, aliases, line)
    if isinstance(node, ast.ImportFrom):
        return _check_import_from(node, line)
    if isinstance(node, ast.Name):
        if node.id.startswith("_") and node.id != "_":
            return [f"{line}: name {node.id!r} starts with an underscore (private/dunder names are not allowed)"]
        if node.id in FORBIDDEN_NAMES:
            return [f"{line}: {node.id!r} is not allowed (no system access, no introspection, no dynamic code)"]
    if isinstance(node, ast.Attribute):
        return _check_attribute(node, aliases, line)
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
        return [f"{line}: string constants may not contain '__' (dunder names)"]
    if isinstance(node, ast.While) and _always_true(node.test) and not _has_break(node):
        return [f"{line}: unbounded loop 'while True' without break"]
    if isinstance(node, (ast.FunctionDef, ast.Lambda)):
        args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        bad = [a.arg for a in args if a.arg.startswith("_") and a.arg != "_"]
        if bad or getattr(node, "name", "x").startswith("_"):
            return [f"{line}: names starting with an underscore are not allowed"]
    return []


def _check_import(node, aliases, line):
    reasons = []
    for alias in node.names:
        expected = ALLOWED_IMPORTS.get(alias.name)
        if expected is None:
            reasons.append(f"{line}: import of {alias.name!r} is not allowed (only numpy as np, cvxpy as cp)")
        elif alias.asname not in (None, expected):
            reasons.append(f"{line}: import {alias.name} as {alias.asname}: use the alias {expected!r}")
        else:
            aliases[alias.asname or alias.name] = alias.name
    return reasons


def _check_import_from(node, line):
    if node.level or node.module not in ALLOWED_IMPORTS:
        return [f"{line}: import from {node.module!r} is not allowed (only numpy, cvxpy)"]
    module = __import__(node.module)
    reasons = []
    for alias in node.names:
        target = getattr(module, alias.name, None)
        if alias.name == "*" or alias.name.startswith("_") or isinstance(target, types.ModuleType):
            reasons.append(f"{line}: 'from {node.module} import {alias.name}' is not allowed")
    return reasons


def _check_attribute(node, aliases, line):
    if node.attr.startswith("_"):
        return [f"{line}: attribute {node.attr!r} starts with an underscore (private/dunder access is not allowed)"]
    if node.attr in FORBIDDEN_ATTRS:
        why = ("the coordinator solves; return the problem pieces" if node.attr == "solve"
               else "file, process, frame or formatting access")
        return [f"{line}: attribute {node.attr!r} is not allowed ({why})"]
    chain, root = [], node
    while isinstance(root, ast.Attribute):
        chain.append(root.attr)
        root = root.value
    if isinstance(root, ast.Name) and root.id in aliases and isinstance(node.ctx, ast.Load):
        obj = __import__(aliases[root.id])  # trusted numpy/cvxpy, only looked up, never called
        for attr in reversed(chain):
            obj = getattr(obj, attr, None)
            if isinstance(obj, types.ModuleType) and obj.__name__ not in ALLOWED_MODULES:
                return [f"{line}: {root.id}.{'.'.join(reversed(chain))} reaches module {obj.__name__!r}; "
                        f"only {sorted(ALLOWED_MODULES)} may be used"]
    if isinstance(root, ast.Name) and root.id in aliases and not isinstance(node.ctx, ast.Load):
        return [f"{line}: assigning to attributes of {root.id} is not allowed"]
    return []


def _always_true(test):
    return isinstance(test, ast.Constant) and bool(test.value)


def _has_break(loop):
    return any(isinstance(n, ast.Break) for n in ast.walk(loop))


# ---- execution ----------------------------------------------------------------------------

def run_prosumer(code, states, *, limits=None, solver="CLARABEL", fix_p2p=True, check=True):
    """Run ``prosumer(state)`` for every test state in a confined child process.

    states: list of state dicts (arrays as lists or numpy arrays). The child builds
    ``cp.Problem(cp.Minimize(objective), constraints [+ p_p2p == 0 if fix_p2p])``, checks DCP,
    solves with ``solver`` and returns values. ``check=False`` skips the static check (only to
    test the second layer on its own).
    """
    limits = limits or Limits()
    t0 = time.perf_counter()
    if check:
        reasons = static_check(code)
        if reasons:
            return SandboxResult(False, ["refused by the static check: " + r for r in reasons],
                                 seconds=time.perf_counter() - t0)
    job = {"code": code, "states": [_plain(s) for s in states], "solver": solver, "fix_p2p": fix_p2p,
           "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb,
           "list_keys": ["soc_kwh", "gen_last_kw", "cl_remaining_kwh"]}
    returncode, out, err, killed = _spawn(json.dumps(job), limits.wall_s)
    result = _parse(returncode, out, err, killed, limits)
    result.seconds = time.perf_counter() - t0
    return result


def _plain(state):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in state.items()}


def _spawn(job_text, wall_s):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="p2p-sandbox-") as workdir:
        os.chmod(workdir, 0o755)
        env["HOME"] = workdir
        proc = subprocess.Popen([sys.executable, "-I", str(CHILD)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
                                close_fds=True, start_new_session=True)
        bufs = [bytearray(), bytearray()]
        readers = [threading.Thread(target=_drain, args=(pipe, buf), daemon=True)
                   for pipe, buf in zip((proc.stdout, proc.stderr), bufs)]
        for r in readers:
            r.start()
        try:
            proc.stdin.write(job_text.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        killed = False
        try:
            proc.wait(timeout=wall_s)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait()
        for r in readers:
            r.join(timeout=5)
    return proc.returncode, bufs[0].decode(errors="replace"), bufs[1].decode(errors="replace"), killed


def _drain(pipe, buf):
    """Read a pipe to its end, keeping at most PIPE_CAP bytes (a chatty child cannot fill our memory)."""
    while chunk := pipe.read(65536):
        if len(buf) < PIPE_CAP:
            buf.extend(chunk[: PIPE_CAP - len(buf)])


def _parse(returncode, out, err, killed, limits):
    if killed:
        return SandboxResult(False, [f"killed: wall-clock limit of {limits.wall_s} s exceeded"])
    if returncode in (-24, -9) and RESULT_MARK not in out:
        why = "CPU time limit" if returncode == -24 else "SIGKILL (CPU hard limit or out of memory)"
        return SandboxResult(False, [f"killed: {why} of {limits.cpu_s} s CPU / {limits.memory_mb} MB exceeded"])
    if RESULT_MARK not in out:
        tail = err.strip().splitlines()[-3:]
        return SandboxResult(False, [f"sandbox child failed (exit code {returncode}): " + " | ".join(tail)])
    data = json.loads(out.rsplit(RESULT_MARK, 1)[1].splitlines()[0])
    reasons = []
    if data["load_error"]:
        reasons.append("the code failed to load: " + data["load_error"])
    for rec in data["states"]:
        where = f"state at time {rec['time']}"
        if rec.get("structure"):
            reasons += [f"{where}: {p}" for p in rec["structure"]]
        elif rec["status"] != "optimal":
            reasons.append(f"{where}: {rec['status']}" + (f": {rec['error']}" if rec.get("error") else ""))
    ok = not reasons and bool(data["states"])
    return SandboxResult(ok, reasons, data["states"], data["enforced"], data.get("printed", ""))
