"""Hostile prosumer code, each sample named and labelled with the layer that stops it.

STATIC: refused by the allowlist (agents/llm/allowlist.py) before any process starts.
JAILED: run with the static check skipped, so the jail alone must hold; each prints one
``OUT <outcome>`` line and the test checks the outcome and the host.  Placeholders: {tmp} a
world-writable folder the test owns, {victim} a file in it, {secret} a readable secret file,
{port} a TCP listener, {unix} an AF_UNIX listener, {pid} a process of the test's.
BREAKING: jail samples that break their own child (so each runs alone).
FORGED: code that tries to make the parent accept a model that does not solve; the parent's
own solve (or its checks of the reply) must reject it.
"""

import textwrap


def wrap(body, head=""):
    """A module whose prosumer(state) runs ``body`` and returns nothing useful."""
    return head + "import numpy as np\nimport cvxpy as cp\n\ndef prosumer(state):\n" + textwrap.indent(
        textwrap.dedent(body), "    ") + "\n    return None\n"


# ---- refused by the static check (layer: allowlist) ------------------------------------------------
STATIC = {
    # module reachability through assignment and attribute chains
    "numpy.random in a variable": (wrap("R = np.random\nx = R.mtrand.warnings.sys"), "np.random is not allowed"),
    "bit_generator chain": (wrap("x = np.random.bit_generator.re.enum"), "is not allowed"),
    "module as value": (wrap("m = np\nw = m.lib.npyio"), "may only be used as np.<name>"),
    "module in a list": (wrap("x = [np, cp][0]"), "may only be used as np.<name>"),
    "module passed to a function": ("import numpy as np\ndef f(m):\n    return 1\ndef prosumer(state):\n"
                                    "    return f(np)\n", "may only be used as np.<name>"),
    "np rebound to data": ("import numpy as np\ndef f(np):\n    return np.sum([1])\n" + wrap("x = f(state)"),
                           "'np' may not be rebound"),
    "builtin rebound": (wrap("print = state\nprint(1)"), "'print' may not be rebound"),
    "function as value": (wrap("f = np.sum\nx = f([1])"), "is a function: call it"),
    "builtin as value": (wrap("f = print\nf(1)"), "is a function: call it"),
    "method as value": (wrap("x = [1]\nf = x.append"), "is a method: call it"),
    "from numpy import random": ("from numpy import random\n" + wrap("x = 1"), "'from numpy import random'"),
    "from numpy import lib": ("from numpy import lib\n" + wrap("x = 1"), "'from numpy import lib'"),
    "from cvxpy import settings": ("from cvxpy import settings\n" + wrap("x = 1"), "'from cvxpy import settings'"),
    "from numpy import *": ("from numpy import *\n" + wrap("x = 1"), "'from numpy import *'"),
    "cvxpy submodule chain": (wrap("x = cp.atoms.affine.add_expr"), "cp.atoms.affine.add_expr is not allowed"),
    "numpy lib chain": (wrap("w = np.lib.npyio.DataSource"), "np.lib.npyio.DataSource is not allowed"),
    "import os": ("import os\n" + wrap("os.system('id')"), "import of 'os'"),
    "import os as np": ("import os as np\n" + wrap("x = 1"), "import of 'os'"),
    "import subprocess": ("import subprocess\n" + wrap("x = 1"), "import of 'subprocess'"),
    "import inside the function": (wrap("import socket"), "imports inside functions"),
    "__import__": (wrap("x = __import__('os')"), "underscore"),
    # builtins reached by name or attribute
    "open by name": (wrap("data = open('/etc/passwd').read()"), "call of 'open'"),
    "eval": (wrap("eval('1+1')"), "call of 'eval'"),
    "getattr": (wrap("f = getattr(np, 'lib')"), "call of 'getattr'"),
    "type and object": (wrap("t = type(1)"), "call of 'type'"),
    "globals": (wrap("g = globals()"), "call of 'globals'"),
    "state.open (attribute on a typed value)": (wrap("B = state\nB.open('/etc/passwd')"), ".open is not allowed"),
    "attribute on an untyped value": (wrap("B = [state][0]\nB.open('/etc/passwd')"), "cannot prove"),
    "dunder attribute": (wrap("c = ().__class__.__base__.__subclasses__()"), "'__class__'"),
    "dunder string": (wrap("name = '__class__'"), "'__'"),
    "bytes-built dunder": (wrap("name = b'__traceback__'.decode()"), "bytes constants"),
    "translate-built dunder": (wrap("name = 'xxclassxx'.translate({120: 95})"), ".translate is not allowed"),
    "format traversal": (wrap("s = '{0.real}'.format(1)"), ".format is not allowed"),
    "generator frame": (wrap("h = (y for y in [1]).gi_frame"), ".gi_frame is not allowed"),
    "ndarray.ctypes": (wrap("p = np.zeros(1).ctypes"), ".ctypes is not allowed"),
    "ndarray.tofile": (wrap("np.zeros(1).tofile('/tmp/owned')"), ".tofile is not allowed"),
    "numpy file io": (wrap("x = np.loadtxt('/etc/passwd')"), "np.loadtxt is not allowed"),
    "numpy memmap": (wrap("x = np.memmap('/tmp/owned', mode='w+', shape=(4,))"), "np.memmap is not allowed"),
    # forging the result through cvxpy objects
    "Problem.status assignment": (wrap("cp.Problem.status = 'optimal'"), "assigning or deleting attribute 'status'"),
    "Problem.value assignment": (wrap("cp.Problem.value = 6.0"), "assigning or deleting attribute 'value'"),
    "Variable.value assignment": (wrap("x = cp.Variable(2)\nx.value = np.ones(2)"), "assigning or deleting"),
    "reading .value": (wrap("x = cp.Variable(2)\ny = x.value"), ".value is not allowed"),
    "solve inside": (wrap("cp.Problem(cp.Minimize(0)).solve()"), "cp.Problem is not allowed"),
    "cp.Parameter": (wrap("p = cp.Parameter(2)"), "cp.Parameter is not allowed"),
    # syntax outside the subset
    "class": ("class A:\n    pass\n" + wrap("a = A()"), "ClassDef is not allowed"),
    "lambda": (wrap("f = lambda: 1"), "Lambda is not allowed"),
    "nested def": (wrap("def g():\n    return 1"), "nested def"),
    "decorator": ("import numpy as np\n@np.vectorize\ndef prosumer(state):\n    return None\n", "decorators"),
    "try/except": (wrap("try:\n    x = 1\nexcept Exception as e:\n    x = e"), "Try is not allowed"),
    "walrus": (wrap("y = (x := 1)"), "NamedExpr is not allowed"),
    "global": (wrap("global x\nx = 1"), "Global is not allowed"),
    "while True": (wrap("while True:\n    pass"), "unbounded loop"),
    "top-level call": ("import numpy as np\nx = print(1)\nprint(2)\n" + wrap("y = 1"), "top-level Expr"),
}


# ---- the jail alone (static check skipped) ---------------------------------------------------------
PRELUDE = '''
def osg():
    for c in ().__class__.__base__.__subclasses__():
        if c.__name__ == "_wrap_close":
            return c.__init__.__globals__


def mod(name):
    return osg()["sys"].modules[name] if name in osg()["sys"].modules else \\
        osg()["sys"].modules["importlib"].import_module(name)


def attempt(f):
    try:
        return "DONE " + repr(f())[:300]
    except Exception as exc:
        return "FAILED " + exc.__class__.__name__ + ": " + str(exc)[:300]


def libc_call(name, *args):
    ct = mod("ctypes")
    rc = ct.CDLL(None, use_errno=True)[name](*args)
    return rc, ct.get_errno()

'''


def jailed(expr, setup=""):
    return wrap(f"{setup}\nprint('OUT', attempt(lambda: {expr}))", PRELUDE)


FREE_FD = "attempt(lambda: osg()['close'](2))"
"""frees a descriptor under RLIMIT_NOFILE (stderr; the protocol needs 0, 1 and 3), so the layer behind
the rlimit is the one tested"""


W = 0o1 | 0o100  # O_WRONLY | O_CREAT
JAILED = {  # name -> (code, layer, regex the OUT line must match)
    "os.system": (jailed("osg()['system']('touch {tmp}/by-system')"), "seccomp (clone/execve) + NPROC 0",
                  r"DONE 32512"),  # glibc's system() reports a failed spawn as exit status 127
    "execv /bin/sh": (jailed("osg()['execv']('/bin/sh', ['sh', '-c', 'touch {tmp}/by-exec'])"), "seccomp (execve)",
                      r"FAILED PermissionError"),
    "fork": (jailed("osg()['fork']()"), "seccomp (fork/clone) + NPROC 0", r"FAILED \w+Error"),
    "thread": (jailed("mod('_thread').start_new_thread(print, (1,))"), "seccomp (clone) + NPROC 0",
               r"FAILED RuntimeError"),
    "subprocess": (jailed("mod('subprocess').run(['/bin/true'])"), "seccomp (fork/execve)", r"FAILED"),
    "read a host secret": (jailed("osg()['open']('{secret}', 0)"), "RLIMIT_NOFILE (no free descriptor)",
                           r"FAILED OSError: \[Errno 24\]"),
    "close(2) then read a host secret": (jailed("osg()['open']('{secret}', 0)", FREE_FD),
                                         "mount namespace (not in the view)", r"FAILED FileNotFoundError"),
    "close(2) then read /etc/passwd": (jailed("osg()['open']('/etc/passwd', 0)", FREE_FD),
                                       "mount namespace (no /etc)", r"FAILED FileNotFoundError"),
    "create a file in a writable host folder": (jailed(f"osg()['open']('{{tmp}}/created', {W}, 0o666)"),
                                                "seccomp (write opens) + mount namespace",
                                                r"FAILED PermissionError"),
    "create a file in the jail's root": (jailed(f"osg()['open']('/owned', {W}, 0o666)"),
                                         "seccomp (write opens) + read-only root", r"FAILED PermissionError"),
    "open the interpreter for writing": (jailed("osg()['open'](osg()['sys'].executable, 2)"),
                                         "seccomp (write opens) + read-only binds", r"FAILED PermissionError"),
    "mkdir": (jailed("osg()['mkdir']('/work/x')"), "seccomp", r"FAILED PermissionError"),
    "rename": (jailed("osg()['rename']('{victim}', '{victim}.moved')"), "seccomp", r"FAILED PermissionError"),
    "unlink": (jailed("osg()['unlink']('{victim}')"), "seccomp", r"FAILED PermissionError"),
    "truncate": (jailed("osg()['truncate']('{victim}', 0)"), "seccomp", r"FAILED PermissionError"),
    "chmod": (jailed("osg()['chmod']('/', 0o777)"), "seccomp", r"FAILED PermissionError"),
    "symlink": (jailed("osg()['symlink']('/', '/escape')"), "seccomp", r"FAILED PermissionError"),
    "mmap write of a read-only file": (jailed("libc_call('mmap', None, 4096, 3, 1, "
                                              "osg()['open'](osg()['sys'].executable, 0), 0)", FREE_FD),
                                       "kernel: no writable descriptor can be had (seccomp, read-only binds)",
                                       r"DONE \(-1, 13\)"),
    "write to /proc/self": (jailed("osg()['open']('/proc/self/oom_score_adj', 1)"), "seccomp + read-only /proc",
                            r"FAILED PermissionError"),
    "AF_INET socket to a host listener": (jailed("mod('socket').create_connection(('127.0.0.1', {port}), 1)",
                                                 FREE_FD),
                                          "seccomp (socket) + network namespace", r"FAILED PermissionError"),
    "AF_UNIX path socket to a host listener": (jailed("mod('socket').socket(1).connect('{unix}')"),
                                               "seccomp (socket) + mount namespace", r"FAILED PermissionError"),
    "AF_UNIX socketpair": (jailed("mod('socket').socketpair()"), "seccomp (socketpair)", r"FAILED PermissionError"),
    "raw socket syscall": (jailed("libc_call('syscall', 41, 1, 1, 0)"), "seccomp", r"DONE \(-1, 1\)"),
    "kill a host process": (jailed("osg()['kill']({pid}, 9)"), "seccomp (kill) + PID namespace + own uid",
                            r"FAILED PermissionError"),
    "kill every process": (jailed("osg()['kill'](-1, 9)"), "seccomp (kill) + PID namespace", r"FAILED PermissionError"),
    "read another process's environment": (jailed("osg()['open']('/proc/{pid}/environ', 0)", FREE_FD),
                                           "PID namespace",
                                           r"FAILED FileNotFoundError"),
    "ptrace": (jailed("libc_call('ptrace', 16, 1, 0, 0)"), "seccomp", r"DONE \(-1, 1\)"),
    "new user namespace": (jailed("libc_call('unshare', 0x10000000)"), "seccomp + --disable-userns",
                           r"DONE \(-1, 1\)"),
    "mount": (jailed("libc_call('mount', b'none', b'/', b'tmpfs', 0, None)"), "seccomp", r"DONE \(-1, 1\)"),
    "io_uring": (jailed("libc_call('syscall', 425, 4, mod('ctypes').create_string_buffer(120))"), "seccomp",
                 r"DONE \(-1, 1\)"),
    "raise an rlimit": (jailed("mod('resource').setrlimit(mod('resource').RLIMIT_NOFILE, (4096, 4096))"),
                        "rlimit (hard limits only go down)", r"FAILED ValueError"),
}

# jail samples that break their own child: the parent must turn each into a rejection with a reason
BREAKING = {  # name -> (code, layer, expected reason)
    "close(0) then open a secret": (jailed("osg()['open']('{secret}', 0)", "osg()['close'](0)"),
                                    "mount namespace (seccomp, NOFILE behind it)", "6-tuple"),
    "close the result channel": (jailed("osg()['close'](3)"), "parent (channel closed)", "closed the result channel"),
    "exit during the build": (jailed("osg()['_exit'](0)"), "parent (channel closed)", "closed the result channel"),
    "garbage on the result channel": (jailed("osg()['write'](3, b'nonsense' * 10)", ), "parent (frame check)",
                                      "no frame marker"),
    "huge frame length": (jailed("osg()['write'](3, b'P2PDATA1' + b'\\xff' * 16)"), "parent (size caps)",
                          "exceeds the caps"),
    "deeply nested header": (jailed("osg()['write'](3, b'P2PDATA1' + (200000).to_bytes(8, 'little') + b'\\x00' * 8 "
                                    "+ b'[' * 200000)"), "parent (exception-safe parse)", "garbled reply header"),
    "x32 ABI socket (around the filter's syscall numbers)": (jailed("libc_call('syscall', 0x40000000 | 41, 1, 1, 0)"),
                                                          "seccomp (other ABIs kill the process)",
                                                          "forbidden system call"),
    "fork bomb": (jailed("[osg()['fork']() for i in range(100)]"), "seccomp + NPROC 0", "must return a 6-tuple"),
}

# ---- forging a result: the parent's solve and checks decide ---------------------------------------
INFEASIBLE = '''
    x = cp.Variable(T)
    constraints = [x >= 1, x <= 0]
    p = cp.Variable(T)
    return {"P_RDG1": x}, cp.sum(x), constraints, p, 0 * p, p
'''


def forged(body, head=""):
    return wrap("T = state['horizon']\n" + textwrap.dedent(body) + textwrap.dedent(INFEASIBLE), head)


FORGED = {  # name -> (code, passes the static check, expected reason); these share one child
    "infeasible model, plain syntax": (forged(""), True, "infeasible"),
    "status/value assigned on an infeasible model": (
        forged("cp.Problem.status = 'optimal'\ncp.Problem.value = 6.0"), False, "infeasible"),
    "forged result marker printed": (
        forged("print('@@SANDBOX-RESULT@@{\"status\": \"optimal\", \"objective\": 6.0}')"), True, "infeasible"),
    "unbounded model": (wrap("T = state['horizon']\nx = cp.Variable(T)\np = cp.Variable(T)\n"
                             "return {'P_RDG1': x}, cp.sum(x), [], p, 0 * p, p"), True, "unbounded"),
    "not DCP": (wrap("T = state['horizon']\nx = cp.Variable(T)\np = cp.Variable(T)\n"
                     "return {'P_RDG1': x}, cp.sum(x), [cp.square(x) >= 1], p, 0 * p, p"), True, "not DCP"),
    "NaN in the model": (wrap("T = state['horizon']\nx = cp.Variable(T)\np = cp.Variable(T)\n"
                              "return {'P_RDG1': x}, cp.sum(x), [x <= np.nan], p, 0 * p, p"), True, "non-finite|NaN"),
    "model beyond the size caps": (wrap("T = state['horizon']\nx = cp.Variable(150000)\np = cp.Variable(T)\n"
                                        "return {'P_RDG1': x[:T]}, cp.sum(x), [x >= 0], p, 0 * p, p"), True,
                                   "variables \\(at most"),
}
FORGED_ALONE = {  # these sabotage the child's later replies, so each runs in a child of its own
    "json.dumps patched": (
        forged("mod('json').dumps = lambda *a, **k: '{\"kind\": \"state\", \"status\": \"optimal\", "
               "\"objective\": 6.0}'", PRELUDE), False, "garbled|does not answer the request"),
    "struct.pack patched": (forged("mod('struct').pack = lambda *a: b'\\x00' * 16", PRELUDE), False,
                            "garbled|closed the result channel"),
    "get_problem_data replaced by a trivial problem": (
        forged("real = cp.Problem.get_problem_data\ncp.Problem.get_problem_data = lambda self, solver: "
               "real(cp.Problem(cp.Minimize(0), [cp.Variable() == 0]), solver)", PRELUDE), False, "KeyError"),
}


# a well-formed frame written by the code itself: the parent believes none of it, solves the
# problem it describes and the verification's checks of that solution reject it
FORGED_FRAME = wrap('''
T = state["horizon"]
np_ = mod("numpy")
n = 4 * T
head = {"kind": "state", "name": "candidate", "time": state["time"], "error": None, "offset": 6.0, "bounds": False,
        "dims": {"zero": n, "nonneg": 0, "soc": [], "exp": 0, "psd": [], "power": 0}, "shape": [n, n],
        "columns": {"action:P_RDG1": [0, T], "p_ex": [T, T], "q_ex": [2 * T, T], "p_p2p": [3 * T, T]}}
arrays = {"A_indptr": np_.arange(n + 1), "A_indices": np_.arange(n), "A_data": np_.ones(n),
          "P_indptr": np_.zeros(n + 1, dtype=int), "P_indices": np_.zeros(0, dtype=int), "P_data": np_.zeros(0),
          "c": np_.zeros(n), "b": np_.zeros(n)}
head["arrays"] = [[k, "<i8" if v.dtype.kind == "i" else "<f8", int(v.size)] for k, v in arrays.items()]
blob = b"".join(v.astype("<i8" if v.dtype.kind == "i" else "<f8").tobytes() for v in arrays.values())
text = mod("json").dumps(head).encode()
osg()["write"](3, b"P2PDATA1" + mod("struct").pack("<QQ", len(text), len(blob)) + text + blob)
''', PRELUDE)
